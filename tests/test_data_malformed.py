"""What a receiver does with bad data: malformed, corrupt, duplicated, inconsistent,
truncated and oversized chunks from a plain SDK peer, floods, failed sends and stalled
native streams. None may crash the receiver, leak memory, or pass unreported."""

from __future__ import annotations

import collections
import os
import struct
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from livekit import rtc

import lkkit
from data_helpers import WAIT, raw_peer, receive, wait_raw_to_lkkit, wait_ready
from lkkit._chunking import encode_message
from lkkit._data import DataDropped, DataDropReason, DataKind, DataOptions, DataSubscription
from lkkit._events import DataReceived
from lkkit._exceptions import DataSendIncomplete, PublishError
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio


MIB = 1024 * 1024

# The version-1 header, written from docs/wire-format.md (not from the codec).
HEADER = struct.Struct(">4sBB8sIIIII")
FIELDS = ("magic", "version", "header_length", "message_id", "index", "count", "total",
          "chunk_size", "crc")  # fmt: skip


def reheader(packet: bytes, **changes: object) -> bytes:
    """`packet` with header fields changed and a valid header CRC-32 again."""
    values = dict(zip(FIELDS, HEADER.unpack_from(packet), strict=True))
    values.update(changes)
    prefix = HEADER.pack(*(values[f] for f in FIELDS))
    return prefix + struct.pack(">I", zlib.crc32(prefix)) + packet[38:]


def flip_body_byte(packet: bytes) -> bytes:
    return packet[:-1] + bytes([packet[-1] ^ 0xFF])


async def collect_drops(drops: DataSubscription[DataDropped], count: int) -> list[DataDropped]:
    with anyio.fail_after(WAIT):
        return [await drops.receive() for _ in range(count)]


@asynccontextmanager
async def known_raw_peer(
    livekit_room: LiveKitRoom, session: lkkit.Session
) -> AsyncIterator[rtc.Room]:
    """A plain SDK peer that `session` knows and receives from."""
    async with raw_peer(livekit_room) as room:
        await wait_raw_to_lkkit(room, session)
        yield room


def packet_event(
    payload: bytes, sender: lkkit.RemoteParticipant | None, topic: str = "t"
) -> DataReceived:
    return DataReceived(
        payload=payload,
        topic=topic,
        participant=sender,
        reliability=lkkit.DataReliability.RELIABLE,
        received_at=time.time(),
    )


# -- crafted chunks from a plain peer --------------------------------------------------


async def test_malformed_chunks_are_dropped_and_reported(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    cap = MIB
    # The timeout outlasts any stall between two sends below: only G and H1-H3 time out.
    bob.data.configure(
        DataOptions(max_pending_bytes=cap, incomplete_timeout=3.0, max_pending_messages=16)
    )
    async with known_raw_peer(livekit_room, bob) as raw:

        async def send(packet: bytes) -> None:
            await raw.local_participant.publish_data(packet, topic="bad")

        async with bob.data.messages("bad") as messages, bob.data.drops() as drops:
            good = encode_message(os.urandom(40_000))
            await send(reheader(good[0], index=7, count=3))  # index >= count
            await send(reheader(good[0], version=2))  # a future version
            await send(reheader(good[0], message_id=b"C" * 8))  # chunk_size kept
            corrupt = [reheader(p, message_id=b"C" * 8) for p in good]
            await send(corrupt[1])
            await send(flip_body_byte(corrupt[2]))  # all chunks there, CRC fails
            duplicated = [reheader(p, message_id=b"D" * 8) for p in good]
            for packet in (duplicated[0], duplicated[0], duplicated[1], duplicated[2]):
                await send(packet)
            inconsistent = [reheader(p, message_id=b"E" * 8) for p in good]
            await send(inconsistent[0])
            await send(flip_body_byte(inconsistent[0]))  # same index, other bytes
            await send(inconsistent[1])  # its message was dropped
            huge = encode_message(os.urandom(2 * MIB))
            await send(huge[0])  # declares more than the cap
            await send(huge[1])
            await send(reheader(good[0], message_id=b"G" * 8))  # never finished
            for name in (b"H1", b"H2", b"H3", b"H4"):
                first = encode_message(os.urandom(300_000))[0]
                await send(reheader(first, message_id=name.ljust(8, b"_")))
            await send(b"\xffLKC but not a chunk")
            last = os.urandom(50_000)
            for packet in encode_message(last):
                await send(packet)

            delivered = [await receive(messages) for _ in range(3)]
            before_timeouts = bob.data.stats
            reports = await collect_drops(drops, 13)

    assert [m.payload for m in delivered] == [
        b"".join(p[38:] for p in duplicated),
        b"\xffLKC but not a chunk",
        last,
    ]
    assert [m.kind for m in delivered] == [DataKind.CHUNKED, DataKind.PACKET, DataKind.CHUNKED]
    assert before_timeouts.pending_bytes <= cap
    counts = collections.Counter(d.reason for d in reports)
    assert counts == {
        DataDropReason.MALFORMED: 1,
        DataDropReason.UNSUPPORTED_VERSION: 1,
        DataDropReason.CORRUPT_MESSAGE: 1,
        DataDropReason.DUPLICATE: 1,
        DataDropReason.INCONSISTENT: 1,
        DataDropReason.ALREADY_DROPPED: 2,
        DataDropReason.TOO_LARGE: 1,
        DataDropReason.OVER_BUDGET: 1,
        DataDropReason.TIMEOUT: 4,  # G, H1, H2, H3
    }
    assert all(d.sender == "raw" and d.topic == "bad" for d in reports)
    by_id = {d.message_id: d for d in reports if d.reason is DataDropReason.TIMEOUT}
    assert set(by_id) == {b"G" * 8, b"H1______", b"H2______", b"H3______"}
    stats = bob.data.stats
    assert stats.pending_messages == 0
    assert stats.pending_bytes == 0
    assert stats.dropped == {reason: counts.get(reason, 0) for reason in DataDropReason}
    assert not bob.data._packets._pending_topics
    assert not bob.data._packets._late_senders


async def test_flood_of_incomplete_messages_stays_bounded(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    cap = 4 * MIB
    bob.data.configure(
        DataOptions(max_pending_bytes=cap, incomplete_timeout=1.0, max_pending_messages=8)
    )
    firsts = [encode_message(os.urandom(MIB))[0] for _ in range(4)]
    async with known_raw_peer(livekit_room, bob) as raw, bob.data.drops() as drops:
        peak = 0
        for round_ in range(3):
            for i in range(100):
                packet = reheader(firsts[i % 4], message_id=os.urandom(8))
                await raw.local_participant.publish_data(packet, topic="flood")
                # Never more held than the cap, however many messages are started.
                peak = max(peak, bob.data.stats.pending_bytes)
            reports = await collect_drops(drops, 100)
            assert bob.data.stats.pending_bytes == 0, round_
            reasons = collections.Counter(d.reason for d in reports)
            # At most four 1 MiB messages fit the cap at once, and time out; the rest
            # are refused (more time out when sending outlasts the timeout).
            assert set(reasons) == {DataDropReason.OVER_BUDGET, DataDropReason.TIMEOUT}
            assert reasons[DataDropReason.TIMEOUT] >= 4
            assert reasons[DataDropReason.OVER_BUDGET] >= 50
        assert 0 < peak <= cap
        async with bob.data.messages("flood") as messages:
            await raw.local_participant.publish_data(b"still alive", topic="flood")
            assert (await receive(messages)).payload == b"still alive"
    assert not bob.data._packets._pending_topics


async def test_chunks_whose_sender_becomes_known_mid_message(livekit_room: LiveKitRoom) -> None:
    """The first chunks came without identity (sender not announced yet), the rest with."""
    await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    alice = bob.remote_participants["alice"]  # known at once: alice was there first
    payload = os.urandom(40_000)
    packets = encode_message(payload)
    other = encode_message(os.urandom(40_000))
    async with bob.data.messages("t") as messages, bob.data.drops() as drops:
        bob.data._on_event(packet_event(packets[0], None))
        bob.data._on_event(packet_event(packets[1], alice))
        bob.data._on_event(packet_event(packets[1], alice))  # a duplicate
        bob.data._on_event(packet_event(packets[2], alice))
        bob.data._on_event(packet_event(other[0], None))  # stays anonymous: no later chunk
        message = messages.receive_nowait()
        duplicate = drops.receive_nowait()
    assert message.payload == payload
    assert message.sender == "alice"
    assert message.kind is DataKind.CHUNKED
    assert duplicate.reason is DataDropReason.DUPLICATE
    assert duplicate.sender == "alice"
    assert not bob.data._packets._late_senders
    with pytest.raises(lkkit.SessionStateError):
        bob.data.configure(DataOptions())  # `other` is still incomplete


# -- failed sends ----------------------------------------------------------------------


async def test_send_failing_mid_message_is_reported_on_both_sides(
    livekit_room: LiveKitRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    bob.data.configure(DataOptions(incomplete_timeout=1.0))
    await wait_ready(alice, bob)
    real_publish = alice.data._publish
    calls = 0
    fail_from = 3  # the SDK accepts two packets, then refuses every one

    async def flaky_publish(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls >= fail_from:
            raise PublishError("engine: simulated failure")
        await real_publish(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(alice.data, "_publish", flaky_publish)
    async with bob.data.messages("f") as messages, bob.data.drops() as drops:
        with pytest.raises(DataSendIncomplete) as raised:
            await alice.data.send(os.urandom(100_000), topic="f", native_stream=False)
        assert (raised.value.sent, raised.value.total) == (2, 7)
        assert isinstance(raised.value.__cause__, PublishError)
        # Nothing accepted at all: a plain PublishError, no partial message anywhere.
        with pytest.raises(PublishError) as nothing:
            await alice.data.send(os.urandom(100_000), topic="f", native_stream=False)
        assert not isinstance(nothing.value, DataSendIncomplete)
        fail_from = 10**9
        await alice.data.send(b"after", topic="f")
        assert (await receive(messages)).payload == b"after"
        (report,) = await collect_drops(drops, 1)
    assert report.reason is DataDropReason.TIMEOUT
    assert report.sender == "alice"
    assert report.topic == "f"
    assert report.bytes_dropped == 2 * 15_322
    assert bob.data.stats.pending_bytes == 0


# -- native streams --------------------------------------------------------------------


async def test_stalled_and_oversized_native_streams_are_dropped(
    livekit_room: LiveKitRoom,
) -> None:
    bob = await livekit_room.join("bob")
    bob.data.configure(DataOptions(max_pending_bytes=100_000, incomplete_timeout=3.0))
    async with (
        known_raw_peer(livekit_room, bob) as raw,
        bob.data.messages("st") as messages,
        bob.data.drops() as drops,
    ):
        writer = await raw.local_participant.stream_bytes("stalled", topic="st")
        await writer.write(b"x" * 1000)
        (stalled,) = await collect_drops(drops, 1)
        await raw.local_participant.send_bytes(os.urandom(200_000), topic="st")
        (oversized,) = await collect_drops(drops, 1)
        growing = await raw.local_participant.stream_bytes("growing", topic="st")
        for _ in range(15):
            await growing.write(os.urandom(10_000))
        await growing.aclose()
        (grown,) = await collect_drops(drops, 1)
        await raw.local_participant.send_bytes(b"fine", topic="st")
        assert (await receive(messages)).payload == b"fine"
        await writer.aclose()
    assert stalled.reason is DataDropReason.TIMEOUT
    assert stalled.sender == "raw"
    assert stalled.message_id is None
    assert stalled.bytes_dropped == 1000
    assert oversized.reason is DataDropReason.TOO_LARGE
    assert grown.reason is DataDropReason.TOO_LARGE
    assert bob.data.stats.pending_bytes == 0
    assert bob.data.stats.pending_messages == 0
