"""Data messages against a real server: sizes, topics, destinations, reliability,
permissions, order, and input checks (`lkkit._data`)."""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from livekit import rtc

import lkkit
from data_helpers import WAIT, receive, wait_ready
from lkkit._chunking import MAX_PACKET_BYTES
from lkkit._data import (
    DataDropped,
    DataDropReason,
    DataKind,
    DataMessage,
    DataOptions,
    DataSent,
    DataSubscription,
)
from lkkit._events import Reconnected
from lkkit._exceptions import InvalidDataArgument
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def pair(livekit_room: LiveKitRoom) -> AsyncIterator[tuple[lkkit.Session, lkkit.Session]]:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    await wait_ready(alice, bob)
    yield alice, bob


async def send_marker(sender: lkkit.Session, topic: str = "t") -> bytes:
    marker = b"marker-" + os.urandom(8)
    await sender.data.send(marker, topic=topic)
    return marker


# -- sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize("native_stream", [None, False], ids=["default", "lkkit-chunks"])
@pytest.mark.parametrize(
    "size",
    [0, 1, MAX_PACKET_BYTES, MAX_PACKET_BYTES + 1, 1024 * 1024],
    ids=["0B", "1B", "15360B", "15361B", "1MiB"],
)
async def test_payload_sizes_arrive_whole(
    livekit_room: LiveKitRoom, size: int, native_stream: bool | None
) -> None:
    async with pair(livekit_room) as (alice, bob):
        payload = os.urandom(size)
        packets_before = alice.data.stats.packets_sent
        async with bob.data.messages("blob") as messages:
            sent = await alice.data.send(payload, topic="blob", native_stream=native_stream)
            message = await receive(messages)
        assert message.payload == payload
        assert message.topic == "blob"
        assert message.sender == "alice"
        assert message.participant is not None
        assert message.participant.identity == "alice"
        assert message.reliability is lkkit.DataReliability.RELIABLE
        assert sent.size == size
        if size <= MAX_PACKET_BYTES:
            assert message.kind is DataKind.PACKET
            assert (sent.packets, sent.chunked) == (1, False)
        elif native_stream is None:  # what every LiveKit SDK reads
            assert message.kind is DataKind.BYTE_STREAM
            assert (sent.packets, sent.chunked) == (None, False)
        else:
            assert message.kind is DataKind.CHUNKED
            assert sent.chunked
            assert sent.packets == -(-size // (MAX_PACKET_BYTES - 38))
        assert alice.data.stats.packets_sent == packets_before + (sent.packets or 0)
        stats = bob.data.stats
        assert stats.pending_messages == 0
        assert stats.pending_bytes == 0
        assert stats.total_dropped == 0


async def test_16_mib_message(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        payload = os.urandom(16 * 1024 * 1024)
        async with bob.data.messages("big") as messages:
            sender = asyncio.create_task(alice.data.send(payload, topic="big", native_stream=False))
            # Send and receive overlap: the event loop stays free while sending.
            message = await receive(messages)
            sent = await sender
        assert zlib.crc32(message.payload) == zlib.crc32(payload)
        assert message.payload == payload
        assert message.kind is DataKind.CHUNKED
        assert sent.packets == 1095
        assert bob.data.stats.pending_bytes == 0


async def test_str_payload_is_sent_as_utf8(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        async with bob.data.messages() as messages:
            await alice.data.send("héllo ✓", topic="chat")
            message = await receive(messages)
        assert message.payload == "héllo ✓".encode()
        assert message.text == "héllo ✓"
        assert message.origin is lkkit.DataOrigin.PARTICIPANT


async def test_bytearray_and_memoryview_payloads_are_snapshots(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        buffer = bytearray(b"a" * 40_000)
        async with bob.data.messages("t") as messages:
            task = asyncio.create_task(alice.data.send(buffer, topic="t"))
            await asyncio.sleep(0)  # send has taken its snapshot by its first await
            buffer[:] = b"b" * 40_000
            await task
            await alice.data.send(memoryview(b"xyz"), topic="t")
            first = await receive(messages)
            second = await receive(messages)
        assert first.payload == b"a" * 40_000
        assert second.payload == b"xyz"


# -- topics ----------------------------------------------------------------------------


async def test_topic_filters(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        async with (
            bob.data.messages("a") as only_a,
            bob.data.messages(["a", "b"]) as a_or_b,
            bob.data.messages("") as no_topic,
            bob.data.messages() as everything,
        ):
            assert only_a.topics == frozenset({"a"})
            assert everything.topics is None
            for topic in ("a", "b", "c", "", "a"):
                await alice.data.send(f"on {topic!r}", topic=topic)
            received_all = [await receive(everything) for _ in range(5)]
            marker = await send_marker(alice, "a")
            received_a = [await receive(only_a) for _ in range(3)]
            received_ab = [await receive(a_or_b) for _ in range(3)]
            received_none = [await receive(no_topic)]
        assert [m.topic for m in received_all] == ["a", "b", "c", "", "a"]
        assert [m.topic for m in received_a] == ["a", "a", "a"]
        assert received_a[-1].payload == marker
        assert [m.topic for m in received_ab] == ["a", "b", "a"]
        assert [m.topic for m in received_none] == [""]


async def test_message_without_subscriber_is_counted_unrouted(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        async with bob.data.messages("wanted") as wanted:
            await alice.data.send(b"nobody listens", topic="unwanted")
            await alice.data.send(b"x", topic="wanted")
            await receive(wanted)
        assert bob.data.stats.messages_unrouted >= 1


# -- destinations ----------------------------------------------------------------------


async def test_destinations_with_three_participants(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    carol = await livekit_room.join("carol")
    await wait_ready(alice, bob, carol)
    async with bob.data.messages("d") as at_bob, carol.data.messages("d") as at_carol:
        big = os.urandom(100_000)
        sent = await alice.data.send(b"for bob", topic="d", to=["bob"])
        assert sent.absent_destinations == ()
        await alice.data.send(big, topic="d", to=["carol"])
        await alice.data.send(b"for both", topic="d", to=("bob", "carol", "bob"))
        await alice.data.send(b"everyone", topic="d")
        assert [(await receive(at_bob)).payload for _ in range(3)] == [
            b"for bob",
            b"for both",
            b"everyone",
        ]
        assert [(await receive(at_carol)).payload for _ in range(3)] == [
            big,
            b"for both",
            b"everyone",
        ]


async def test_destination_not_in_room_is_reported_and_skipped(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob), bob.data.messages("d") as messages:
        sent = await alice.data.send(b"x", topic="d", to=["ghost", "bob"])
        assert sent.absent_destinations == ("ghost",)
        only_ghost = await alice.data.send(os.urandom(40_000), topic="d", to=["ghost"])
        assert only_ghost.absent_destinations == ("ghost",)
        marker = await send_marker(alice, "d")
        assert (await receive(messages)).payload == b"x"
        # The server skipped the message for "ghost": bob's next message is the marker.
        assert (await receive(messages)).payload == marker


# -- reliability -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 1_300, 1_301, MAX_PACKET_BYTES])
async def test_lossy_within_the_limit(livekit_room: LiveKitRoom, size: int) -> None:
    async with pair(livekit_room) as (alice, bob):
        payload = os.urandom(size)
        async with bob.data.messages("l") as messages:
            sent = await alice.data.send(payload, topic="l", reliable=False)
            # Loopback does not lose packets, so the lossy packet arrives.
            message = await receive(messages)
        assert message.payload == payload
        assert message.reliability is lkkit.DataReliability.LOSSY
        assert not message.reliable
        assert message.kind is DataKind.PACKET
        assert sent.packets == 1
        assert alice.data.stats.lossy_over_mtu_sent == (1 if size > 1_300 else 0)


async def test_lossy_over_the_limit_is_refused_before_sending(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        before = alice.data.stats
        async with bob.data.messages("l") as messages:
            with pytest.raises(lkkit.DataTooLarge):
                await alice.data.send(os.urandom(MAX_PACKET_BYTES + 1), topic="l", reliable=False)
            with pytest.raises(ValueError, match="lossy"):
                await alice.data.send(b"x" * 1_000_000, topic="l", reliable=False)
            alice.data.configure(DataOptions(lossy_max_bytes=1_300))
            with pytest.raises(lkkit.DataTooLarge):
                await alice.data.send(os.urandom(1_301), topic="l", reliable=False)
            at_limit = os.urandom(1_300)
            await alice.data.send(at_limit, topic="l", reliable=False)
            marker = await send_marker(alice, "l")
            # Lossy and reliable packets travel on separate data channels: either may
            # arrive first, so only the set of arrivals is compared.
            arrived = {(await receive(messages)).payload for _ in range(2)}
            assert arrived == {at_limit, marker}
        after = alice.data.stats
        assert after.packets_sent == before.packets_sent + 2


async def test_lossy_payload_that_looks_like_a_chunk_over_limit_is_refused(
    livekit_room: LiveKitRoom,
) -> None:
    from lkkit._chunking import encode_message

    # A chunk packet of 15,360 bytes, sent as a payload, needs framing (38 more bytes):
    # it no longer fits one lossy packet.
    chunk = encode_message(os.urandom(40_000))[0]
    assert len(chunk) == MAX_PACKET_BYTES
    alice = await livekit_room.join("alice")
    with pytest.raises(lkkit.DataTooLarge):
        await alice.data.send(chunk, reliable=False)
    assert alice.data.stats.packets_sent == 0


# -- permissions -----------------------------------------------------------------------


async def test_send_without_data_permission_is_refused(livekit_room: LiveKitRoom) -> None:
    muted = await livekit_room.join("muted", can_publish_data=False)
    assert not muted.local_participant.permissions.can_publish_data
    for payload, reliable in ((b"x", True), (os.urandom(50_000), True), (b"x", False)):
        with pytest.raises(lkkit.DataPermissionDenied):
            await muted.data.send(payload, reliable=reliable)
    with pytest.raises(PermissionError):
        await muted.data.send("x", native_stream=True)
    assert muted.data.stats.packets_sent == 0
    assert muted.data.stats.messages_sent == 0


async def test_raw_sdk_without_permission_is_silently_dropped(livekit_room: LiveKitRoom) -> None:
    """What lkkit protects from: the raw SDK reports success, the server drops it."""
    bob = await livekit_room.join("bob")
    raw = rtc.Room()
    await raw.connect(livekit_room.url, livekit_room.token("raw", can_publish_data=False))
    try:
        async with bob.data.messages("p") as messages:
            await raw.local_participant.publish_data(b"dropped", topic="p")  # no error
            alice = await livekit_room.join("alice")
            await wait_ready(alice, bob)
            marker = await send_marker(alice, "p")
            assert (await receive(messages)).payload == marker
    finally:
        await raw.disconnect()


# -- reconnection ----------------------------------------------------------------------

BIG = 4 * 1024 * 1024  # about 4 s through the local server (~1.1 MB/s)


async def reconnect_mid_message(
    alice: lkkit.Session,
    bob: lkkit.Session,
    who: str,
    scenario: rtc.SimulateScenarioKind.ValueType,
    payload: bytes,
) -> DataSent:
    """Alice sends `payload` on "big"; once bob holds part of it, `who` goes through
    `scenario`."""
    target = alice if who == "sender" else bob
    sent: list[DataSent] = []

    async def send() -> None:
        sent.append(await alice.data.send(payload, topic="big", native_stream=False))

    async with target.events(Reconnected) as reconnected, anyio.create_task_group() as tg:
        tg.start_soon(send)
        with anyio.fail_after(WAIT):  # the reconnect lands mid-message
            while bob.data.stats.pending_bytes == 0:
                await anyio.sleep(0.01)
        assert bob.data.stats.chunked_received == 0
        await target.room.simulate_scenario(scenario)
        with anyio.fail_after(WAIT):
            await reconnected.__anext__()
    (result,) = sent
    return result


@pytest.mark.parametrize("who", ["sender", "receiver"])
async def test_signal_reconnect_mid_message_delivers_it_whole(
    livekit_room: LiveKitRoom, who: str
) -> None:
    async with pair(livekit_room) as (alice, bob), bob.data.messages("big") as messages:
        payload = os.urandom(BIG)
        scenario = rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT
        await reconnect_mid_message(alice, bob, who, scenario, payload)
        assert (await receive(messages)).payload == payload
    assert bob.data.stats.total_dropped == 0


async def first_of(
    messages: DataSubscription[DataMessage], drops: DataSubscription[DataDropped]
) -> DataMessage | DataDropped:
    """Whichever comes first: a message or a drop report (a waiting `drops.receive()`
    is also what notices a timed-out message)."""
    outcomes: list[DataMessage | DataDropped] = []
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:

            async def take(subscription: DataSubscription[Any]) -> None:
                outcomes.append(await subscription.receive())
                tg.cancel_scope.cancel()

            tg.start_soon(take, messages)
            tg.start_soon(take, drops)
    (outcome,) = outcomes
    return outcome


@pytest.mark.parametrize("who", ["sender", "receiver"])
async def test_full_reconnect_mid_message_delivers_it_whole_or_reports_it(
    livekit_room: LiveKitRoom, who: str
) -> None:
    """A full reconnect replaces the data channels and the SDK does not tell the sender
    whether the packets in flight were lost: the message either arrives whole or the
    receiver reports it as a TIMEOUT drop. Never a partial or corrupt message."""
    async with pair(livekit_room) as (alice, bob):
        bob.data.configure(DataOptions(incomplete_timeout=3.0))
        async with bob.data.messages("big") as messages, bob.data.drops() as drops:
            payload = os.urandom(BIG)
            scenario = rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT
            sent = await reconnect_mid_message(alice, bob, who, scenario, payload)
            outcome = await first_of(messages, drops)
            if isinstance(outcome, DataMessage):
                assert outcome.payload == payload
                assert bob.data.stats.total_dropped == 0
            else:
                assert (outcome.reason, outcome.sender, outcome.topic, outcome.message_id) == (
                    DataDropReason.TIMEOUT,
                    "alice",
                    "big",
                    sent.message_id,
                )
                assert 0 < outcome.bytes_dropped < BIG
            # Nothing more of that message is delivered, and data flows again.
            await wait_ready(alice, bob)
            marker = await send_marker(alice, "big")
            assert (await receive(messages)).payload == marker
        assert bob.data.stats.total_dropped == (0 if isinstance(outcome, DataMessage) else 1)


# -- order -----------------------------------------------------------------------------


def _numbered(index: int, size: int) -> bytes:
    return index.to_bytes(4, "big") + os.urandom(max(0, size - 4))


@pytest.mark.parametrize("native_stream", [None, False], ids=["default", "lkkit-chunks"])
async def test_order_large_and_small_interleaved(
    livekit_room: LiveKitRoom, native_stream: bool | None
) -> None:
    sizes = [10, 200_000, 5, 15_361, 1, 40_000, 15_360, 300_000, 2, 16, 70_000, 8]
    async with pair(livekit_room) as (alice, bob):
        payloads = [_numbered(i, s) for i, s in enumerate(sizes)]
        async with bob.data.messages("o") as messages:
            for payload in payloads:
                await alice.data.send(payload, topic="o", native_stream=native_stream)
            # Concurrent sends from several tasks keep the order the sends began in;
            # the receiver holds a sender's packets behind its stream being read.
            async with anyio.create_task_group() as tg:
                for payload in payloads:
                    tg.start_soon(
                        partial(alice.data.send, payload, topic="o", native_stream=native_stream)
                    )
                    await anyio.lowlevel.checkpoint()
            received = [await receive(messages) for _ in range(2 * len(payloads))]
        assert [m.payload for m in received] == payloads + payloads


async def test_order_holds_when_the_sdk_reports_a_stream_after_later_packets(
    livekit_room: LiveKitRoom,
) -> None:
    # The SDK's native core reports a stream's opening from a task of its own, which on
    # a loaded machine came after a packet sent later (seen in CI). Here the opening is
    # held back 0.3 s on purpose; the stream's raw header event still comes in order.
    async with pair(livekit_room) as (alice, bob), bob.data.messages("late") as messages:
        room = bob.room
        opened = room._handle_byte_stream_opened  # lkkit's wrapper of the SDK's dispatch
        loop = asyncio.get_running_loop()
        setattr(  # noqa: B010 (a method of the SDK's room)
            room, "_handle_byte_stream_opened", lambda event: loop.call_later(0.3, opened, event)
        )
        try:
            big = os.urandom(40_000)
            await alice.data.send(big, topic="late")
            await alice.data.send(b"after", topic="late")
            first = await receive(messages)
            second = await receive(messages)
        finally:
            setattr(room, "_handle_byte_stream_opened", opened)  # noqa: B010
    assert (first.payload, second.payload) == (big, b"after")


async def test_two_senders_reassemble_independently(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    carol = await livekit_room.join("carol")
    await wait_ready(alice, carol)
    await wait_ready(bob, carol)
    from_alice = [os.urandom(300_000 + i) for i in range(3)]
    from_bob = [os.urandom(250_000 + i) for i in range(3)]
    async with carol.data.messages("x") as messages:

        async def send_all(session: lkkit.Session, payloads: list[bytes]) -> None:
            for payload in payloads:
                await session.data.send(payload, topic="x")

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_all, alice, from_alice)
            tg.start_soon(send_all, bob, from_bob)
        received = [await receive(messages) for _ in range(6)]
    assert [m.payload for m in received if m.sender == "alice"] == from_alice
    assert [m.payload for m in received if m.sender == "bob"] == from_bob
    assert carol.data.stats.streams_received == 6


# -- input checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload": 12},
        {"payload": None},
        {"payload": ["a"]},
        {"topic": 3},
        {"topic": "x" * 257},
        {"topic": "é" * 129},
        {"to": "bob"},
        {"to": b"bob"},
        {"to": []},
        {"to": [""]},
        {"to": [1]},
        {"to": 5},
        {"reliable": "yes"},
        {"reliable": False, "native_stream": True},
        {"native_stream": 1},
    ],
)
async def test_bad_input_is_refused_before_sending(
    livekit_room: LiveKitRoom, kwargs: dict[str, object]
) -> None:
    alice = await livekit_room.join("alice")
    args: dict[str, object] = {"payload": b"x", **kwargs}
    payload = args.pop("payload")
    with pytest.raises(InvalidDataArgument):
        await alice.data.send(payload, **args)  # type: ignore[arg-type]
    assert alice.data.stats.messages_sent == 0
    assert alice.data.stats.packets_sent == 0


async def test_bad_subscription_arguments(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    for bad in (3, [], [1], b"t", "x" * 300):
        with pytest.raises(InvalidDataArgument):
            alice.data.messages(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidDataArgument):
        alice.data.messages(buffer=0)
    with pytest.raises(InvalidDataArgument):
        alice.data.drops(buffer=-1)
    subscription = alice.data.messages()
    with pytest.raises(lkkit.SessionStateError):
        subscription.receive_nowait()


def test_options_are_checked() -> None:
    for bad in (
        {"max_pending_bytes": 0},
        {"incomplete_timeout": 0},
        {"max_pending_messages": 0},
        {"lossy_max_bytes": 0},
        {"lossy_max_bytes": MAX_PACKET_BYTES + 1},
    ):
        with pytest.raises(lkkit.ConfigurationError):
            DataOptions(**bad)


# -- lifecycle -------------------------------------------------------------------------


async def test_subscription_ends_with_the_session(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        async with bob.data.messages("z") as messages:
            await alice.data.send(b"last", topic="z")
            with anyio.fail_after(WAIT):
                while messages.buffered == 0:
                    await anyio.sleep(0.01)
            await bob.aclose()
            received = [m async for m in messages]  # what was queued, then the end
        assert [m.payload for m in received] == [b"last"]
        with pytest.raises(lkkit.NotConnected):
            await bob.data.send(b"x")
        async with bob.data.messages() as late:
            assert [m async for m in late] == []


async def test_send_when_not_connected(livekit_room: LiveKitRoom) -> None:
    session = lkkit.connect(livekit_room.url, livekit_room.token("early"))
    with pytest.raises(lkkit.NotConnected):
        await session.data.send(b"x")


async def test_slow_subscriber_drops_are_reported(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        async with (
            bob.data.messages("s", buffer=2) as slow,
            bob.data.messages("s") as fast,
            bob.data.drops() as drops,
        ):
            for i in range(5):
                await alice.data.send(_numbered(i, 10), topic="s")
            got_fast = [await receive(fast) for _ in range(5)]
            with anyio.fail_after(WAIT):
                reports: list[DataDropped] = [await drops.receive() for _ in range(3)]
            got_slow = [slow.receive_nowait(), slow.receive_nowait()]
        assert [m.payload[:4] for m in got_fast] == [i.to_bytes(4, "big") for i in range(5)]
        # The full subscription keeps the newest and drops the oldest (DROP_OLDEST).
        assert [m.payload for m in got_slow] == [m.payload for m in got_fast[3:]]
        assert slow.dropped == 3
        assert {d.reason for d in reports} == {DataDropReason.SUBSCRIBER_FULL}
        assert all(d.sender == "alice" and d.topic == "s" for d in reports)
        assert [d.bytes_dropped for d in reports] == [len(m.payload) for m in got_fast[:3]]
        assert bob.data.stats.dropped[DataDropReason.SUBSCRIBER_FULL] == 3


async def test_a_failing_subscription_ends_after_what_it_had(livekit_room: LiveKitRoom) -> None:
    async with (
        pair(livekit_room) as (alice, bob),
        bob.data.messages("s", buffer=2, overflow=lkkit.OverflowPolicy.FAIL) as strict,
    ):
        for i in range(3):
            await alice.data.send(_numbered(i, 10), topic="s")
        with anyio.fail_after(WAIT):
            while not strict.ended:  # the third message overflows it: nothing is read yet
                await anyio.sleep(0.01)
            first = await strict.receive()
            second = await strict.receive()
            with pytest.raises(lkkit.SubscriptionOverflow):
                await strict.receive()
    assert [first.payload[:4], second.payload[:4]] == [i.to_bytes(4, "big") for i in range(2)]


def test_sent_value() -> None:
    sent = DataSent(size=3, packets=1, message_id=None)
    assert not sent.chunked
    assert sent.absent_destinations == ()


async def test_hidden_destination_receives_though_listed_absent(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    ghost = await livekit_room.join("observer", hidden=True)
    async with ghost.data.messages("h") as messages:
        with anyio.fail_after(WAIT):
            while True:  # until the hidden participant's subscriber connection is up
                sent = await alice.data.send(b"to the observer", topic="h", to=["observer"])
                with anyio.move_on_after(0.3):
                    message = await messages.receive()
                    break
    assert "observer" not in alice.remote_participants
    assert sent.absent_destinations == ("observer",)
    assert message.payload == b"to the observer"
    assert message.sender == "alice"
