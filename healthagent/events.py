"""Publishing to websocket subscribers (see healthagent/consumers.py).

A web or worker process publishes through one event loop of its own, on a thread that lives as long as the process
(:class:`Publisher`), when the channel layer is Redis: the request that rated an item hands the message over and goes
on, the messages leave in the order they were handed over, over one pool of Redis connections. ``async_to_sync`` per
message, which the in-memory layer of the embedded profile needs, starts an event loop and opens a Redis connection
for every message: about a millisecond of a rated item's CPU, and a request that waits whenever Redis is slow.
"""

import asyncio
import atexit
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# How long a process that exits waits for the messages it handed over to leave.
FLUSH_AT_EXIT_S = 2.0
# Messages waiting to leave at most (Redis hanging): the next ones are dropped, with a warning.
QUEUE_LIMIT = 10_000
# A coalesced message (a rating's: every subscriber re-reads the whole state on any message) leaves this long after
# the first of its group was handed over, as the latest one handed over meanwhile: at most a few a second per group
# and process, where a busy study rates a hundred items a second (each sent message costs the web process Redis
# round trips, and each subscriber a fresh read of its access).
COALESCE_S = 0.25


class Publisher:
    """An event loop on a daemon thread that sends ``(group, message)`` pairs to the channel layer one after the
    other; a message that fails is logged and the next one goes (the layer is best effort: subscribers re-read the
    state when they reconnect)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[tuple[str, dict]] | None = None
        self.held: dict[str, dict] = {}  # a group's coalesced message, waiting for its time (the loop's thread only)
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="channel-layer-publisher", daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue(maxsize=QUEUE_LIMIT)
        ready.set()
        self.loop.run_until_complete(self._send_forever())

    async def _send_forever(self) -> None:
        assert self.queue is not None
        while True:
            group, message = await self.queue.get()
            try:
                await get_channel_layer().group_send(group, message)
            except Exception:
                logger.exception("could not publish to the group %s", group)
            finally:
                self.queue.task_done()

    def submit(self, group: str, message: dict, *, coalesce: bool = False) -> None:
        self.loop.call_soon_threadsafe(self._hold if coalesce else self._put, group, message)

    def _hold(self, group: str, message: dict) -> None:
        if group not in self.held:
            self.loop.call_later(COALESCE_S, self._release, group)
        self.held[group] = message  # the latest stands for those before it

    def _release(self, group: str) -> None:
        if (message := self.held.pop(group, None)) is not None:
            self._put(group, message)

    def _release_all(self) -> None:
        for group in list(self.held):
            self._release(group)

    def _put(self, group: str, message: dict) -> None:
        assert self.queue is not None
        try:
            self.queue.put_nowait((group, message))
        except asyncio.QueueFull:  # Redis has hung for a long while: drop rather than grow without bound
            logger.warning("the channel layer is not taking messages: one to %s is dropped", group)

    async def _drained(self) -> None:
        assert self.queue is not None
        self._release_all()
        await self.queue.join()

    def flush(self, timeout: float) -> bool:
        """Wait until every message handed over so far has been sent (or failed), coalesced ones at once; False if
        ``timeout`` ran out."""
        assert self.queue is not None
        done = asyncio.run_coroutine_threadsafe(self._drained(), self.loop)
        try:
            done.result(timeout)
        except TimeoutError:
            done.cancel()
            return False
        return True


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def _background_publisher() -> Publisher | None:
    """This process's publisher, when the channel layer is Redis (None for the in-memory layer, whose queues belong
    to the loop of the process's consumers)."""
    global _publisher
    if not type(get_channel_layer()).__module__.startswith("channels_redis"):
        return None
    with _publisher_lock:
        # None yet, inherited by a forked child (whose copy has no thread), or its thread ended (it should not).
        if _publisher is None or _publisher.pid != os.getpid() or not _publisher.thread.is_alive():
            _publisher = Publisher()
    return _publisher


def publisher_flush(timeout: float = FLUSH_AT_EXIT_S) -> bool:
    """Wait for the messages this process handed over to leave (tests, and a process about to exit)."""
    publisher = _publisher
    if publisher is None or publisher.pid != os.getpid() or not publisher.thread.is_alive():
        return True
    return publisher.flush(timeout)


atexit.register(publisher_flush)  # Celery's pool processes end with os._exit: healthagent.celery flushes them


def group_notify(*, group: str, payload: dict, coalesce: bool = False) -> None:
    """Send ``payload`` to every socket subscribed to ``group``: handed to this process's publisher (Redis), or sent
    now (the in-memory layer). ``coalesce``: with the publisher, it leaves within ``COALESCE_S``, standing for the
    group's coalesced messages handed over before it (for subscribers that re-read the state on any message)."""
    message = {"type": "group.event", "payload": payload}
    publisher = _background_publisher()
    if publisher is None:
        async_to_sync(get_channel_layer().group_send)(group, message)
    else:
        publisher.submit(group, message, coalesce=coalesce)


def group_notify_on_commit(*, group: str, payload: dict, coalesce: bool = False) -> None:
    """Send ``payload`` once the current transaction commits; nothing is sent if it rolls back.

    Best effort: if the channel layer is down (Redis restarting), the error is logged and the
    caller's committed work stands; subscribers re-read the state when they reconnect.
    """
    transaction.on_commit(lambda: group_notify(group=group, payload=payload, coalesce=coalesce), robust=True)
