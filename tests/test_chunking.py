"""Tests of lkkit's chunk codec (`lkkit._chunking`): boundaries, every rejection path,
and hypothesis properties (round trip in any order, corruption, duplication,
truncation, interleaving, packet size)."""

from __future__ import annotations

import random
import struct
import time
import zlib
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkkit import _chunking
from lkkit._chunking import (
    HEADER_BYTES,
    MAGIC,
    MAX_CHUNK_BODY_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_PACKET_BYTES,
    MESSAGE_ID_BYTES,
    WIRE_VERSION,
    Complete,
    Dropped,
    DropReason,
    FeedResult,
    Raw,
    Reassembler,
    Stored,
    encode_message,
    needs_framing,
)
from lkkit._exceptions import ConfigurationError, DataTooLarge

MID = bytes.fromhex("0102030405060708")
MID2 = bytes.fromhex("1112131415161718")

PROPERTY = settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def chunk(
    *,
    message_id: bytes = MID,
    index: int,
    count: int,
    total: int,
    chunk_size: int,
    crc: int,
    body: bytes,
    version: int = WIRE_VERSION,
    padding: bytes = b"",
) -> bytes:
    """A chunk built by hand from the documented layout, with a valid header CRC.

    `padding` goes between the fields and the header CRC, as a longer header would.
    """
    header_length = HEADER_BYTES + len(padding)
    head = struct.pack(
        ">4sBB8sIIIII",
        MAGIC,
        version,
        header_length,
        message_id,
        index,
        count,
        total,
        chunk_size,
        crc,
    )
    head += padding
    return head + struct.pack(">I", zlib.crc32(head)) + body


def feed_all(
    reassembler: Reassembler, packets: list[bytes], sender: str | None = "alice"
) -> list[FeedResult]:
    return [reassembler.feed(sender, packet) for packet in packets]


def completes(results: list[FeedResult]) -> list[Complete]:
    return [r for r in results if isinstance(r, Complete)]


def drops(results: list[FeedResult]) -> list[Dropped]:
    return [r for r in results if isinstance(r, Dropped)]


def reassembler(
    *,
    max_pending_bytes: int = 64 * 1024 * 1024,
    timeout: float = 30.0,
    max_pending_messages: int = 128,
    max_remembered: int = 4096,
) -> tuple[Reassembler, FakeClock]:
    clock = FakeClock()
    r = Reassembler(
        max_pending_bytes=max_pending_bytes,
        timeout=timeout,
        max_pending_messages=max_pending_messages,
        max_remembered=max_remembered,
        clock=clock,
    )
    return r, clock


def reason(result: FeedResult) -> DropReason:
    assert isinstance(result, Dropped), result
    return result.reason


def roundtrip(payload: bytes) -> bytes:
    packets = encode_message(payload)
    results = feed_all(Reassembler(), packets)
    last = results[-1]
    assert all(isinstance(r, Stored) for r in results[:-1])
    if isinstance(last, Raw):
        assert len(packets) == 1
        return last.payload
    assert isinstance(last, Complete)
    return last.payload


# -- constants and layout ----------------------------------------------------------------


def test_constants() -> None:
    assert MAX_PACKET_BYTES == 15_360
    assert HEADER_BYTES == 38
    assert MAX_CHUNK_BODY_BYTES == MAX_PACKET_BYTES - HEADER_BYTES == 15_322
    assert MAX_MESSAGE_BYTES == 2**32 - 1
    assert MESSAGE_ID_BYTES == 8
    assert MAGIC == b"\xffLKC"
    assert WIRE_VERSION == 1


def test_golden_bytes_match_the_documented_layout() -> None:
    payload = bytes(range(100))
    packets = encode_message(payload, message_id=MID, max_packet_bytes=88)
    assert [len(p) for p in packets] == [88, 88]
    assert packets[0][:HEADER_BYTES] == bytes.fromhex(
        "ff4c4b43 01 26 0102030405060708 00000000 00000002 00000064 00000032 58c932f5 8bd73edf"
    )
    crc = zlib.crc32(payload)
    assert packets == [
        chunk(index=0, count=2, total=100, chunk_size=50, crc=crc, body=payload[:50]),
        chunk(index=1, count=2, total=100, chunk_size=50, crc=crc, body=payload[50:]),
    ]


# -- boundaries --------------------------------------------------------------------------


def test_empty_payload_is_one_unframed_packet() -> None:
    assert encode_message(b"") == [b""]
    assert Reassembler().feed("alice", b"") == Raw("alice", b"")


def test_one_byte_payload_is_unframed() -> None:
    assert encode_message(b"x") == [b"x"]
    assert roundtrip(b"x") == b"x"


def test_exactly_max_packet_bytes_is_unframed_and_identical() -> None:
    payload = random.Random(1).randbytes(MAX_PACKET_BYTES)
    packets = encode_message(payload)
    assert packets == [payload]
    assert packets[0] is payload
    assert Reassembler().feed("alice", packets[0]) == Raw("alice", payload)


def test_one_byte_over_max_is_chunked() -> None:
    payload = random.Random(2).randbytes(MAX_PACKET_BYTES + 1)
    packets = encode_message(payload)
    assert [len(p) for p in packets] == [MAX_PACKET_BYTES, HEADER_BYTES + 39]
    assert all(p.startswith(MAGIC) for p in packets)
    assert roundtrip(payload) == payload


def test_text_payload_fitting_is_never_framed() -> None:
    payload = '{"chat": "héllo"}'.encode()
    assert not needs_framing(payload)
    assert encode_message(payload) == [payload]


def test_bytes_like_payloads_are_accepted() -> None:
    buffer = bytearray(b"abc")
    packets = encode_message(buffer)
    buffer[0] = ord("x")
    assert packets == [b"abc"]
    assert type(packets[0]) is bytes
    assert encode_message(memoryview(b"abcdef")[1:3]) == [b"bc"]
    wide = memoryview(bytearray(MAX_PACKET_BYTES)).cast("H")  # 7,680 two-byte items
    assert [len(p) for p in encode_message(wide)] == [MAX_PACKET_BYTES]
    big = bytearray(random.Random(5).randbytes(1000))
    assert roundtrip(bytes(big)) == big
    assert [bytes(p) for p in encode_message(big, message_id=MID, max_packet_bytes=88)] == (
        encode_message(bytes(big), message_id=MID, max_packet_bytes=88)
    )


def test_16_mib_roundtrip_in_reverse_order() -> None:
    payload = random.Random(3).randbytes(16 * 1024 * 1024)
    started = time.perf_counter()
    packets = encode_message(payload)
    assert max(len(p) for p in packets) == MAX_PACKET_BYTES
    assert len(packets) == -(-len(payload) // MAX_CHUNK_BODY_BYTES) == 1095
    r = Reassembler()
    results = feed_all(r, packets[::-1])
    elapsed = time.perf_counter() - started
    assert results[-1] == Complete("alice", packets[0][6:14], payload)
    assert r.stats.pending_bytes == r.stats.reserved_bytes == 0
    assert elapsed < 5  # typically well under 0.2 s


# -- raw payloads that start with the magic ----------------------------------------------


def test_magic_with_wrong_header_checksum_is_raw() -> None:
    good = encode_message(bytes(100), message_id=MID, max_packet_bytes=88)[0]
    payload = good[:34] + b"\x00\x00\x00\x00" + good[38:]
    assert payload.startswith(MAGIC)
    assert not needs_framing(payload)
    assert encode_message(payload) == [payload]
    assert Reassembler().feed("alice", payload) == Raw("alice", payload)


@pytest.mark.parametrize(
    "payload",
    [MAGIC, MAGIC + b"\x01", MAGIC + b"\x01\xff" + bytes(40), b"\xffLK"],
)
def test_short_or_impossible_headers_are_raw(payload: bytes) -> None:
    assert not needs_framing(payload)
    assert Reassembler().feed(None, payload) == Raw(None, payload)


def test_payload_that_is_a_valid_chunk_is_framed_and_roundtrips() -> None:
    # Forwarding a chunk packet as a payload: it must arrive as that packet, not be
    # taken for a chunk of someone else's message.
    inner = encode_message(bytes(range(100)), message_id=MID, max_packet_bytes=88)[0]
    assert needs_framing(inner)
    packets = encode_message(inner, message_id=MID2)
    assert len(packets) == 1
    assert packets[0] != inner
    assert len(packets[0]) == len(inner) + HEADER_BYTES
    assert Reassembler().feed("alice", packets[0]) == Complete("alice", MID2, inner)


def test_valid_chunk_payload_at_max_size_needs_two_chunks() -> None:
    body = bytes(MAX_PACKET_BYTES - HEADER_BYTES)
    inner = chunk(index=0, count=1, total=len(body), chunk_size=len(body), crc=0, body=body)
    assert len(inner) == MAX_PACKET_BYTES
    assert needs_framing(inner)
    packets = encode_message(inner)
    assert len(packets) == 2
    assert roundtrip(inner) == inner


def test_any_version_header_is_recognised() -> None:
    # The recognition rule is frozen across versions: a v2 header with another length
    # is still a chunk, so the sender must frame it.
    inner = chunk(
        index=0, count=1, total=3, chunk_size=3, crc=0, body=b"abc", version=2, padding=b"xy"
    )
    assert needs_framing(inner)


# -- rejections --------------------------------------------------------------------------


def test_header_checksum_mismatch_delivers_raw() -> None:
    packets = encode_message(bytes(100), message_id=MID, max_packet_bytes=88)
    bad = bytearray(packets[0])
    bad[20] ^= 0x01  # the chunk count
    r, _ = reassembler()
    assert r.feed("alice", bytes(bad)) == Raw("alice", bytes(bad))
    assert isinstance(r.feed("alice", packets[1]), Stored)  # the message stays incomplete


def test_corrupt_message_is_dropped() -> None:
    payload = bytes(range(100))
    packets = encode_message(payload, message_id=MID, max_packet_bytes=88)
    bad = bytearray(packets[1])
    bad[-1] ^= 0x80
    r, _ = reassembler()
    results = feed_all(r, [packets[0], bytes(bad)])
    assert results[1] == Dropped("alice", MID, DropReason.CORRUPT_MESSAGE, 100)
    assert r.stats.dropped[DropReason.CORRUPT_MESSAGE] == 1
    assert r.stats.pending_messages == 0
    # Its chunks arriving again are refused, not started afresh.
    assert r.feed("alice", packets[0]) == Dropped("alice", MID, DropReason.ALREADY_DROPPED, 50)


def test_corrupt_single_chunk_message_is_dropped() -> None:
    inner = encode_message(bytes(100), message_id=MID, max_packet_bytes=88)[0]
    packet = bytearray(encode_message(inner, message_id=MID2)[0])
    packet[-1] ^= 0x01
    result = Reassembler().feed("bob", bytes(packet))
    assert result == Dropped("bob", MID2, DropReason.CORRUPT_MESSAGE, len(inner))


def test_identical_duplicate_chunk_is_dropped_alone() -> None:
    payload = bytes(range(150))
    packets = encode_message(payload, message_id=MID, max_packet_bytes=88)
    r, _ = reassembler()
    results = feed_all(r, [packets[0], packets[0], packets[1], packets[2]])
    assert results[1] == Dropped("alice", MID, DropReason.DUPLICATE, 50)
    assert results[3] == Complete("alice", MID, payload)


def test_duplicate_after_completion_is_recognised() -> None:
    packets = encode_message(bytes(150), message_id=MID, max_packet_bytes=88)
    r, clock = reassembler(timeout=10)
    feed_all(r, packets)
    clock.now += 9
    assert r.feed("alice", packets[1]) == Dropped("alice", MID, DropReason.DUPLICATE, 50)
    # Still remembered while duplicates keep coming, forgotten `timeout` after the last.
    clock.now += 9
    assert reason(r.feed("alice", packets[1])) is DropReason.DUPLICATE
    clock.now += 10
    assert isinstance(r.feed("alice", packets[1]), Stored)


def test_duplicate_index_with_other_bytes_drops_message() -> None:
    payload = bytes(150)
    crc = zlib.crc32(payload)
    packets = encode_message(payload, message_id=MID, max_packet_bytes=88)
    forged = chunk(index=0, count=3, total=150, chunk_size=50, crc=crc, body=b"x" * 50)
    r, _ = reassembler()
    results = feed_all(r, [packets[0], forged, packets[1], packets[2]])
    assert results[1] == Dropped("alice", MID, DropReason.INCONSISTENT, 100)
    assert results[2] == Dropped("alice", MID, DropReason.ALREADY_DROPPED, 50)
    assert completes(results) == []


@pytest.mark.parametrize(
    ("count", "total", "chunk_size", "crc"),
    [
        (4, 200, 50, None),  # another count and total
        (3, 149, 50, None),  # another total length
        (2, 150, 100, None),  # another chunk size
        (3, 150, 50, 12345),  # another message CRC
    ],
)
def test_inconsistent_headers_drop_message(
    count: int, total: int, chunk_size: int, crc: int | None
) -> None:
    payload = bytes(150)
    packets = encode_message(payload, message_id=MID, max_packet_bytes=88)
    other = chunk(
        index=1,
        count=count,
        total=total,
        chunk_size=chunk_size,
        crc=zlib.crc32(payload) if crc is None else crc,
        body=bytes(chunk_size if count > 2 else total - chunk_size),
    )
    r, _ = reassembler()
    assert isinstance(r.feed("alice", packets[0]), Stored)
    result = r.feed("alice", other)
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.INCONSISTENT
    assert result.bytes_dropped == 50 + len(other) - HEADER_BYTES
    assert r.stats.pending_messages == 0
    assert r.stats.reserved_bytes == 0


@pytest.mark.parametrize(
    ("index", "count", "total", "chunk_size", "body_length"),
    [
        (3, 3, 150, 50, 50),  # index not below count
        (0, 0, 0, 0, 0),  # no chunks
        (0, 4, 150, 50, 50),  # count does not match total / chunk size
        (0, 2, 150, 50, 50),  # count too small for total
        (0, 2, 100, 0, 0),  # zero chunk size
        (0, 1, 10, 5, 10),  # a single chunk's size must be the total
        (0, 3, 150, 50, 49),  # body shorter than the chunk size
        (2, 3, 150, 50, 51),  # last body longer than the rest of the message
        (2, 3, 140, 50, 50),  # last body longer than the rest of the message
        (0, 1, 10, 10, 9),  # single chunk shorter than the total
    ],
)
def test_malformed_chunk_is_dropped(
    index: int, count: int, total: int, chunk_size: int, body_length: int
) -> None:
    packet = chunk(
        index=index,
        count=count,
        total=total,
        chunk_size=chunk_size,
        crc=0,
        body=bytes(body_length),
    )
    r, _ = reassembler()
    assert r.feed("alice", packet) == Dropped("alice", MID, DropReason.MALFORMED, body_length)


def test_malformed_chunk_drops_its_pending_message() -> None:
    packets = encode_message(bytes(150), message_id=MID, max_packet_bytes=88)
    r, _ = reassembler()
    r.feed("alice", packets[0])
    short = packets[1][:-1]  # header intact, body one byte short
    assert r.feed("alice", short) == Dropped("alice", MID, DropReason.MALFORMED, 50 + 49)
    assert reason(r.feed("alice", packets[2])) is DropReason.ALREADY_DROPPED


def test_version_1_with_another_header_length_is_malformed() -> None:
    packet = chunk(index=0, count=1, total=3, chunk_size=3, crc=0, body=b"abc", padding=b"zz")
    assert Reassembler().feed("a", packet) == Dropped("a", None, DropReason.MALFORMED, 3)


def test_unsupported_version_is_dropped() -> None:
    packet = chunk(
        index=0, count=1, total=3, chunk_size=3, crc=0, body=b"abc", version=2, padding=b"xy"
    )
    r = Reassembler()
    assert r.feed("a", packet) == Dropped("a", None, DropReason.UNSUPPORTED_VERSION, 3)
    assert r.stats.dropped[DropReason.UNSUPPORTED_VERSION] == 1


def test_truncated_message_times_out() -> None:
    packets = encode_message(bytes(200), message_id=MID, max_packet_bytes=88)
    r, clock = reassembler(timeout=5)
    feed_all(r, packets[:2])
    assert r.stats.pending_bytes == 100
    assert r.stats.reserved_bytes == 200
    clock.now += 4.9
    assert r.expire() == []
    assert r.expire(clock.now + 0.1) == [Dropped("alice", MID, DropReason.TIMEOUT, 100)]
    assert r.stats.pending_messages == r.stats.pending_bytes == r.stats.reserved_bytes == 0
    assert reason(r.feed("alice", packets[3])) is DropReason.ALREADY_DROPPED


def test_timeout_counts_from_the_last_chunk() -> None:
    packets = encode_message(bytes(200), message_id=MID, max_packet_bytes=88)
    r, clock = reassembler(timeout=5)
    for packet in packets[:3]:
        r.feed("alice", packet)
        clock.now += 4
    assert r.expire() == []
    assert isinstance(r.feed("alice", packets[3]), Complete)


def test_feed_expires_idle_messages_and_expire_reports_them() -> None:
    a = encode_message(bytes(600), message_id=MID, max_packet_bytes=138)
    b = encode_message(bytes(600), message_id=MID2, max_packet_bytes=138)
    r, clock = reassembler(max_pending_bytes=1000, timeout=10)
    r.feed("alice", a[0])
    clock.now += 20
    assert isinstance(r.feed("alice", b[0]), Stored)  # a's reservation was freed first
    assert r.expire() == [Dropped("alice", MID, DropReason.TIMEOUT, 100)]
    assert r.expire() == []


def test_reordered_chunks_reassemble() -> None:
    payload = random.Random(4).randbytes(1000)
    packets = encode_message(payload, message_id=MID, max_packet_bytes=138)
    order = [3, 9, 0, 1, 8, 2, 7, 4, 6, 5]
    results = feed_all(Reassembler(), [packets[i] for i in order])
    assert [r.received for r in results[:-1] if isinstance(r, Stored)] == list(range(1, 10))
    assert results[-1] == Complete("alice", MID, payload)


def test_interleaved_messages_from_same_and_other_senders() -> None:
    p1, p2, p3 = (random.Random(i).randbytes(300) for i in range(3))
    m1 = encode_message(p1, message_id=MID, max_packet_bytes=138)
    m2 = encode_message(p2, message_id=MID2, max_packet_bytes=138)
    m3 = encode_message(p3, message_id=MID, max_packet_bytes=138)  # same id, other sender
    r = Reassembler()
    results: list[FeedResult] = []
    for a, b, c in zip(m1, m2, m3, strict=True):
        results += [r.feed("alice", a), r.feed("alice", b), r.feed(None, c)]
    assert completes(results) == [
        Complete("alice", MID, p1),
        Complete("alice", MID2, p2),
        Complete(None, MID, p3),
    ]


def test_message_larger_than_budget_is_too_large() -> None:
    packets = encode_message(bytes(2000), message_id=MID, max_packet_bytes=138)
    r, _ = reassembler(max_pending_bytes=1000)
    assert r.feed("alice", packets[0]) == Dropped("alice", MID, DropReason.TOO_LARGE, 100)
    assert reason(r.feed("alice", packets[1])) is DropReason.ALREADY_DROPPED
    assert r.stats.reserved_bytes == 0


def test_over_budget_drops_the_new_message_and_keeps_the_old() -> None:
    pa, pb = bytes(600), b"\x01" * 600
    a = encode_message(pa, message_id=MID, max_packet_bytes=138)
    b = encode_message(pb, message_id=MID2, max_packet_bytes=138)
    r, _ = reassembler(max_pending_bytes=1000)
    results: list[FeedResult] = []
    for x, y in zip(a, b, strict=True):
        results += [r.feed("alice", x), r.feed("alice", y)]
    assert results[1] == Dropped("alice", MID2, DropReason.OVER_BUDGET, 100)
    assert {d.reason for d in drops(results)[1:]} == {DropReason.ALREADY_DROPPED}
    assert completes(results) == [Complete("alice", MID, pa)]
    # The budget is free again once the message completed.
    c = encode_message(pb, message_id=b"c" * 8, max_packet_bytes=138)
    assert completes(feed_all(r, c)) == [Complete("alice", b"c" * 8, pb)]


def test_single_chunk_messages_need_no_budget() -> None:
    inner = encode_message(bytes(100), message_id=MID, max_packet_bytes=88)[0]
    packet = encode_message(inner, message_id=MID2)[0]
    r, _ = reassembler(max_pending_bytes=1)
    assert r.feed("alice", packet) == Complete("alice", MID2, inner)


def test_pending_message_count_is_bounded() -> None:
    r, _ = reassembler(max_pending_messages=3)
    results = [
        r.feed("alice", encode_message(bytes(200), max_packet_bytes=88)[0]) for _ in range(10)
    ]
    assert [type(x) for x in results] == [Stored] * 3 + [Dropped] * 7
    assert r.stats.pending_messages == 3
    assert r.stats.dropped[DropReason.OVER_BUDGET] == 7


def test_remembered_ids_are_bounded() -> None:
    r, _ = reassembler(max_remembered=2)
    first = encode_message(bytes(150), max_packet_bytes=88)
    feed_all(r, first)
    for _ in range(2):
        feed_all(r, encode_message(bytes(150), max_packet_bytes=88))
    # The first id was forgotten, so its late chunk starts a new (doomed) message.
    assert isinstance(r.feed("alice", first[0]), Stored)


def test_stats_count_everything() -> None:
    payload = bytes(150)
    packets = encode_message(payload, message_id=MID, max_packet_bytes=88)
    r, _ = reassembler()
    feed_all(r, [b"raw", packets[0], packets[0], packets[1], packets[2], packets[2]])
    stats = r.stats
    assert stats.messages_completed == 1
    assert stats.packets_raw == 1
    assert stats.chunks_stored == 3
    assert stats.dropped[DropReason.DUPLICATE] == 2
    assert sum(stats.dropped.values()) == 2
    assert set(stats.dropped) == set(DropReason)
    assert (stats.pending_messages, stats.pending_bytes, stats.reserved_bytes) == (0, 0, 0)


def test_injected_clock_is_used() -> None:
    packets = encode_message(bytes(150), message_id=MID, max_packet_bytes=88)
    r, clock = reassembler(timeout=1)
    r.feed("alice", packets[0])
    clock.now += 1
    assert [d.reason for d in r.expire()] == [DropReason.TIMEOUT]


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, HEADER_BYTES, MAX_PACKET_BYTES + 1])
def test_bad_max_packet_bytes(size: int) -> None:
    with pytest.raises(ConfigurationError):
        encode_message(b"x", max_packet_bytes=size)


@pytest.mark.parametrize("message_id", [b"", b"1234567", b"123456789"])
def test_bad_message_id(message_id: bytes) -> None:
    with pytest.raises(ConfigurationError):
        encode_message(b"x", message_id=message_id)


def test_payload_over_the_maximum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_chunking, "MAX_MESSAGE_BYTES", 100)
    assert len(encode_message(bytes(100), max_packet_bytes=50)) == 9
    with pytest.raises(DataTooLarge, match="101 bytes"):
        encode_message(bytes(101), max_packet_bytes=50)


def test_maximum_message_fits_the_header_fields() -> None:
    # The largest message with the smallest chunks still fits the 32-bit fields.
    count = MAX_MESSAGE_BYTES  # one byte per chunk
    struct.pack(">II", count - 1, count)
    struct.pack(">I", MAX_MESSAGE_BYTES)


def test_bad_reassembler_limits() -> None:
    with pytest.raises(ConfigurationError):
        Reassembler(max_pending_bytes=0)
    with pytest.raises(ConfigurationError):
        Reassembler(timeout=0)
    with pytest.raises(ConfigurationError):
        Reassembler(timeout=float("nan"))
    with pytest.raises(ConfigurationError):
        Reassembler(max_pending_messages=0)
    with pytest.raises(ConfigurationError):
        Reassembler(max_remembered=0)


# -- properties --------------------------------------------------------------------------


@st.composite
def chunked_messages(draw: st.DrawFn) -> tuple[bytes, int, list[bytes]]:
    """A payload too large for one packet, its packet size, and its packets."""
    max_packet = draw(st.integers(HEADER_BYTES + 1, HEADER_BYTES + 80))
    payload = draw(st.binary(min_size=max_packet + 1, max_size=max_packet * 12))
    return payload, max_packet, encode_message(payload, max_packet_bytes=max_packet)


@PROPERTY
@given(
    payload=st.binary(max_size=3000) | st.binary(max_size=100).map(lambda b: MAGIC + b),
    max_packet=st.integers(HEADER_BYTES + 1, MAX_PACKET_BYTES),
)
def test_packets_never_exceed_the_maximum(payload: bytes, max_packet: int) -> None:
    packets = encode_message(payload, max_packet_bytes=max_packet)
    assert all(len(p) <= max_packet for p in packets)
    if len(payload) <= max_packet and not needs_framing(payload):
        assert packets == [payload]
    else:
        assert all(needs_framing(p) for p in packets)
        body = max_packet - HEADER_BYTES
        assert len(packets) == max(1, -(-len(payload) // body))


@PROPERTY
@given(
    payload=st.binary(max_size=1500),
    max_packet=st.integers(HEADER_BYTES + 1, 300),
    rnd=st.randoms(use_true_random=False),
)
def test_roundtrip_in_any_order(payload: bytes, max_packet: int, rnd: random.Random) -> None:
    packets = encode_message(payload, max_packet_bytes=max_packet)
    rnd.shuffle(packets)
    r = Reassembler()
    results = feed_all(r, packets)
    if len(payload) <= max_packet:
        assert results == [Raw("alice", payload)]
    else:
        assert all(isinstance(x, Stored) for x in results[:-1])
        assert isinstance(results[-1], Complete)
        assert results[-1].payload == payload
    assert r.stats.reserved_bytes == 0


@PROPERTY
@given(message=chunked_messages(), data=st.data())
def test_single_byte_corruption_is_detected(
    message: tuple[bytes, int, list[bytes]], data: st.DataObject
) -> None:
    _, _, packets = message
    which = data.draw(st.integers(0, len(packets) - 1))
    position = data.draw(st.integers(0, len(packets[which]) - 1))
    corrupted = bytearray(packets[which])
    corrupted[position] ^= data.draw(st.integers(1, 255))
    packets[which] = bytes(corrupted)
    r, clock = reassembler()
    results = feed_all(r, packets)
    assert completes(results) == []  # never a wrong payload, nor a right one
    if position < HEADER_BYTES:
        assert results[which] == Raw("alice", packets[which])
        assert [d.reason for d in r.expire(clock.now + 60)] == [DropReason.TIMEOUT]
    else:
        assert [d.reason for d in drops(results)] == [DropReason.CORRUPT_MESSAGE]


@PROPERTY
@given(message=chunked_messages(), data=st.data())
def test_duplicates_are_detected(
    message: tuple[bytes, int, list[bytes]], data: st.DataObject
) -> None:
    payload, _, packets = message
    order = data.draw(st.permutations(packets))
    copy = data.draw(st.sampled_from(packets))
    at = data.draw(st.integers(0, len(order)))
    stream = [*order[:at], copy, *order[at:]]
    r, _ = reassembler()
    results = feed_all(r, stream)
    assert [c.payload for c in completes(results)] == [payload]
    assert [d.reason for d in drops(results)] == [DropReason.DUPLICATE]
    assert r.stats.pending_messages == 0


@PROPERTY
@given(message=chunked_messages(), data=st.data())
def test_truncation_is_detected(
    message: tuple[bytes, int, list[bytes]], data: st.DataObject
) -> None:
    _, _, packets = message
    kept = data.draw(st.lists(st.sampled_from(range(len(packets))), unique=True))
    kept = kept[: len(packets) - 1]  # at least one chunk missing
    r, clock = reassembler(timeout=5)
    results = feed_all(r, [packets[i] for i in kept])
    assert all(isinstance(x, Stored) for x in results)
    expired = r.expire(clock.now + 5)
    if kept:
        held = sum(len(packets[i]) - HEADER_BYTES for i in kept)
        assert [(d.reason, d.bytes_dropped) for d in expired] == [(DropReason.TIMEOUT, held)]
    else:
        assert expired == []
    assert r.stats.reserved_bytes == 0


@PROPERTY
@given(
    messages=st.lists(
        st.tuples(st.sampled_from(["alice", "bob", None]), st.binary(min_size=119, max_size=600)),
        min_size=1,
        max_size=4,
    ),
    rnd=st.randoms(use_true_random=False),
)
def test_interleaved_messages_reassemble_independently(
    messages: list[tuple[str | None, bytes]], rnd: random.Random
) -> None:
    stream: list[tuple[str | None, bytes]] = []
    expected: Counter[tuple[str | None, bytes]] = Counter()
    for sender, payload in messages:
        stream += [(sender, p) for p in encode_message(payload, max_packet_bytes=118)]
        expected[sender, payload] += 1
    rnd.shuffle(stream)
    r = Reassembler()
    results = [r.feed(sender, packet) for sender, packet in stream]
    assert Counter((c.sender, c.payload) for c in completes(results)) == expected
    assert drops(results) == []
