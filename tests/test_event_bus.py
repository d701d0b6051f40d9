"""The bus's policies against the real server: fan-out, overflow, handler errors, the end.

Events are caused for real (data packets from another participant); only the input
checks, which send nothing, run without a server.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import lkkit
from lkkit._event_bus import EventSubscription
from lkkit._events import (
    DataReceived,
    Disconnected,
    Event,
    ParticipantConnected,
    TrackPublished,
)
from lkkit._exceptions import SubscriptionOverflow
from lkkit._subscription import OverflowPolicy
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

WAIT_S = 10.0


async def take(events: EventSubscription[Any], count: int) -> list[Any]:
    got: list[Any] = []
    with anyio.fail_after(WAIT_S):
        async for event in events:
            got.append(event)
            if len(got) == count:
                break
    return got


async def send(session: lkkit.Session, count: int, topic: str = "t") -> list[bytes]:
    payloads = [f"m{i}".encode() for i in range(count)]
    for payload in payloads:
        await session.room.local_participant.publish_data(payload, reliable=True, topic=topic)
    return payloads


async def pair(room: LiveKitRoom) -> tuple[lkkit.Session, lkkit.Session]:
    alice = await room.join("alice")
    bob = await room.join("bob")
    with anyio.fail_after(WAIT_S):
        # Wait until alice knows bob, so his packets carry his identity.
        while "bob" not in alice.remote_participants:
            await anyio.sleep(0.02)
    return alice, bob


async def test_a_full_subscriber_drops_its_oldest_and_blocks_nobody(
    livekit_room: LiveKitRoom,
) -> None:
    alice, bob = await pair(livekit_room)
    seen_by_handler: list[bytes] = []
    handler = alice.on(DataReceived, handler=lambda e: seen_by_handler.append(e.payload))
    async with alice.events(DataReceived, buffer=4) as slow, alice.events(DataReceived) as fast:
        payloads = await send(bob, 40)
        got = await take(fast, 40)
        assert [e.payload for e in got] == payloads  # all, in order
        assert seen_by_handler == payloads
        # The slow one kept the newest 4 and counted the rest.
        assert slow.dropped == 36
        assert [e.payload for e in await take(slow, 4)] == payloads[-4:]
    assert handler.errors == 0
    assert handler.active
    await handler.aclose()
    assert not handler.active


async def test_fail_policy_ends_only_that_subscriber(
    livekit_room: LiveKitRoom, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = await pair(livekit_room)
    async with (
        alice.events(DataReceived, buffer=3, overflow=OverflowPolicy.FAIL) as strict,
        alice.events(DataReceived) as other,
    ):
        payloads = await send(bob, 10)
        assert [e.payload for e in await take(other, 10)] == payloads
        got: list[bytes] = []
        with pytest.raises(SubscriptionOverflow), anyio.fail_after(WAIT_S):
            async for event in strict:
                got.append(event.payload)
        assert got == payloads[:3]  # everything before the overflow, then the error
        # The bus goes on for the others.
        more = await send(bob, 2, topic="after")
        assert [e.payload for e in await take(other, 2)] == more
    assert "overflowed" in caplog.text


async def test_a_raising_handler_is_reported_and_the_bus_goes_on(
    livekit_room: LiveKitRoom, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = await pair(livekit_room)
    good: list[bytes] = []
    async_good: list[bytes] = []

    def bad(event: DataReceived) -> None:
        raise RuntimeError("sync boom")

    async def async_bad(event: DataReceived) -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("async boom")

    async def async_ok(event: DataReceived) -> None:
        await anyio.lowlevel.checkpoint()
        async_good.append(event.payload)

    errors_before = alice._core.bus.handler_errors
    bad_handle = alice.on(DataReceived, handler=bad)
    async_bad_handle = alice.on(DataReceived, handler=async_bad)
    alice.on(DataReceived, handler=lambda e: good.append(e.payload))
    alice.on(DataReceived, handler=async_ok)
    async with alice.events(DataReceived) as events:
        with caplog.at_level(logging.ERROR, logger="lkkit"):
            payloads = await send(bob, 5)
            assert [e.payload for e in await take(events, 5)] == payloads
            with anyio.fail_after(WAIT_S):
                while len(async_good) < 5 or async_bad_handle.errors < 5:
                    await anyio.sleep(0.01)
    assert good == payloads
    assert async_good == payloads
    assert bad_handle.errors == 5
    assert async_bad_handle.errors == 5
    assert alice._core.bus.handler_errors - errors_before == 10
    messages = [r for r in caplog.records if "raised on DataReceived" in r.getMessage()]
    assert len(messages) == 10
    assert {str(r.exc_info[1]) for r in messages if r.exc_info} == {"sync boom", "async boom"}


async def test_iteration_and_handlers_end_when_the_session_ends(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    ended: list[list[str]] = []
    handled: list[str] = []

    async def record(event: Event) -> None:
        handled.append(type(event).__name__)

    handler = alice.on(handler=record)

    async def read(events: EventSubscription[Any]) -> None:
        ended.append([type(e).__name__ async for e in events])

    async with anyio.create_task_group() as tg:
        subscriptions = [alice.events(), alice.events(Disconnected), alice.events(DataReceived)]
        for subscription in subscriptions:
            await subscription.__aenter__()
            tg.start_soon(read, subscription)
        await anyio.sleep(0.1)
        with anyio.fail_after(WAIT_S):
            await alice.aclose()
    for subscription in subscriptions:
        await subscription.aclose()
    assert len(ended) == 3
    assert ["Disconnected"] in ended
    assert [] in ended  # the data subscription ends empty
    everything = next(names for names in ended if len(names) > 1)
    assert everything[-1] == "Disconnected"  # always the last event
    assert "Disconnected" in handled  # async handlers finish their buffer first
    assert not handler.active
    with pytest.raises(lkkit.SessionStateError):
        alice.events()
    with pytest.raises(lkkit.SessionStateError):
        alice.on(handler=print)


async def test_listeners_run_first_in_dispatch_order(
    livekit_room: LiveKitRoom, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = await pair(livekit_room)
    order: list[str] = []

    def listener(event: Event) -> None:
        if isinstance(event, DataReceived):
            order.append(f"listener:{event.payload.decode()}")

    def raising_listener(event: Event) -> None:
        raise KeyError("listener boom")

    alice.on(DataReceived, handler=lambda e: order.append(f"handler:{e.payload.decode()}"))
    remove = alice._core.bus.add_listener(listener)
    remove_raising = alice._core.bus.add_listener(raising_listener)
    before = alice._core.bus.listener_errors
    async with alice.events(DataReceived) as events:
        await send(bob, 2)
        await take(events, 2)
        assert order == ["listener:m0", "handler:m0", "listener:m1", "handler:m1"]
        assert alice._core.bus.listener_errors - before >= 2
        assert "listener boom" in caplog.text
        remove()
        remove()  # idempotent
        remove_raising()
        errors = alice._core.bus.listener_errors
        await send(bob, 1)
        await take(events, 1)
    # Both listeners were removed: the handler alone saw the last message.
    assert order == ["listener:m0", "handler:m0", "listener:m1", "handler:m1", "handler:m0"]
    assert alice._core.bus.listener_errors == errors


async def test_participant_filter(livekit_room: LiveKitRoom) -> None:
    alice, bob = await pair(livekit_room)
    carol = await livekit_room.join("carol")
    with anyio.fail_after(WAIT_S):
        while "carol" not in alice.remote_participants:
            await anyio.sleep(0.02)
    async with (
        alice.events(participant="carol") as carols,
        alice.events(DataReceived, participant=alice.remote_participants["bob"]) as bobs,
    ):
        await send(bob, 2, topic="b")
        await send(carol, 2, topic="c")
        assert [e.topic for e in await take(bobs, 2)] == ["b", "b"]
        got = await take(carols, 2)
        assert [(type(e), e.topic) for e in got] == [(DataReceived, "c")] * 2
        assert carols.snapshot.participants.keys() == {"carol"}


async def test_removed_handler_and_closed_subscription_get_nothing(
    livekit_room: LiveKitRoom,
) -> None:
    alice, bob = await pair(livekit_room)
    calls: list[bytes] = []
    handler = alice.on(DataReceived, handler=lambda e: calls.append(e.payload))
    closed = alice.events(DataReceived)
    async with closed:
        pass
    await handler.aclose()
    async with alice.events(DataReceived) as events:
        await send(bob, 1)
        await take(events, 1)
    assert calls == []
    with anyio.fail_after(WAIT_S):
        assert [e async for e in closed] == []


# -- input checks (nothing is sent) --------------------------------------------------------


def test_bad_subscriptions_are_refused() -> None:
    session = lkkit.connect("ws://127.0.0.1:1", "token")  # never opened
    with pytest.raises(lkkit.ConfigurationError):
        session.events(buffer=0)
    with pytest.raises(lkkit.ConfigurationError):
        session.events(int)  # type: ignore[type-var]
    with pytest.raises(lkkit.ConfigurationError, match="room events"):
        session.events(ParticipantConnected, participant="bob")
    with pytest.raises(lkkit.ConfigurationError):
        session.events(participant="")
    with pytest.raises(lkkit.ConfigurationError):
        session.on(handler="not callable")  # type: ignore[call-overload]
    with pytest.raises(lkkit.ConfigurationError):
        session.on(TrackPublished, handler=print, buffer=-1)
    with pytest.raises(lkkit.ConfigurationError, match="event types first"):
        session.on(print, TrackPublished)  # type: ignore[call-overload]
    with pytest.raises(lkkit.ConfigurationError, match="sometimes"):
        session.events(overflow="sometimes")  # type: ignore[call-overload]


async def test_a_subscription_must_be_entered() -> None:
    session = lkkit.connect("ws://127.0.0.1:1", "token")
    events = session.events()
    with pytest.raises(lkkit.SessionStateError):
        await events.__anext__()
    with pytest.raises(lkkit.SessionStateError):
        _ = events.snapshot
    async with events:
        with pytest.raises(lkkit.SessionStateError):
            await events.__aenter__()


async def test_an_async_handler_still_running_at_the_end_is_cancelled(
    livekit_room: LiveKitRoom, caplog: pytest.LogCaptureFixture
) -> None:
    grace = 0.5
    alice = await livekit_room.join("alice", options=lkkit.ConnectOptions(shutdown_timeout=grace))
    started = anyio.Event()
    cancelled: list[bool] = []

    async def stuck(event: Event) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    handler = alice.on(DataReceived, handler=stuck)
    bob = await livekit_room.join("bob")
    with anyio.fail_after(WAIT_S):
        while not started.is_set():
            await bob.room.local_participant.publish_data(b"x", reliable=True)
            with anyio.move_on_after(0.3):
                await started.wait()
    with caplog.at_level(logging.WARNING, logger="lkkit"), anyio.fail_after(WAIT_S):
        await alice.aclose()  # returns although the handler never would
    assert cancelled == [True]
    assert not handler.active
    assert "still running at session end" in caplog.text
