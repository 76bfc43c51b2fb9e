"""Publishing to websocket groups through the process's publisher thread (healthagent.events): on Redis the message
is handed over and the caller goes on; the messages arrive, in the order they were handed over."""

import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from healthagent import events


@pytest.mark.services
def test_messages_handed_to_the_publisher_arrive_in_order(redis_url):
    layer = get_channel_layer()
    assert type(layer).__module__.startswith("channels_redis")
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("events-test", channel)
    try:
        started = time.thread_time()  # this thread's: the publisher's own work is on another
        for number in range(50):  # within a channel's capacity (100), beyond which a group send drops
            events.group_notify(group="events-test", payload={"number": number})
        handing_over_ms = (time.thread_time() - started) * 1000 / 50
        assert events.publisher_flush(timeout=10)

        async def received() -> list[int]:
            return [(await layer.receive(channel))["payload"]["number"] for _ in range(50)]

        assert async_to_sync(received)() == list(range(50))
        assert handing_over_ms < 1.0, handing_over_ms  # the caller never waits for Redis
    finally:
        async_to_sync(layer.group_discard)("events-test", channel)


@pytest.mark.services
def test_a_message_that_fails_is_logged_and_the_next_ones_go(redis_url, caplog, monkeypatch):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("events-test-2", channel)
    try:
        events.group_notify(group="events-test-2", payload={"not JSON-able": {1, 2}})  # msgpack refuses a set
        events.group_notify(group="events-test-2", payload={"number": 1})
        assert events.publisher_flush(timeout=10)
        assert async_to_sync(layer.receive)(channel)["payload"] == {"number": 1}
        assert "could not publish to the group events-test-2" in caplog.text
    finally:
        async_to_sync(layer.group_discard)("events-test-2", channel)


@pytest.mark.services
def test_coalesced_messages_leave_as_the_latest_within_the_window_and_others_are_not_held(redis_url):
    """A burst of a group's coalesced messages (ratings) leaves as one, the latest, within ``COALESCE_S``; a message
    that is not coalesced goes at once; a flush sends what is held."""
    import asyncio

    layer = get_channel_layer()

    async def scenario() -> None:
        channel = await layer.new_channel()
        await layer.group_add("events-test-3", channel)

        async def receive_within(seconds: float):
            try:
                return (await asyncio.wait_for(layer.receive(channel), seconds))["payload"]
            except TimeoutError:
                return None

        try:
            handed_at = time.monotonic()
            for number in range(20):
                events.group_notify(group="events-test-3", payload={"number": number}, coalesce=True)
            events.group_notify(group="events-test-3", payload={"status": "closed"})  # not coalesced: not held
            assert await receive_within(1.0) == {"status": "closed"}  # first: it was not held behind the others
            assert await receive_within(5) == {"number": 19}
            assert time.monotonic() - handed_at >= events.COALESCE_S * 0.9
            assert await receive_within(events.COALESCE_S * 2) is None  # the other 19 were never sent
            events.group_notify(group="events-test-3", payload={"number": 20}, coalesce=True)
            assert await asyncio.to_thread(events.publisher_flush, 10)  # without waiting for the window
            assert await receive_within(1.0) == {"number": 20}
        finally:
            await layer.group_discard("events-test-3", channel)

    async_to_sync(scenario)()
