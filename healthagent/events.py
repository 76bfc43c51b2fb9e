"""Publishing to websocket subscribers (see healthagent/consumers.py)."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def group_notify(*, group: str, payload: dict) -> None:
    """Send ``payload`` to every socket subscribed to ``group``, now."""
    async_to_sync(get_channel_layer().group_send)(group, {"type": "group.event", "payload": payload})


def group_notify_on_commit(*, group: str, payload: dict) -> None:
    """Send ``payload`` once the current transaction commits; nothing is sent if it rolls back.

    Best effort: if the channel layer is down (Redis restarting), the error is logged and the
    caller's committed work stands; subscribers re-read the state when they reconnect.
    """
    transaction.on_commit(lambda: group_notify(group=group, payload=payload), robust=True)
