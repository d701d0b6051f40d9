"""Fuzzing what lkkit decodes from the outside: the chunk codec, the reassembly of chunked
messages and of native data streams, the conversion of SDK events, and the agent
protocol (its protobuf decoder and the WebSocket frame parser).

Every property feeds arbitrary input, or input near a valid encoding (truncated,
flipped, relabelled, reordered, repeated, declaring huge sizes), and checks that the
code returns the right value or rejects the input the way it documents (a typed drop or
a typed error), never another exception, never hangs, and holds bounded memory.

`LKKIT_FUZZ_EXAMPLES` sets the examples per property (200 by default, a few seconds in
all); `nox -s fuzz` runs them long. Run as a script, this file drives one property
under atheris, coverage-guided (`python tests/test_fuzz.py --list` names them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import enum
import gc
import importlib
import os
import struct
import sys
import time
import tracemalloc
import types
import typing
import zlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, SimpleNamespace
from typing import Any, cast

import anyio
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit import rtc
from livekit.protocol import agent as proto_agent
from livekit.rtc._proto import data_track_pb2, participant_pb2, room_pb2, track_pb2

from lkkit import _chunking
from lkkit._chunking import (
    HEADER_BYTES,
    MAGIC,
    MESSAGE_ID_BYTES,
    Complete,
    Dropped,
    DropReason,
    Raw,
    Reassembler,
    Stored,
    encode_message,
    needs_framing,
)
from lkkit._data import DataDropped, DataDropReason, DataKind, DataMessage, DataOptions
from lkkit._data._native_streams import NativeStreamReceiver, StreamSlot
from lkkit._data._packets import PacketReceiver
from lkkit._data._stream_io import IncomingStream
from lkkit._event_bus import EventBus
from lkkit._events import (
    EVENT_TYPES,
    SDK_EVENT_CONVERTERS,
    ActiveSpeakersChanged,
    DataReceived,
    Disconnected,
    Event,
    IsSpeakingChanged,
)
from lkkit._exceptions import (
    ConfigurationError,
    ProtocolError,
    StreamError,
    SubscriptionOverflow,
)
from lkkit._participants import (
    Participant,
    RemoteParticipant,
    TrackPublication,
)
from lkkit._sdk_compat import SdkStreamError
from lkkit._types import (
    ConnectionQuality,
    DataReliability,
    ParticipantKind,
    StreamState,
    TrackKind,
    TrackSource,
)
from lkkit.agents import Job, JobType
from lkkit.agents import _protocol as wire
from lkkit.agents import _websocket as websocket

EXAMPLES = int(os.environ.get("LKKIT_FUZZ_EXAMPLES", "200"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

U32_MAX = 0xFFFF_FFFF
HEADER = struct.Struct(">4sBB8sIIIII")  # the version-1 header before its CRC-32
U32 = struct.Struct(">I")
FIELDS = ("magic", "version", "header_length", "message_id", "index", "count", "total",
          "chunk_size", "crc")  # fmt: skip

U32_EDGES = [0, 1, 2, 37, 38, 39, 0x7FFF_FFFF, U32_MAX - 1, U32_MAX]
u32s = st.sampled_from(U32_EDGES) | st.integers(0, U32_MAX)
senders = st.sampled_from([None, "alice", "bob"])
# Seconds between two packets: mostly none, sometimes past the 5-second timeout.
WAITS = st.sampled_from([0.0] * 8 + [1.0, 6.0])
# A receiver's budget: mostly enough for the messages, sometimes not for one.
BUDGETS = st.sampled_from([65536] * 6 + [1, 100, 300])


def sized_binary(max_size: int) -> st.SearchStrategy[bytes]:
    """Bytes of any length up to `max_size`, long ones as often as short ones."""
    return st.integers(0, max_size).flatmap(lambda n: st.binary(min_size=n, max_size=n))


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the chunk codec ---------------------------------------------------------------------


def rechunk(packet: bytes, **changes: int | bytes) -> bytes:
    """`packet` (a version-1 chunk) with header fields changed and a valid header CRC-32,
    so that it still passes the recognition test."""
    values = dict(zip(FIELDS, HEADER.unpack_from(packet), strict=True))
    values.update(changes)
    prefix = HEADER.pack(*(values[f] for f in FIELDS))
    return prefix + U32.pack(zlib.crc32(prefix)) + packet[HEADER_BYTES:]


def is_v1_chunk(packet: bytes) -> bool:
    return needs_framing(packet) and packet[5] == HEADER_BYTES


def huge_chunk(draw: st.DrawFn, body: bytes) -> bytes:
    """A chunk whose fields obey the version-1 rules and declare a message of up to
    4 GiB: the header a hostile sender writes to make a receiver allocate."""
    body = body or b"x"
    chunk_size = len(body)
    total = draw(st.integers(chunk_size + 1, U32_MAX))
    count = -(-total // chunk_size)
    index = draw(st.integers(0, count - 2))  # not the last chunk: its body is chunk_size
    message_id = draw(st.binary(min_size=MESSAGE_ID_BYTES, max_size=MESSAGE_ID_BYTES))
    prefix = HEADER.pack(MAGIC, 1, HEADER_BYTES, message_id, index, count, total, chunk_size, 0)
    return prefix + U32.pack(zlib.crc32(prefix)) + body


@st.composite
def huge_chunks(draw: st.DrawFn) -> bytes:
    return huge_chunk(draw, draw(st.binary(min_size=1, max_size=64)))


MUTATIONS = ("truncate", "extend", "flip", "splice", "random", "magic", "field", "refit",
             "header_length", "huge")  # fmt: skip


def refit(draw: st.DrawFn, packet: bytes) -> bytes:
    """`packet` (a version-1 chunk) with one of index, count, total length and chunk size
    changed (often to the edge of its rule), and a body of the length the new fields
    imply: a chunk that breaks one rule and passes every other check."""
    fields = dict(zip(FIELDS, HEADER.unpack_from(packet), strict=True))
    index, count = fields["index"], fields["count"]
    name = draw(st.sampled_from(["index", "count", "total", "chunk_size"]))
    current = fields[name]
    edges = [count, count + 1, current + 1, current - 1, 0, fields["total"] + 1]
    fields[name] = draw(st.sampled_from(edges) | u32s) % (U32_MAX + 1)
    index, count, total, size = (fields[f] for f in ("index", "count", "total", "chunk_size"))
    length = size if index < count - 1 else total - (count - 1) * size
    body = packet[HEADER_BYTES:].ljust(512, b"\0")[: max(0, min(length, 512))]
    return rechunk(packet[:HEADER_BYTES] + body, **{name: fields[name]})


def mutate(draw: st.DrawFn, packet: bytes, others: list[bytes]) -> bytes:
    """One mutation of `packet`; `others` are packets it may be spliced with."""
    how = draw(st.sampled_from(MUTATIONS))
    if how == "truncate":
        return packet[: draw(st.integers(0, max(len(packet) - 1, 0)))]
    if how == "extend":
        return packet + draw(st.binary(min_size=1, max_size=40))
    if how == "splice" and others:
        other = draw(st.sampled_from(others))
        cut = draw(st.integers(0, max(len(packet), len(other))))
        return packet[:cut] + other[cut:]
    if how == "random":
        return draw(st.binary(max_size=120))
    if how == "magic":
        return MAGIC + draw(st.binary(max_size=80))
    if how == "huge":
        return huge_chunk(draw, packet[HEADER_BYTES:])
    if how == "field" and is_v1_chunk(packet):
        name = draw(st.sampled_from(FIELDS[1:2] + FIELDS[3:]))
        value: int | bytes
        if name == "version":
            value = draw(st.integers(0, 255))
        elif name == "message_id":
            value = draw(st.binary(min_size=MESSAGE_ID_BYTES, max_size=MESSAGE_ID_BYTES))
        else:
            current = HEADER.unpack_from(packet)[FIELDS.index(name)]
            nearby = st.integers(-2, 2).map(lambda d: (current + d) % (U32_MAX + 1))
            value = draw(u32s | nearby)
        return rechunk(packet, **{name: value})
    if how == "refit" and is_v1_chunk(packet):
        return refit(draw, packet)
    if how == "header_length" and len(packet) >= 10:
        length = draw(st.integers(10, min(255, len(packet))))
        mutated = bytearray(packet)
        mutated[5] = length
        mutated[length - 4 : length] = U32.pack(zlib.crc32(mutated[: length - 4]))
        return bytes(mutated)
    if not packet:
        return b"\xff"
    at = draw(st.integers(0, len(packet) - 1))
    return packet[:at] + bytes([packet[at] ^ draw(st.integers(1, 255))]) + packet[at + 1 :]


Stream = list[tuple[str | None, bytes]]  # (sender, packet or payload)


@st.composite
def codec_streams(draw: st.DrawFn) -> tuple[Stream, Stream]:
    """A few messages from a few senders, and their packets after mutation, loss,
    duplication, reordering and insertion of stray packets."""
    max_packet = draw(st.integers(HEADER_BYTES + 1, HEADER_BYTES + 48))
    payloads = sized_binary((max_packet - HEADER_BYTES) * 6)  # up to 6 chunks
    messages = draw(st.lists(st.tuples(senders, payloads), min_size=1, max_size=3))
    stream: Stream = [
        (sender, packet)
        for sender, payload in messages
        for packet in encode_message(payload, max_packet_bytes=max_packet)
    ]
    originals = [packet for _, packet in stream]
    for _ in range(draw(st.integers(0, 10))):
        op = draw(st.sampled_from(["mutate", "mutate", "drop", "duplicate", "move", "insert"]))
        if op == "insert" or not stream:
            at = draw(st.integers(0, len(stream)))
            stream.insert(at, (draw(senders), mutate(draw, draw(st.sampled_from(originals)), [])))
            continue
        i = draw(st.integers(0, len(stream) - 1))
        sender, packet = stream[i]
        if op == "mutate":
            stream[i] = (sender, mutate(draw, packet, originals))
        elif op == "drop":
            del stream[i]
        elif op == "duplicate":
            stream.insert(draw(st.integers(0, len(stream))), (sender, packet))
        else:
            del stream[i]
            stream.insert(draw(st.integers(0, len(stream))), (sender, packet))
    return messages, stream


def check_budget(r: Reassembler, cap: int, messages: int, remembered: int) -> None:
    """The reassembler's memory is what it reserved, and within its limits."""
    stats = r.stats
    assert 0 <= stats.pending_bytes <= stats.reserved_bytes <= cap
    assert stats.pending_messages <= messages
    # What is allocated (peeking inside): the reservation, and ids remembered for late
    # duplicates, bounded too.
    assert sum(len(p.buffer) for p in r._pending.values()) == stats.reserved_bytes
    assert len(r._finished) <= remembered


@FUZZ
@given(case=codec_streams(), data=st.data())
def test_reassembler_survives_mutated_streams(
    case: tuple[Stream, Stream], data: st.DataObject
) -> None:
    messages, stream = case
    cap = data.draw(BUDGETS, label="max_pending_bytes")
    clock = FakeClock()
    r = Reassembler(
        max_pending_bytes=cap, timeout=5, max_pending_messages=2, max_remembered=4, clock=clock
    )
    originals = set(messages)
    for sender, packet in stream:
        clock.now += data.draw(WAITS, label="wait")
        result = r.feed(sender, packet)
        if isinstance(result, Raw):
            assert result.payload == packet
            assert not needs_framing(packet)
        elif isinstance(result, Complete):
            assert (result.sender, result.payload) in originals  # never a wrong payload
        elif isinstance(result, Dropped):
            assert isinstance(result.reason, DropReason)
            assert result.bytes_dropped >= 0
        else:
            assert isinstance(result, Stored)
            assert 0 < result.received < result.count
        check_budget(r, cap, 2, 4)
    r.expire(clock.now + 5)
    assert (r.stats.pending_messages, r.stats.reserved_bytes) == (0, 0)


@st.composite
def crafted_chunks(draw: st.DrawFn) -> bytes:
    """A packet that passes the recognition test, with arbitrary header fields."""
    version = draw(st.sampled_from([1, 1, 1, 0, 2, 255]))
    padding = draw(st.sampled_from([b"", b"", b"", b"\x00" * draw(st.integers(1, 200))]))
    fields = [draw(u32s) for _ in range(5)]
    message_id = draw(st.binary(min_size=8, max_size=8))
    prefix = HEADER.pack(MAGIC, version, HEADER_BYTES + len(padding), message_id, *fields)
    prefix += padding
    return prefix + U32.pack(zlib.crc32(prefix)) + draw(st.binary(max_size=200))


@FUZZ
@given(
    packets=st.lists(
        st.tuples(
            senders,
            st.binary(max_size=300)
            | st.binary(max_size=100).map(MAGIC.__add__)
            | crafted_chunks()
            | huge_chunks(),
        ),
        max_size=20,
    ),
    cap=st.integers(1, 4096),
)
def test_reassembler_takes_arbitrary_packets(
    packets: list[tuple[str | None, bytes]], cap: int
) -> None:
    clock = FakeClock()
    r = Reassembler(
        max_pending_bytes=cap, timeout=5, max_pending_messages=3, max_remembered=4, clock=clock
    )
    for sender, packet in packets:
        result = r.feed(sender, packet)
        assert isinstance(result, Raw) == (not needs_framing(packet))
        assert isinstance(result, (Raw, Complete, Stored, Dropped))
        check_budget(r, cap, 3, 4)
        clock.now += 1
    assert all(d.reason is DropReason.TIMEOUT for d in r.expire(clock.now + 5))
    assert r.stats.reserved_bytes == 0


@st.composite
def messages_to_send(draw: st.DrawFn) -> tuple[bytes, int]:
    """A payload and a packet size: one packet, a few chunks or many, or a payload that
    looks like a chunk (it must be framed to arrive unchanged)."""
    max_packet = draw(st.integers(HEADER_BYTES + 1, 400))
    payload = draw(sized_binary(max_packet * 8))
    if draw(st.integers(0, 9)) == 0:  # a chunk packet forwarded as a payload
        payload = encode_message(payload + b"!" * max_packet, max_packet_bytes=max_packet)[0]
    return payload, max_packet


@FUZZ
@given(
    message=messages_to_send(),
    as_type=st.sampled_from([bytes, bytearray, memoryview]),
    message_id=st.binary(min_size=MESSAGE_ID_BYTES, max_size=MESSAGE_ID_BYTES),
    data=st.data(),
)
def test_encode_then_reassemble_is_the_identity(
    message: tuple[bytes, int],
    as_type: Callable[[bytes], bytes | bytearray | memoryview],
    message_id: bytes,
    data: st.DataObject,
) -> None:
    payload, max_packet = message
    packets = encode_message(as_type(payload), message_id=message_id, max_packet_bytes=max_packet)
    assert all(type(p) is bytes and len(p) <= max_packet for p in packets)
    order = data.draw(st.permutations(packets), label="order")
    repeats = data.draw(st.lists(st.sampled_from(packets), max_size=3), label="repeats")
    r = Reassembler()
    results = [r.feed("alice", p) for p in order]
    late = [r.feed("alice", p) for p in repeats]
    if len(packets) == 1 and not needs_framing(packets[0]):
        assert results == [Raw("alice", payload)]
        return
    assert all(isinstance(x, Stored) for x in results[:-1])
    assert results[-1] == Complete("alice", message_id, payload)
    assert all(isinstance(x, Dropped) and x.reason is DropReason.DUPLICATE for x in late)


@FUZZ
@given(
    payload=st.binary(max_size=64),
    max_packet=st.integers(-(2**40), 2**40) | st.integers(0, 100),
    message_id=st.none() | st.binary(max_size=12),
)
def test_encode_rejects_bad_arguments_with_typed_errors(
    payload: bytes, max_packet: int, message_id: bytes | None
) -> None:
    try:
        packets = encode_message(payload, message_id=message_id, max_packet_bytes=max_packet)
    except ConfigurationError:
        assert not HEADER_BYTES < max_packet <= _chunking.MAX_PACKET_BYTES or (
            message_id is not None and len(message_id) != MESSAGE_ID_BYTES
        )
        return
    r = Reassembler()
    outcome = [r.feed(None, p) for p in packets][-1]
    assert isinstance(outcome, (Raw, Complete))
    assert outcome.payload == payload


def peak_bytes(run: Callable[[], object]) -> int:
    """The most memory Python allocated while `run` ran, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_chunk_declaring_4_gib_allocates_nothing() -> None:
    prefix = HEADER.pack(MAGIC, 1, HEADER_BYTES, b"A" * 8, 0, U32_MAX, U32_MAX, 1, 0)
    packet = prefix + U32.pack(zlib.crc32(prefix)) + b"x"
    r = Reassembler()  # the default budget: 64 MiB
    results: list[object] = []
    assert peak_bytes(lambda: results.append(r.feed("alice", packet))) < 64 * 1024
    assert isinstance(results[0], Dropped)
    assert results[0].reason is DropReason.TOO_LARGE


def test_a_flood_of_large_first_chunks_stays_within_the_budget() -> None:
    cap = 1024 * 1024
    body = _chunking.MAX_CHUNK_BODY_BYTES
    count = -(-cap // body)
    r = Reassembler(max_pending_bytes=cap)
    firsts = []
    for i in range(200):
        prefix = HEADER.pack(MAGIC, 1, HEADER_BYTES, i.to_bytes(8, "big"), 0, count, cap, body, 0)
        firsts.append(prefix + U32.pack(zlib.crc32(prefix)) + bytes(body))
    results: list[object] = []

    def feed_all() -> None:
        results.extend(r.feed("mallory", p) for p in firsts)

    # One message fits the budget (its whole length is reserved at once); the other
    # 199 are refused before anything is allocated for them.
    assert peak_bytes(feed_all) < cap + 128 * 1024  # the ids of refused messages, kept
    reasons = [x.reason for x in results if isinstance(x, Dropped)]
    assert reasons == [DropReason.OVER_BUDGET] * 199
    assert r.stats.reserved_bytes == cap


# -- reassembly in the data channel: PacketReceiver ------------------------------------


def sdk_remote(identity: str) -> rtc.RemoteParticipant:
    owned = participant_pb2.OwnedParticipant()
    owned.info.identity = identity
    owned.info.sid = f"PA_{identity}"
    return rtc.RemoteParticipant(owned)


VIEWS = {identity: RemoteParticipant(sdk_remote(identity)) for identity in ("alice", "bob")}


def packet_event(sender: str | None, payload: bytes, topic: str) -> DataReceived:
    return DataReceived(
        payload=payload,
        topic=topic,
        participant=VIEWS[sender] if sender is not None else None,
        reliability=DataReliability.RELIABLE,
        received_at=time.time(),
    )


class Receiver:
    """A `PacketReceiver` on a fake clock, and what it delivered and reported."""

    def __init__(self, cap: int, messages: int = 3) -> None:
        self.clock = FakeClock()
        self.delivered: list[DataMessage] = []
        self.reported: list[DataDropped] = []
        options = DataOptions(
            max_pending_bytes=cap, incomplete_timeout=5.0, max_pending_messages=messages
        )
        self.receiver = PacketReceiver(options, self.delivered.append, self.reported.append)
        self.receiver._reassembler._clock = self.clock

    def assert_nothing_held(self) -> None:
        self.clock.now += 3600
        self.receiver.expire()
        assert not self.receiver.pending
        assert self.receiver.pending_messages == self.receiver.pending_bytes == 0
        assert not self.receiver._pending_topics
        assert not self.receiver._late_senders


topics = st.text(max_size=8)


@FUZZ
@given(case=codec_streams(), data=st.data())
def test_packet_receiver_survives_mutated_streams(
    case: tuple[Stream, Stream], data: st.DataObject
) -> None:
    messages, stream = case
    cap = data.draw(BUDGETS, label="max_pending_bytes")
    r = Receiver(cap)
    payloads = {payload for _, payload in messages}
    for sender, packet in stream:
        # Some packets arrive without the sender's identity (not announced yet).
        anonymous = data.draw(st.sampled_from([False] * 4 + [True]), label="anonymous")
        event = packet_event(None if anonymous else sender, packet, data.draw(topics))
        r.clock.now += data.draw(WAITS, label="wait")
        before = len(r.delivered)
        r.receiver.on_packet(event)
        for message in r.delivered[before:]:
            if message.kind is DataKind.PACKET:
                assert (message.payload, message.sender) == (packet, event.sender_identity)
            else:
                assert message.kind is DataKind.CHUNKED
                assert message.payload in payloads
        assert r.receiver.pending_bytes <= cap
    assert all(isinstance(d.reason, DataDropReason) and d.bytes_dropped >= 0 for d in r.reported)
    r.assert_nothing_held()


@FUZZ
@given(
    messages=st.lists(
        st.tuples(st.sampled_from(["alice", "bob"]), topics, sized_binary(300)),
        min_size=1,
        max_size=4,
    ),
    data=st.data(),
)
def test_packet_receiver_round_trip_with_topics_and_late_senders(
    messages: list[tuple[str, str, bytes]], data: st.DataObject
) -> None:
    ids = data.draw(
        st.lists(
            st.binary(min_size=8, max_size=8), min_size=len(messages), max_size=len(messages),
            unique=True,
        ),
        label="message ids",
    )  # fmt: skip
    queues: list[list[DataReceived]] = []
    expected: list[tuple[bytes, str, str | None]] = []
    for (sender, topic, payload), message_id in zip(messages, ids, strict=True):
        packets = encode_message(payload, message_id=message_id, max_packet_bytes=HEADER_BYTES + 40)
        packets = data.draw(st.permutations(packets), label="order")
        # The first chunks may come before the SDK knows the sender: without identity.
        anonymous = data.draw(st.integers(0, len(packets)), label="anonymous")
        queues.append(
            [
                packet_event(None if i < anonymous else sender, packet, topic)
                for i, packet in enumerate(packets)
            ]
        )
        expected.append((payload, topic, None if anonymous == len(packets) else sender))
    r = Receiver(cap=64 * 1024, messages=len(messages))
    while any(queues):  # interleave the messages, each in its own order
        queue = data.draw(st.sampled_from([q for q in queues if q]), label="next")
        r.receiver.on_packet(queue.pop(0))
    assert r.reported == []
    got = [(m.payload, m.topic, m.sender) for m in r.delivered]
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    r.assert_nothing_held()


# -- reassembly of native data streams ---------------------------------------------------


class FakeStreamReader:
    """What the SDK hands over for a native stream: `info`, chunks, `close()`."""

    def __init__(
        self,
        info: rtc.TextStreamInfo | rtc.ByteStreamInfo,
        chunks: list[str] | list[bytes],
        end: str,
        on_chunk: Callable[[], None],
    ) -> None:
        self.info = info
        self.chunks = chunks
        self.end = end
        self.on_chunk = on_chunk
        self.closed = False

    def __aiter__(self) -> typing.AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> typing.AsyncIterator[str | bytes]:
        for chunk in self.chunks:
            self.on_chunk()
            yield chunk
        if self.end == "abort":
            raise SdkStreamError("the sender aborted the stream")
        if self.end == "stall":
            await asyncio.sleep(3600)

    def close(self) -> None:
        self.closed = True


class StubCore:
    """The part of `SessionCore` the stream receiver uses."""

    room_or_none = None

    def __init__(self) -> None:
        self.spawned: list[typing.Coroutine[Any, Any, None]] = []

    def on_bind(self, callback: Callable[[rtc.Room], None]) -> None:
        pass

    def spawn(self, coroutine: typing.Coroutine[Any, Any, None], *, name: str) -> None:
        self.spawned.append(coroutine)


def stream_outcome(
    chunks: list[str] | list[bytes], size: int | None, end: str, whole: bool, readers: int, cap: int
) -> tuple[DataDropReason | None, int, bool]:
    """What `NativeStreamReceiver` must make of a stream: the drop reason (`None`: read
    to its end), how many chunks the incremental readers got, and whether their buffers
    (of `cap`, `OverflowPolicy.FAIL`) overflowed."""
    if whole and (size or 0) > cap:
        return DataDropReason.TOO_LARGE, 0, False
    held = buffered = pushed = 0
    overflowed = False
    for chunk in chunks:
        if not overflowed and buffered and buffered + len(chunk) > cap:
            overflowed = True
        if not overflowed:
            buffered += len(chunk)
            pushed += 1
        if not whole:
            if readers and overflowed:
                return DataDropReason.SUBSCRIBER_FULL, pushed, overflowed
            continue
        held += len(chunk.encode() if isinstance(chunk, str) else chunk)
        if held > cap:
            return DataDropReason.TOO_LARGE, pushed, overflowed
    reasons = {"ok": None, "abort": DataDropReason.STREAM_FAILED, "stall": DataDropReason.TIMEOUT}
    return reasons[end], pushed, overflowed


@st.composite
def native_streams(draw: st.DrawFn) -> tuple[bool, list[str] | list[bytes], int | None]:
    text = draw(st.booleans())
    chunks: list[str] | list[bytes]
    if text:
        chunks = draw(st.lists(st.text(min_size=1, max_size=40)))
    else:
        chunks = draw(st.lists(st.binary(min_size=1, max_size=60)))
    size = draw(st.none() | st.integers(0, 2**63 - 1) | st.integers(0, 300))
    return text, chunks, size


@FUZZ
@given(
    stream=native_streams(),
    end=st.sampled_from(["ok", "ok", "abort", "stall"]),
    whole=st.booleans(),
    offers=st.lists(st.booleans(), max_size=2),
    cap=st.integers(1, 400),
    attributes=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)
def test_native_streams_are_read_whole_or_dropped_with_a_reason(
    stream: tuple[bool, list[str] | list[bytes], int | None],
    end: str,
    whole: bool,
    offers: list[bool],
    cap: int,
    attributes: dict[str, str],
) -> None:
    text, chunks, size = stream
    options = DataOptions(max_pending_bytes=cap, incomplete_timeout=0.01)
    core = StubCore()
    reports: list[DataDropped] = []
    slots: list[StreamSlot] = []
    unrouted: list[None] = []
    readers: list[IncomingStream[Any]] = []

    def opened(identity: str) -> StreamSlot:
        slots.append(StreamSlot(lambda: None))
        return slots[-1]

    def offer(accept: bool) -> Callable[[IncomingStream[Any]], bool]:
        def take(incoming: IncomingStream[Any]) -> bool:
            if accept:
                readers.append(incoming)
            return accept

        return take

    receiver = NativeStreamReceiver(
        cast(Any, core),
        lambda: options,
        opened,
        reports.append,
        wants=lambda topic: whole,
        stream_readers=lambda topic: [],
        unrouted=lambda: unrouted.append(None),
    )
    info: rtc.TextStreamInfo | rtc.ByteStreamInfo
    if text:
        info = rtc.TextStreamInfo("ST_1", "text/plain", "t", 0, size, attributes, [])
    else:
        info = rtc.ByteStreamInfo("ST_1", "application/octet-stream", "t", 0, size, attributes, "f")

    def bounded() -> None:
        assert receiver.pending_bytes <= cap  # never more held than the budget

    reader = FakeStreamReader(info, chunks, end, bounded)
    kind = DataKind.TEXT_STREAM if text else DataKind.BYTE_STREAM
    receiver._start(
        cast(Any, reader), "alice", kind=kind, whole=whole, offers=[offer(a) for a in offers]
    )
    if not whole and not readers:  # nobody wanted it: left unread
        assert (core.spawned, unrouted, reader.closed) == ([], [None], True)
        return
    reason, pushed, overflowed = stream_outcome(chunks, size, end, whole, len(readers), cap)
    read: list[tuple[list[Any], type[BaseException] | None]] = []

    async def run() -> None:
        (task,) = core.spawned
        with anyio.fail_after(10):  # never hangs: a stalled stream times out
            await task
        for incoming in readers:
            got: list[Any] = []
            try:
                async for chunk in incoming.chunks():
                    got.append(chunk)
            except (StreamError, SubscriptionOverflow) as exc:
                read.append((got, type(exc)))
            else:
                read.append((got, None))

    asyncio.run(run())
    assert reader.closed
    assert receiver.pending_bytes == receiver.pending_messages == 0
    assert [d.reason for d in reports] == ([] if reason is None else [reason])
    if whole:
        (slot,) = slots
        assert slot.done
        if reason is None:
            encoded = [c.encode() if isinstance(c, str) else c for c in chunks]
            assert slot.message is not None
            assert (slot.message.payload, slot.message.kind) == (b"".join(encoded), kind)
            assert dict(slot.message.attributes) == attributes
        else:
            assert slot.message is None
    error = SubscriptionOverflow if overflowed else None if reason is None else StreamError
    assert read == [(chunks[:pushed], error)] * len(readers)


# -- event conversion --------------------------------------------------------------------

texts = st.text(max_size=12)
int32s = st.integers(-(2**31), 2**31 - 1)


def enum_ints(values: Any) -> st.SearchStrategy[int]:
    """What the SDK passes for an enum: a known value, or one this lkkit does not know
    (from a newer server or SDK)."""
    members = sorted(v for _, v in values.items()) if hasattr(values, "items") else list(values)
    return st.sampled_from(members) | int32s


def known(values: Any) -> st.SearchStrategy[Any]:
    """The values a (closed, proto2) enum field of the SDK's own protos accepts."""
    return st.sampled_from(sorted(v for _, v in values.items()))


@st.composite
def participant_infos(draw: st.DrawFn) -> participant_pb2.ParticipantInfo:
    """A participant as the SDK's native layer describes it (its identity set later)."""
    info = participant_pb2.ParticipantInfo(sid=draw(texts), name=draw(texts))
    info.metadata = draw(texts)
    info.attributes.update(draw(st.dictionaries(texts, texts, max_size=2)))
    info.state = draw(known(participant_pb2.ParticipantState))
    info.kind = draw(known(participant_pb2.ParticipantKind))
    info.disconnect_reason = draw(known(participant_pb2.DisconnectReason))
    info.joined_at = draw(st.integers(0, 253_402_300_799_000))  # ms, up to the year 9999
    info.kind_details.extend(
        draw(st.lists(known(participant_pb2.ParticipantKindDetail), max_size=2))
    )
    permission = info.permission
    flags = draw(st.integers(0, 31))  # five booleans in one draw
    names = ("can_subscribe", "can_publish", "can_publish_data", "hidden", "can_update_metadata")
    for bit, name in enumerate(names):
        setattr(permission, name, bool(flags >> bit & 1))
    permission.can_publish_sources.extend(draw(st.lists(known(track_pb2.TrackSource), max_size=3)))
    info.client_protocol = draw(int32s)
    return info


def with_identity(info: participant_pb2.ParticipantInfo, identity: str) -> Any:
    copy = participant_pb2.ParticipantInfo()
    copy.CopyFrom(info)
    copy.identity = identity
    return copy


@st.composite
def publication_infos(draw: st.DrawFn) -> track_pb2.TrackPublicationInfo:
    info = track_pb2.TrackPublicationInfo(sid=draw(texts), name=draw(texts), mime_type=draw(texts))
    info.kind = draw(known(track_pb2.TrackKind))
    info.source = draw(known(track_pb2.TrackSource))
    info.simulcasted, info.muted, info.remote = draw(st.booleans()), draw(st.booleans()), True
    info.width, info.height = draw(st.integers(0, U32_MAX)), draw(st.integers(0, U32_MAX))
    return info


class FakeRemote(rtc.RemoteParticipant):
    """An SDK participant built from a random `ParticipantInfo`, with publications."""

    def __init__(self, info: participant_pb2.ParticipantInfo, publications: list[Any]) -> None:
        super().__init__(participant_pb2.OwnedParticipant(info=info))
        self._fake_publications = {p.sid: p for p in publications}

    @property
    def track_publications(self) -> Mapping[str, rtc.RemoteTrackPublication]:
        return self._fake_publications


class FakeLocal(rtc.LocalParticipant):
    def __init__(self, info: participant_pb2.ParticipantInfo, publications: list[Any]) -> None:
        super().__init__(cast(Any, None), participant_pb2.OwnedParticipant(info=info))
        self._fake_publications = {p.sid: p for p in publications}

    @property
    def track_publications(self) -> Mapping[str, rtc.LocalTrackPublication]:
        return self._fake_publications


class FakeRoom:
    """The parts of `rtc.Room` that event conversion and the event bus read."""

    def __init__(
        self, local: rtc.LocalParticipant, remotes: Sequence[rtc.RemoteParticipant]
    ) -> None:
        self.local_participant = local
        self.remote_participants = {p.identity: p for p in remotes}
        self.name = self.metadata = self._token = ""
        self.num_participants = self.num_publishers = 0
        self.is_recording = False
        self.callbacks: dict[str, Callable[..., None]] = {}

    def on(self, name: str, callback: Callable[..., None]) -> None:
        self.callbacks[name] = callback

    def off(self, name: str, callback: Callable[..., None]) -> None:
        self.callbacks.pop(name, None)

    def _on_room_event(self, event: room_pb2.RoomEvent) -> None:
        pass

    def _retrieve_participant(self, identity: str) -> rtc.Participant | None:
        if identity == self.local_participant.identity:
            return self.local_participant
        return self.remote_participants.get(identity)


@dataclasses.dataclass
class Scene:
    """Protos for a room's participants and their publications, and SDK events."""

    local: participant_pb2.ParticipantInfo
    local_publications: list[track_pb2.TrackPublicationInfo]
    remotes: list[tuple[participant_pb2.ParticipantInfo, list[track_pb2.TrackPublicationInfo]]]
    room: tuple[str, str, int, int, bool, str]
    events: list[tuple[str, tuple[Any, ...]]]


# Markers for SDK objects in event arguments, resolved once the objects exist (inside
# the event loop). An index picks modulo what there is.
@dataclasses.dataclass(frozen=True)
class Ref:
    kind: str  # "remote", "participant" (the local one or a remote one), "publication"
    index: int


_remote = st.integers(0, 7).map(lambda i: Ref("remote", i))
_anyone = st.integers(0, 7).map(lambda i: Ref("participant", i))
_maybe = st.none() | _anyone
_publication = st.integers(0, 7).map(lambda i: Ref("publication", i))
_local_publication = st.integers(0, 7).map(lambda i: Ref("local_publication", i))
_segments = st.builds(
    rtc.TranscriptionSegment,
    id=texts, text=texts, start_time=st.integers(0, 2**64 - 1),
    end_time=st.integers(0, 2**64 - 1), language=texts, final=st.booleans(),
)  # fmt: skip
# The positional arguments of each SDK event, as `rtc.Room` emits them.
SDK_EVENT_ARGS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "participant_connected": st.tuples(_remote),
    "participant_disconnected": st.tuples(_remote),
    "participant_active": st.tuples(_remote),
    "reconnecting": st.just(()),
    "reconnected": st.just(()),
    "disconnected": st.tuples(enum_ints(rtc.DisconnectReason)),
    "connection_state_changed": st.tuples(enum_ints(rtc.ConnectionState)),
    "track_published": st.tuples(_publication, _remote),
    "track_unpublished": st.tuples(_publication, _remote),
    "track_subscribed": st.tuples(st.none(), _publication, _remote),
    "track_unsubscribed": st.tuples(st.none(), _publication, _remote),
    "track_subscription_failed": st.tuples(_remote, texts, texts),
    "track_muted": st.tuples(_anyone, _publication),
    "track_unmuted": st.tuples(_anyone, _publication),
    "local_track_published": st.tuples(_local_publication, st.none()),
    "local_track_unpublished": st.tuples(_local_publication),
    "local_track_republished": st.tuples(_local_publication, texts),
    # The publication's track, which the SDK types as optional; or a stray one.
    "local_track_subscribed": st.tuples(
        st.none() | _local_publication | texts.map(lambda sid: SimpleNamespace(sid=sid))
    ),
    "active_speakers_changed": st.tuples(st.lists(_anyone, max_size=4)),
    "connection_quality_changed": st.tuples(_maybe, enum_ints(rtc.ConnectionQuality)),
    "participant_metadata_changed": st.tuples(_maybe, texts, texts),
    "participant_name_changed": st.tuples(_maybe, texts, texts),
    "participant_attributes_changed": st.tuples(st.dictionaries(texts, texts, max_size=3), _anyone),
    "participant_encryption_status_changed": st.tuples(_maybe, st.booleans()),
    "participant_permissions_changed": st.tuples(_maybe, st.none()),
    "e2ee_state_changed": st.tuples(_maybe, enum_ints(rtc.EncryptionState)),
    "room_metadata_changed": st.tuples(texts, texts),
    "room_updated": st.just(()),
    "moved": st.just(()),
    "token_refreshed": st.just(()),
    "data_received": st.tuples(
        st.tuples(
            st.binary(max_size=32),
            enum_ints(rtc.DataPacketKind),
            st.none() | _remote,
            st.none() | texts,
        )
    ),
    "sip_dtmf_received": st.tuples(st.tuples(st.integers(0, U32_MAX), texts, st.none() | _remote)),
    "transcription_received": st.tuples(
        st.lists(_segments, max_size=3), _maybe, st.none() | _publication
    ),
    "data_track_published": st.tuples(st.tuples(texts, texts, st.booleans(), texts)),
    "data_track_unpublished": st.tuples(texts),
}
_sdk_events = st.sampled_from(sorted(SDK_EVENT_ARGS)).flatmap(
    lambda name: st.tuples(st.just(name), SDK_EVENT_ARGS[name])
)


def test_every_sdk_event_has_a_fuzz_strategy() -> None:
    assert set(SDK_EVENT_ARGS) == set(SDK_EVENT_CONVERTERS)


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    identities = draw(
        st.lists(st.text(min_size=1, max_size=4), min_size=2, max_size=3, unique=True)
    )
    infos = [with_identity(draw(participant_infos()), i) for i in identities]
    publications = [draw(st.lists(publication_infos(), max_size=2)) for _ in identities]
    room = (draw(texts), draw(texts), draw(int32s), draw(int32s), draw(st.booleans()), draw(texts))
    events = draw(st.lists(_sdk_events, max_size=6))
    return Scene(
        infos[0], publications[0], list(zip(infos[1:], publications[1:], strict=True)), room, events
    )


def build_room(scene: Scene) -> FakeRoom:
    local_pubs = [
        rtc.LocalTrackPublication(track_pb2.OwnedTrackPublication(info=i))
        for i in scene.local_publications
    ]
    remotes = [
        FakeRemote(
            info,
            [rtc.RemoteTrackPublication(track_pb2.OwnedTrackPublication(info=i)) for i in pubs],
        )
        for info, pubs in scene.remotes
    ]
    room = FakeRoom(FakeLocal(scene.local, local_pubs), remotes)
    (room.name, room.metadata, room.num_participants, room.num_publishers, room.is_recording,
     room._token) = scene.room  # fmt: skip
    return room


def sdk_args(room: FakeRoom, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """`args` with each marker replaced by the SDK object the SDK would pass."""
    remotes = list(room.remote_participants.values())
    local = room.local_participant

    def resolve(value: Any) -> Any:
        if isinstance(value, Ref):
            if value.kind == "remote":
                return remotes[value.index % len(remotes)]
            if value.kind == "participant":
                everyone = [local, *remotes]
                return everyone[value.index % len(everyone)]
            owners = [local] if value.kind == "local_publication" else [local, *remotes]
            pool = [p for owner in owners for p in owner.track_publications.values()]
            if not pool:  # a fresh publication nobody lists
                info = track_pb2.TrackPublicationInfo(sid=f"TR_{value.index}")
                return rtc.RemoteTrackPublication(track_pb2.OwnedTrackPublication(info=info))
            return pool[value.index % len(pool)]
        if isinstance(value, (list, tuple)):
            return type(value)(resolve(v) for v in value)
        return value

    resolved = tuple(resolve(a) for a in args)
    if name == "data_received":
        data, kind, participant, topic = resolved[0]
        return (rtc.DataPacket(data=data, kind=kind, participant=participant, topic=topic),)
    if name == "sip_dtmf_received":
        code, digit, participant = resolved[0]
        return (rtc.SipDTMF(code=code, digit=digit, participant=participant),)
    if name == "data_track_published":
        sid, track_name, e2ee, publisher = resolved[0]
        owned = data_track_pb2.OwnedRemoteDataTrack(publisher_identity=publisher)
        owned.info.sid, owned.info.name, owned.info.uses_e2ee = sid, track_name, e2ee
        return (rtc.RemoteDataTrack(owned),)
    if name == "local_track_subscribed" and isinstance(resolved[0], rtc.LocalTrackPublication):
        return (SimpleNamespace(sid=resolved[0].sid),)  # its track, which has its sid
    if name == "participant_permissions_changed" and resolved[0] is not None:
        return (resolved[0], resolved[0].permissions)
    return resolved


def conforms(value: object, hint: Any) -> bool:
    """Whether `value` is of the declared type `hint`, exactly: a raw SDK enum value
    where an lkkit enum (or a plain int) belongs does not conform."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        (item, _) = typing.get_args(hint)
        return isinstance(value, tuple) and all(conforms(v, item) for v in value)
    if origin is Mapping:
        key, item = typing.get_args(hint)
        return isinstance(value, Mapping) and all(
            conforms(k, key) and conforms(v, item) for k, v in value.items()
        )
    if hint in (int, str, bool, bytes):
        return type(value) is hint
    if hint is float:
        return type(value) in (int, float)
    return isinstance(value, hint)


# The types of the views' properties (read through to the SDK object).
PARTICIPANT_HINTS: dict[str, Any] = {
    "sid": str, "identity": str, "name": str, "metadata": str, "kind": ParticipantKind,
    "connection_quality": ConnectionQuality, "attributes": Mapping[str, str],
    "joined_at": datetime.datetime | None, "is_local": bool,
}  # fmt: skip
PUBLICATION_HINTS: dict[str, Any] = {
    "sid": str, "name": str, "kind": TrackKind, "source": TrackSource, "muted": bool,
    "mime_type": str, "simulcasted": bool, "is_local": bool, "subscribed": bool,
    "stream_state": StreamState, "dimensions": tuple[int, ...] | None,
}  # fmt: skip


def check_typed(value: object) -> None:
    """A dataclass of lkkit's, or a view, holds only values of its declared types."""
    assert not isinstance(value, Message), f"a protobuf message in lkkit's API: {value!r}"
    if isinstance(value, Participant):
        for name, hint in PARTICIPANT_HINTS.items():
            assert conforms(getattr(value, name), hint), name
        check_typed(value.permissions)
        for publication in value.track_publications.values():
            check_typed(publication)
    elif isinstance(value, TrackPublication):
        for name, hint in PUBLICATION_HINTS.items():
            assert conforms(getattr(value, name), hint), name
    elif isinstance(value, enum.Enum):
        assert type(value).__module__.startswith("lkkit."), f"an SDK enum: {value!r}"
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = typing.get_type_hints(type(value))
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            assert conforms(item, hints[field.name]), (type(value).__name__, field.name, item)
            if isinstance(item, tuple):
                for element in item:
                    check_typed(element)
            elif not isinstance(item, rtc.RemoteDataTrack):
                check_typed(item)


def test_conforms_tells_sdk_values_from_lkkit_values() -> None:
    assert conforms(1, int)
    assert not conforms(rtc.ConnectionQuality.QUALITY_GOOD, int)
    assert not conforms(True, int)
    assert conforms(None, str | None)
    assert not conforms(("a", 1), tuple[str, ...])
    assert conforms(MappingProxyType({"a": "b"}), Mapping[str, str])


def test_a_local_track_subscribed_without_its_track_is_skipped() -> None:
    # Found by fuzzing: the SDK passes `publication.track`, which it types as optional;
    # the converter raised AttributeError on None (the bus logged it, the event was lost).
    room = FakeRoom(FakeLocal(participant_pb2.ParticipantInfo(identity="me"), []), [])
    assert SDK_EVENT_CONVERTERS["local_track_subscribed"](cast(rtc.Room, room), (None,)) is None


@st.composite
def raw_room_events(draw: st.DrawFn, identities: list[str]) -> room_pb2.RoomEvent:
    """What the SDK's native layer reports before the SDK applies it: participant
    updates of known and unknown identities, or any message that parses."""
    event = room_pb2.RoomEvent()
    if draw(st.booleans()):
        for _ in range(draw(st.integers(0, 2))):
            identity = draw(st.sampled_from(identities) | st.text(max_size=4))
            info = with_identity(draw(participant_infos()), identity)
            event.participants_updated.participants.append(info)
        return event
    with contextlib.suppress(Exception):
        event.ParseFromString(draw(st.binary(max_size=64)))
    return event


@FUZZ
@given(scene=scenes(), data=st.data())
def test_sdk_events_become_well_typed_events_in_order(scene: Scene, data: st.DataObject) -> None:
    identities = [scene.local.identity, *(info.identity for info, _ in scene.remotes)]
    raw = data.draw(
        st.lists(st.tuples(st.integers(0, 7), raw_room_events(identities)), max_size=3),
        label="raw room events",
    )

    async def run() -> None:
        room = build_room(scene)
        bus = EventBus()
        bus.bind(cast(rtc.Room, room))
        published: list[Event] = []
        bus.add_listener(published.append)
        speaking: set[str] = set()
        ended = False
        for position, (name, args) in enumerate(scene.events):
            for _, before in (r for r in raw if r[0] == position):
                room._on_room_event(before)  # the bus notes the values it overwrites
            sdk = sdk_args(room, name, args)
            event = SDK_EVENT_CONVERTERS[name](cast(rtc.Room, room), sdk)
            if event is not None:  # None: a participant (or track) the SDK does not know
                assert type(event) in EVENT_TYPES
                check_typed(event)
            count = len(published)
            bus._on_sdk_event(name, sdk)  # nothing may escape the SDK's callback
            new = published[count:]
            assert not (ended and new), "an event after Disconnected"
            for event in new:
                check_typed(event)
                ended = ended or isinstance(event, Disconnected)
            if new and isinstance(new[0], ActiveSpeakersChanged):
                now = {p.identity for p in new[0].speakers}
                derived = [e for e in new[1:] if isinstance(e, IsSpeakingChanged)]
                assert len(derived) == len(new) - 1
                changes = {(e.participant.identity, e.speaking) for e in derived}
                assert changes == {(i, False) for i in speaking - now} | {
                    (i, True) for i in now - speaking
                }
                speaking = now
        assert bus.listener_errors == 0
        bus.close()

    asyncio.run(run())


# -- the agent protocol ------------------------------------------------------------------

job_types: st.SearchStrategy[Any] = st.sampled_from(sorted(proto_agent.JobType.values())) | int32s


@st.composite
def jobs(draw: st.DrawFn) -> proto_agent.Job:
    job = proto_agent.Job(id=draw(texts), dispatch_id=draw(texts), type=draw(job_types))
    job.agent_name, job.metadata, job.namespace = draw(texts), draw(texts), draw(texts)
    job.room.name, job.room.sid = draw(texts), draw(texts)
    if draw(st.booleans()):
        job.participant.identity = draw(texts)
    job.attributes.update(draw(st.dictionaries(texts, texts, max_size=2)))
    return job


@st.composite
def server_messages(draw: st.DrawFn) -> proto_agent.ServerMessage:
    message = proto_agent.ServerMessage()
    which = draw(st.sampled_from(["register", "availability", "assignment", "termination",
                                  "pong"]))  # fmt: skip
    if which == "register":
        message.register.worker_id = draw(texts)
        message.register.server_info.version = draw(texts)
    elif which == "availability":
        message.availability.job.CopyFrom(draw(jobs()))
        message.availability.resuming = draw(st.booleans())
    elif which == "assignment":
        message.assignment.job.CopyFrom(draw(jobs()))
        message.assignment.url, message.assignment.token = draw(texts), draw(texts)
    elif which == "termination":
        message.termination.job_id = draw(texts)
    else:
        int64s = st.integers(-(2**63), 2**63 - 1)
        message.pong.last_timestamp, message.pong.timestamp = draw(int64s), draw(int64s)
    return message


def check_server_message(message: proto_agent.ServerMessage) -> None:
    """A decoded message is what the worker can act on: one of the known messages, and
    its job (if any) converts to a well-typed `Job`."""
    which = message.WhichOneof("message")
    assert which is not None
    if which in ("availability", "assignment"):
        job = Job._from_proto(getattr(message, which).job)
        assert isinstance(job.type, JobType)
        check_typed(job)


@FUZZ
@given(message=server_messages())
def test_server_messages_decode_to_themselves(message: proto_agent.ServerMessage) -> None:
    decoded = wire.decode_server_message(message.SerializeToString())
    assert decoded == message
    check_server_message(decoded)


@FUZZ
@given(message=server_messages(), data=st.data())
def test_damaged_server_messages_decode_or_raise_protocol_error(
    message: proto_agent.ServerMessage, data: st.DataObject
) -> None:
    frame = message.SerializeToString()
    others = [data.draw(server_messages(), label="other").SerializeToString()]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        frame = mutate_bytes(data, frame, others)
    try:
        decoded = wire.decode_server_message(frame)
    except ProtocolError:
        return
    check_server_message(decoded)


def mutate_bytes(data: st.DataObject, frame: bytes, others: list[bytes]) -> bytes:
    """A protobuf-aware mutation: damaged bytes, a varint made huge, a length that lies,
    a field spliced from another message, or a message nested deep."""
    how = data.draw(st.sampled_from(["flip", "truncate", "insert", "splice", "length",
                                     "varint", "nest"]), label="how")  # fmt: skip
    at = data.draw(st.integers(0, len(frame)), label="at")
    if how == "flip" and frame:
        at = min(at, len(frame) - 1)
        return frame[:at] + bytes([frame[at] ^ data.draw(st.integers(1, 255))]) + frame[at + 1 :]
    if how == "truncate":
        return frame[:at]
    if how == "splice":
        return frame[:at] + data.draw(st.sampled_from(others))
    if how == "length":  # a length-delimited field (availability) declaring up to 2 GiB
        length = data.draw(st.integers(0, 2**31) | st.integers(0, 64))
        return frame[:at] + b"\x12" + varint(length) + frame[at:]
    if how == "varint":  # an overlong or 10-byte varint
        return frame[:at] + b"\x08" + b"\xff" * data.draw(st.integers(1, 12)) + b"\x01" + frame[at:]
    if how == "nest":  # a job's participant nested in itself, deeper than any parser goes
        depth = data.draw(st.integers(1, 200))
        nested = frame
        for _ in range(depth):
            nested = b"\x12" + varint(len(nested)) + nested
        return nested
    return frame[:at] + data.draw(st.binary(min_size=1, max_size=16)) + frame[at:]


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@FUZZ
@given(frame=st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_protocol_error(frame: bytes) -> None:
    try:
        decoded = wire.decode_server_message(frame)
    except ProtocolError:
        return
    check_server_message(decoded)


def test_a_frame_declaring_2_gib_allocates_nothing() -> None:
    frame = b"\x12" + varint(2**31 - 1) + b"\x0a\x00"
    raised: list[BaseException] = []

    def decode() -> None:
        try:
            wire.decode_server_message(frame)
        except ProtocolError as exc:
            raised.append(exc)

    assert peak_bytes(decode) < 64 * 1024
    assert len(raised) == 1


@FUZZ
@given(
    job_type=job_types,
    agent_name=texts,
    version=texts,
    ping_interval=st.integers(0, U32_MAX),
    job_id=texts,
    available=st.booleans(),
    participant=st.tuples(texts, texts, texts),
    attributes=st.dictionaries(texts, texts, max_size=3),
    status=st.sampled_from(sorted(v for _, v in proto_agent.JobStatus.items())) | int32s,
    load=st.floats(0, 1e6, width=32),
    job_count=st.integers(0, U32_MAX),
    timestamp=st.integers(-(2**63), 2**63 - 1),
)
def test_worker_messages_decode_to_what_was_given(
    job_type: int,
    agent_name: str,
    version: str,
    ping_interval: int,
    job_id: str,
    available: bool,
    participant: tuple[str, str, str],
    attributes: dict[str, str],
    status: int,
    load: float,
    job_count: int,
    timestamp: int,
) -> None:
    def parse(frame: bytes) -> proto_agent.WorkerMessage:
        return proto_agent.WorkerMessage.FromString(frame)

    register = parse(wire.register(job_type, agent_name, version, ping_interval)).register
    assert (register.type, register.agent_name, register.version, register.ping_interval) == (
        job_type,
        agent_name,
        version,
        ping_interval,
    )
    identity, name, metadata = participant
    answer = parse(
        wire.availability(
            job_id,
            available=available,
            identity=identity,
            name=name,
            metadata=metadata,
            attributes=attributes,
        )
    ).availability
    assert (answer.job_id, answer.available) == (job_id, available)
    given = (identity, name, metadata, attributes) if available else ("", "", "", {})
    assert (
        answer.participant_identity,
        answer.participant_name,
        answer.participant_metadata,
        dict(answer.participant_attributes),
    ) == given
    update = parse(wire.job_status(job_id, status, agent_name)).update_job
    assert (update.job_id, update.status, update.error) == (job_id, status, agent_name)
    worker = parse(wire.worker_status(full=available, load=load, job_count=job_count))
    assert (worker.update_worker.load, worker.update_worker.job_count) == (load, job_count)
    assert parse(wire.ping(timestamp)).ping.timestamp == timestamp


# -- the WebSocket frame parser ----------------------------------------------------------


class FakeWriter:
    """The write side of the worker's connection: keeps what the client sent."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


def ws_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"", form: int = 0
) -> bytes:
    """One frame as a server writes it; `form` picks the 7-bit, 16-bit or 64-bit length
    (the shortest that fits when 0)."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    form = form or (1 if length < 126 else 2 if length < 1 << 16 else 3)
    if form == 1 and length < 126:
        head = struct.pack("!BB", first, length)
    elif form == 2 and length < 1 << 16:
        head = struct.pack("!BBH", first, 126, length)
    else:
        head = struct.pack("!BBQ", first, 127, length)
    if mask:
        head = head[:1] + bytes([head[1] | 0x80]) + head[2:] + mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each frame the client sent (masked, as clients must)."""
    frames = []
    while data:
        first, second = data[0], data[1]
        length, at = second & 0x7F, 2
        if length == 126:
            (length,), at = struct.unpack_from("!H", data, 2), 4
        elif length == 127:
            (length,), at = struct.unpack_from("!Q", data, 2), 10
        assert second & 0x80, "a client frame must be masked"
        mask, payload = data[at : at + 4], data[at + 4 : at + 4 + length]
        frames.append((first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))))
        data = data[at + 4 + length :]
    return frames


async def receive_all(
    data: bytes,
) -> tuple[list[bytes | str], type[BaseException] | None, FakeWriter]:
    """Everything `WebSocket.receive` makes of `data` from the server, then the end:
    `None` (closed) or the error it raised; and what the client sent back."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    writer = FakeWriter()
    ws = websocket.WebSocket(reader, cast(Any, writer))
    messages: list[bytes | str] = []
    error: type[BaseException] | None = None
    with anyio.fail_after(10):  # never hangs
        try:
            for _ in range(len(data) + 1):  # every message takes at least one byte
                message = await ws.receive()
                if message is None:
                    break
                assert isinstance(message, (bytes, str))
                messages.append(message)
            else:
                raise AssertionError("more messages than bytes")
        except websocket.WebSocketError:
            error = websocket.WebSocketError
        await ws.close()
    assert ws.closed
    assert writer.closed
    return messages, error, writer


_TEXT, _BINARY, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


@dataclasses.dataclass
class ServerStream:
    """Frames of a well-behaved server (fragmented messages, pings and pongs between
    fragments, any length form, masked or not), the messages the client must receive,
    the pings it must answer, and whether the server closes."""

    data: bytes
    messages: list[bytes | str]
    pings: list[bytes]
    closes: bool


@st.composite
def server_streams(draw: st.DrawFn) -> ServerStream:
    frames: list[bytes] = []
    expected: list[bytes | str] = []
    pings: list[bytes] = []
    form = st.sampled_from([0, 0, 1, 2, 3])
    masks = st.sampled_from([b""]) | st.binary(min_size=4, max_size=4)

    def control() -> None:
        opcode = draw(st.sampled_from([_PING, _PONG]))
        payload = draw(st.binary(max_size=125))
        frames.append(ws_frame(opcode, payload, mask=draw(masks), form=draw(form)))
        if opcode == _PING:
            pings.append(payload)

    for _ in range(draw(st.integers(0, 4))):
        text = draw(st.booleans())
        message: bytes | str
        if text:
            message = draw(st.text(max_size=60))
            payload = message.encode()
        else:
            message = payload = draw(st.binary(max_size=300))
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            if draw(st.booleans()):
                control()
            opcode = (_TEXT if text else _BINARY) if i == 0 else _CONTINUATION
            last = i == len(pieces) - 1
            frames.append(ws_frame(opcode, piece, fin=last, mask=draw(masks), form=draw(form)))
        expected.append(message)
    if draw(st.booleans()):
        control()
    closes = draw(st.booleans())
    if closes:
        frames.append(ws_frame(_CLOSE, struct.pack("!H", 1000)))
        frames.append(draw(st.binary(max_size=20)))  # ignored: the connection is closed
    return ServerStream(b"".join(frames), expected, pings, closes)


@FUZZ
@given(stream=server_streams())
def test_websocket_messages_arrive_whole_and_pings_are_answered(stream: ServerStream) -> None:
    messages, error, writer = asyncio.run(receive_all(stream.data))
    assert (messages, error) == (stream.messages, None)
    sent = client_frames(bytes(writer.sent))
    assert [p for opcode, p in sent if opcode == _PONG] == stream.pings
    # The server's close is echoed; a connection that just ends is only closed.
    assert [f for f in sent if f[0] == _CLOSE] == [(_CLOSE, struct.pack("!H", 1000))] * (
        stream.closes
    )


@FUZZ
@given(stream=server_streams(), data=st.data())
def test_damaged_websocket_streams_end_or_raise_websocket_error(
    stream: ServerStream, data: st.DataObject
) -> None:
    frames = stream.data
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        how = data.draw(st.sampled_from(["bytes", "rsv", "opcode", "length", "text"]))
        at = data.draw(st.integers(0, len(frames)), label="at")
        if how == "rsv" and frames:  # reserved bits (no extension was negotiated)
            frames = (
                bytes([frames[0] | data.draw(st.sampled_from([0x10, 0x20, 0x40]))]) + frames[1:]
            )
        elif how == "opcode":
            opcode = data.draw(st.integers(0, 15))
            frames = frames[:at] + ws_frame(opcode, data.draw(st.binary(max_size=8))) + frames[at:]
        elif how == "length":  # a frame that declares up to 2^64 - 1 bytes
            length = data.draw(st.integers(0, 2**64 - 1) | st.integers(0, 100))
            frames = frames[:at] + b"\x82\x7f" + struct.pack("!Q", length) + frames[at:]
        elif how == "text":  # a text message that is not UTF-8
            bad = data.draw(st.binary(max_size=8)) + b"\xff"
            frames = frames[:at] + ws_frame(_TEXT, bad) + frames[at:]
        else:
            frames = mutate_bytes(data, frames, [stream.data])
    messages, error, _ = asyncio.run(receive_all(frames))
    assert error in (None, websocket.WebSocketError)
    assert all(isinstance(m, (bytes, str)) for m in messages)


def test_a_text_message_that_is_not_utf8_is_a_websocket_error() -> None:
    # Found by fuzzing: `receive` raised UnicodeDecodeError, which the worker does not
    # catch (it reconnects on OSError, WebSocketError's base), so the worker died.
    messages, error, _ = asyncio.run(receive_all(ws_frame(_TEXT, b"ok \xff")))
    assert (messages, error) == ([], websocket.WebSocketError)


def test_many_empty_fragments_take_linear_time_and_no_memory() -> None:
    # Found by fuzzing: each fragment was kept in a list whose lengths were summed at
    # every fragment, so n empty continuation frames (2 bytes each) took time in n^2
    # (these 100,000: minutes) and memory in n.
    count = 100_000
    data = ws_frame(_BINARY, b"a", fin=False) + ws_frame(_CONTINUATION, b"", fin=False) * count
    data += ws_frame(_CONTINUATION, b"b")
    results: list[tuple[list[bytes | str], Any, FakeWriter]] = []
    started = time.perf_counter()
    peak = peak_bytes(lambda: results.append(asyncio.run(receive_all(data))))
    assert time.perf_counter() - started < 30  # about 1 s, with tracemalloc
    assert results[0][:2] == ([b"ab"], None)
    assert peak < len(data) + 256 * 1024  # the input, which the stream reader holds


# -- atheris -----------------------------------------------------------------------------


def _atheris(argv: list[str]) -> None:
    """Run one property under atheris, which steers hypothesis's choices by the coverage
    of lkkit's code (`nox -s fuzz` runs each for a while)."""
    properties = [
        name
        for name, test in sorted(globals().items())
        if name.startswith("test_") and hasattr(test, "hypothesis")
    ]
    if argv[1:] == ["--list"]:
        print(*properties, sep="\n")
        return
    if len(argv) < 2 or argv[1] not in properties:
        usage = "python tests/test_fuzz.py --list | PROPERTY [libFuzzer options]"
        raise SystemExit(f"usage: {usage}\n{_atheris.__doc__}")
    atheris = importlib.import_module("atheris")  # not a test dependency: nox -s fuzz has it
    test = globals()[argv.pop(1)]
    # Coverage of lkkit's code only: instrumenting everything loaded takes minutes.
    for function in gc.get_objects():
        if isinstance(function, types.FunctionType) and (function.__module__ or "").startswith(
            "lkkit"
        ):
            atheris.instrument_func(function)
    atheris.Setup(argv, test.hypothesis.fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    _atheris(sys.argv)
