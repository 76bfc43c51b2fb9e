"""The one shape of websocket consumer on this site: authenticate, check the role, join groups.

Consumers never compute anything. Services publish with :func:`healthagent.events.group_notify`
after their transaction commits, and every subscriber of the group gets the payload as JSON.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

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
        await self.send_json(event["payload"])

    async def receive_json(self, content, **kwargs):
        # Subscriptions are read-only; a client message is ignored rather than echoed.
        return
