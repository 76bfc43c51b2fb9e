"""The one shape of websocket consumer on this site: authenticate, check the role, join groups.

Consumers never compute anything. Services publish with :func:`healthagent.events.group_notify`
after their transaction commits, and every subscriber of the group gets the payload as JSON.

Access is checked again before each event is sent, against the database rather than the scope the connection
began with: a user logged out, deactivated, with a changed password, an expired session or a role taken away,
or an object they may no longer follow (a study that became restricted, or whose rater they became), gets no
further event and the socket is closed (4403).
"""

from importlib import import_module
from types import SimpleNamespace

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser

from healthagent.roles import Role, scope_has_role

# Close codes in the application range (4000-4999), mirroring HTTP statuses.
CLOSE_FORBIDDEN = 4403


class RoleGroupConsumer(AsyncJsonWebsocketConsumer):
    """Subclasses set ``allowed_roles`` and return their groups from :meth:`subscription_groups`."""

    allowed_roles: tuple[Role, ...] = ()

    async def connect(self):
        self.subscribed_groups: list[str] = []
        if not await database_sync_to_async(scope_has_role)(self.scope, *self.allowed_roles):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        groups = await self.subscription_groups()
        if groups is None:  # the object does not exist or is not this user's
            await self.close(code=CLOSE_FORBIDDEN)
            return
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.subscribed_groups = list(groups)
        await self.accept()

    async def disconnect(self, code):
        for group in self.subscribed_groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def subscription_groups(self) -> list[str] | None:
        """The channel-layer groups to join, or None to refuse the connection."""
        raise NotImplementedError

    async def group_event(self, event):
        if not await self.access_current():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json(self.payload(event["payload"]))

    def payload(self, payload: dict) -> dict:
        """What a subscriber is sent of a group's event (all of it, unless a subclass narrows it)."""
        return payload

    async def access_current(self) -> bool:
        """Would this connection be accepted now? The user is read again from the session store and the database
        (``connect`` checked the scope's user, which a log-out or a role change does not update)."""
        self.scope["user"] = await database_sync_to_async(_session_user)(self.scope.get("session"))
        if not await database_sync_to_async(scope_has_role)(self.scope, *self.allowed_roles):
            return False
        return await self.subscription_groups() == self.subscribed_groups

    async def receive_json(self, content, **kwargs):
        # Subscriptions are read-only; a client message is ignored rather than echoed.
        return


def _session_user(session):
    """The user the session's key names now: anonymous once it is logged out, expired, deleted, or the user is
    inactive or changed their password (Django's own checks, on a fresh read of the session)."""
    key = getattr(session, "session_key", None)
    if not key:
        return AnonymousUser()
    fresh = import_module(settings.SESSION_ENGINE).SessionStore(key)
    return auth.get_user(SimpleNamespace(session=fresh))
