"""The one chunk codec of lkkit: split a message into data packets, and put it back.

Pure logic: no SDK import, no asyncio. The wire format is documented, byte by byte, in
`docs/wire-format.md`; this docstring is the short version.

- A message whose payload fits one packet (at most `max_packet_bytes`, 15,360 by
  default) is sent **unframed**: the packet is the payload, byte for byte, so plain
  LiveKit peers (JS, Swift, Kotlin, Python) receive exactly what was sent.
- A larger message is split into chunks. Each chunk is a 38-byte header followed by a
  slice of the payload; every packet, header included, is at most `max_packet_bytes`.
- One exception to the first rule: a payload that would itself be recognised as a chunk
  (it starts with the magic and its header checksum matches, see
  [`needs_framing`][lkkit._chunking.needs_framing]) is sent framed, as a one-chunk
  message, so it arrives unchanged.

```python
packets = encode_message(payload)          # list[bytes], each <= 15,360 bytes
reassembler = Reassembler()
for packet in packets:
    match reassembler.feed("alice", packet):
        case Complete(payload=message): ...  # a whole chunked message
        case Raw(payload=message): ...       # not a chunk: an ordinary packet
        case Stored(): ...                   # a chunk was stored, nothing yet
        case Dropped(reason=reason): ...     # rejected; `reason` says why
```
"""

from __future__ import annotations

import enum
import os
import struct
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from lkkit._exceptions import ConfigurationError, DataTooLarge

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "HEADER_BYTES",
    "MAGIC",
    "MAX_CHUNK_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_PACKET_BYTES",
    "MESSAGE_ID_BYTES",
    "WIRE_VERSION",
    "Complete",
    "DropReason",
    "Dropped",
    "FeedResult",
    "Raw",
    "Reassembler",
    "ReassemblerStats",
    "Stored",
    "encode_message",
    "needs_framing",
]

MAX_PACKET_BYTES = 15_360
"""Largest data packet lkkit sends, its own framing included (15 KiB)."""

MAGIC = b"\xffLKC"
"""First four bytes of every chunk. `0xFF` never occurs in UTF-8, so no text payload
(JSON, chat) can be mistaken for a chunk."""

WIRE_VERSION = 1
"""Version of the chunk format this module writes and reads."""

MESSAGE_ID_BYTES = 8
"""Length of a message id. Ids are random and only need to be unique per sender."""

# magic, version, header length, message id, index, count, total length, chunk size,
# message CRC32; then the header CRC32 over these 34 bytes. Big-endian, no padding.
_PREFIX = struct.Struct(">4sBB8sIIIII")
_U32 = struct.Struct(">I")

HEADER_BYTES = _PREFIX.size + _U32.size
"""Size of a version-1 chunk header: 38 bytes."""

MAX_CHUNK_BODY_BYTES = MAX_PACKET_BYTES - HEADER_BYTES
"""Most payload bytes one chunk carries with the default packet size: 15,322."""

MAX_MESSAGE_BYTES = 0xFFFF_FFFF
"""Largest payload `encode_message` accepts: the range of the 32-bit total-length field
(4 GiB - 1). The chunk count (also 32 bits) can never overflow below it, since every
chunk carries at least one byte. Receivers enforce their own, smaller limit
(`Reassembler(max_pending_bytes=...)`)."""

# Smallest header any version may have: magic, version, header length, header CRC32.
# Recognising a chunk uses only these fields, so it works for every version.
_MIN_HEADER_BYTES = len(MAGIC) + 2 + _U32.size


def _header_length(packet: bytes | bytearray | memoryview) -> int | None:
    """The header length if `packet` is a chunk of any version, else `None`.

    This test is frozen across versions: it reads only the magic, the header-length byte
    and the header CRC32 (the last four bytes of the header, over the bytes before them).
    """
    if len(packet) < _MIN_HEADER_BYTES or packet[: len(MAGIC)] != MAGIC:
        return None
    length = packet[5]
    if length < _MIN_HEADER_BYTES or length > len(packet):
        return None
    (checksum,) = _U32.unpack_from(packet, length - _U32.size)
    if zlib.crc32(packet[: length - _U32.size]) != checksum:
        return None
    return length


def needs_framing(payload: bytes | bytearray | memoryview) -> bool:
    """Whether `payload` must be framed even though it fits one packet.

    True when a receiver would take the raw payload for a chunk: it starts with
    [`MAGIC`][lkkit._chunking.MAGIC] and carries a valid header checksum. For anything
    but a packet copied from a chunked message this is false (a random binary payload
    passes with probability 2^-32; a text payload never does).
    """
    if isinstance(payload, memoryview):
        payload = payload.cast("B")
    return _header_length(payload) is not None


def encode_message(
    payload: bytes | bytearray | memoryview,
    *,
    message_id: bytes | None = None,
    max_packet_bytes: int = MAX_PACKET_BYTES,
) -> list[bytes]:
    """Split `payload` into the data packets to send, in order.

    A payload of at most `max_packet_bytes` comes back as a single packet equal to the
    payload (unless [`needs_framing`][lkkit._chunking.needs_framing] says otherwise);
    a larger one as chunks, each at most `max_packet_bytes` long, header included.

    The packets are returned as a list, not an iterator: every check runs before the
    first packet exists, the caller knows the count before sending, and a partly sent
    message can be retried. The price is one copy of the payload held at once.

    `payload` may be any bytes-like object; it is copied, never kept, so a `bytearray`
    may be reused once this returns. A `bytes` payload sent unframed is returned as is.

    Raises:
        DataTooLarge: the payload exceeds
            [`MAX_MESSAGE_BYTES`][lkkit._chunking.MAX_MESSAGE_BYTES].
        ConfigurationError: `max_packet_bytes` is not in
            `HEADER_BYTES + 1 ..= MAX_PACKET_BYTES`, or `message_id` is not
            `MESSAGE_ID_BYTES` long.
    """
    if not HEADER_BYTES < max_packet_bytes <= MAX_PACKET_BYTES:
        raise ConfigurationError(
            f"max_packet_bytes must be between {HEADER_BYTES + 1} and {MAX_PACKET_BYTES}, "
            f"got {max_packet_bytes}"
        )
    view = memoryview(payload).cast("B")
    total = view.nbytes
    if total > MAX_MESSAGE_BYTES:
        raise DataTooLarge(
            f"a data message of {total} bytes exceeds the maximum of {MAX_MESSAGE_BYTES} bytes"
        )
    if message_id is None:
        message_id = os.urandom(MESSAGE_ID_BYTES)
    elif len(message_id) != MESSAGE_ID_BYTES:
        raise ConfigurationError(
            f"message_id must be {MESSAGE_ID_BYTES} bytes, got {len(message_id)}"
        )
    if total <= max_packet_bytes and not needs_framing(view):
        return [payload if type(payload) is bytes else view.tobytes()]

    body_max = max_packet_bytes - HEADER_BYTES
    count = max(1, -(-total // body_max))
    chunk_size = body_max if count > 1 else total
    message_crc = zlib.crc32(view)
    packets: list[bytes] = []
    for index in range(count):
        prefix = _PREFIX.pack(
            MAGIC,
            WIRE_VERSION,
            HEADER_BYTES,
            message_id,
            index,
            count,
            total,
            chunk_size,
            message_crc,
        )
        start = index * chunk_size
        packets.append(
            b"".join((prefix, _U32.pack(zlib.crc32(prefix)), view[start : start + chunk_size]))
        )
    return packets


# -- receiving ---------------------------------------------------------------------------


class DropReason(enum.Enum):
    """Why [`Reassembler.feed`][lkkit._chunking.Reassembler.feed] or `expire` dropped data.

    A packet with a bad header checksum is not dropped: it is not a chunk, and comes
    back as [`Raw`][lkkit._chunking.Raw].
    """

    CORRUPT_MESSAGE = "corrupt_message"
    """All chunks arrived but the message's CRC32 does not match: message dropped."""
    MALFORMED = "malformed"
    """A chunk whose own fields contradict each other (index not below count, count not
    matching total length and chunk size, body length not what they imply, a version-1
    header that is not 38 bytes): the chunk and its message are dropped."""
    INCONSISTENT = "inconsistent"
    """A chunk disagrees with earlier chunks of its message (count, total length, chunk
    size or message CRC differ, or an index arrives again with different bytes): the
    message is dropped."""
    DUPLICATE = "duplicate"
    """A chunk already received with the same bytes, or a chunk of a message already
    completed: only that packet is dropped."""
    TIMEOUT = "timeout"
    """An incomplete message received no chunk for `timeout` seconds: message dropped."""
    OVER_BUDGET = "over_budget"
    """A new message would take the pending bytes over `max_pending_bytes`, or the
    pending messages over `max_pending_messages`: the new message is dropped."""
    TOO_LARGE = "too_large"
    """A message declares a total length above `max_pending_bytes`: it could never fit,
    so it is dropped at its first chunk."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """A valid chunk of a format version this receiver does not know: chunk dropped."""
    ALREADY_DROPPED = "already_dropped"
    """A chunk of a message dropped earlier (for any other reason): chunk dropped."""


@dataclass(frozen=True, slots=True)
class Complete:
    """A whole chunked message, reassembled and checked."""

    sender: str | None
    message_id: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class Stored:
    """A chunk was stored; its message is not complete yet."""

    sender: str | None
    message_id: bytes
    received: int
    """Chunks of this message held so far."""
    count: int
    """Chunks the message has in all."""


@dataclass(frozen=True, slots=True)
class Raw:
    """Not a chunk: deliver `payload` as it is (an unframed message)."""

    sender: str | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class Dropped:
    """Data thrown away, and why.

    `message_id` is `None` when the chunk's header could not be read (an unsupported
    version, a malformed header length). `bytes_dropped` counts payload bytes (chunk
    bodies) discarded, headers excluded.
    """

    sender: str | None
    message_id: bytes | None
    reason: DropReason
    bytes_dropped: int


FeedResult: TypeAlias = Complete | Stored | Raw | Dropped
"""What [`Reassembler.feed`][lkkit._chunking.Reassembler.feed] returns."""


@dataclass(frozen=True, slots=True)
class ReassemblerStats:
    """A snapshot of a [`Reassembler`][lkkit._chunking.Reassembler]'s counters."""

    messages_completed: int
    """Chunked messages delivered as [`Complete`][lkkit._chunking.Complete]."""
    packets_raw: int
    """Packets delivered as [`Raw`][lkkit._chunking.Raw]."""
    chunks_stored: int
    """Chunks accepted (each [`Stored`][lkkit._chunking.Stored] or completing chunk)."""
    dropped: dict[DropReason, int]
    """[`Dropped`][lkkit._chunking.Dropped] results by reason, every reason present."""
    pending_messages: int
    """Incomplete messages held now."""
    pending_bytes: int
    """Payload bytes received and held in incomplete messages now."""
    reserved_bytes: int
    """Bytes set aside for incomplete messages now (their declared total lengths);
    this is what `max_pending_bytes` caps, and what is allocated."""


_Key: TypeAlias = tuple[str | None, bytes]


class _Pending:
    """An incomplete message: one buffer of its final size, and a bitmap of chunks."""

    __slots__ = ("buffer", "chunk_size", "count", "crc", "have", "last_seen", "received", "total")

    def __init__(self, count: int, total: int, chunk_size: int, crc: int, now: float):
        self.count = count
        self.total = total
        self.chunk_size = chunk_size
        self.crc = crc
        self.buffer = bytearray(total)
        self.have = bytearray((count + 7) // 8)
        self.received = 0  # chunks
        self.last_seen = now

    def holds(self, index: int) -> bool:
        return bool(self.have[index >> 3] & (1 << (index & 7)))

    def held_bytes(self) -> int:
        # Every chunk but the last is `chunk_size` long.
        last = self.count - 1
        if self.holds(last):
            return (self.received - 1) * self.chunk_size + self.total - last * self.chunk_size
        return self.received * self.chunk_size


class Reassembler:
    """Turns received packets back into messages, for one session.

    Incomplete messages are keyed by `(sender, message_id)`, so messages from the same or
    different senders may interleave, and chunks may come in any order.

    Memory is bounded three ways: at most `max_pending_bytes` declared bytes and
    `max_pending_messages` messages are pending at once, a message idle for `timeout`
    seconds is dropped, and ids of finished messages are remembered (to recognise late
    duplicates) for `timeout` seconds, at most `max_remembered` of them.

    When a new message does not fit the budget, the **new** message is dropped
    (`OVER_BUDGET`), never one already admitted. A message reserves its declared total
    length at its first chunk, so an admitted message can always complete; evicting the
    oldest instead would let two large interleaved messages evict each other forever,
    and throw away work already received. A stalled message holds its share only until
    it times out.

    Args:
        max_pending_bytes: cap on the total declared length of incomplete messages; a
            message declaring more is dropped as `TOO_LARGE`.
        timeout: seconds an incomplete message may go without a new chunk.
        max_pending_messages: cap on the number of incomplete messages.
        max_remembered: cap on the number of finished message ids remembered.
        clock: the time source, in seconds; `time.monotonic` by default.

    Raises:
        ConfigurationError: a limit is not positive.
    """

    def __init__(
        self,
        *,
        max_pending_bytes: int = 64 * 1024 * 1024,
        timeout: float = 30.0,
        max_pending_messages: int = 128,
        max_remembered: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending_bytes < 1:
            raise ConfigurationError(f"max_pending_bytes must be positive, got {max_pending_bytes}")
        if not timeout > 0:
            raise ConfigurationError(f"timeout must be positive, got {timeout}")
        if max_pending_messages < 1:
            raise ConfigurationError(
                f"max_pending_messages must be positive, got {max_pending_messages}"
            )
        if max_remembered < 1:
            raise ConfigurationError(f"max_remembered must be positive, got {max_remembered}")
        self._max_pending_bytes = max_pending_bytes
        self._timeout = timeout
        self._max_pending_messages = max_pending_messages
        self._max_remembered = max_remembered
        self._clock = clock
        # Least recently active first.
        self._pending: OrderedDict[_Key, _Pending] = OrderedDict()
        # Finished messages: the drop reason, or None when completed; and when to forget.
        self._finished: OrderedDict[_Key, tuple[DropReason | None, float]] = OrderedDict()
        self._reserved = 0
        self._expired: list[Dropped] = []
        self._completed = 0
        self._raw = 0
        self._stored = 0
        self._dropped = dict.fromkeys(DropReason, 0)

    @property
    def stats(self) -> ReassemblerStats:
        """The counters now."""
        return ReassemblerStats(
            messages_completed=self._completed,
            packets_raw=self._raw,
            chunks_stored=self._stored,
            dropped=dict(self._dropped),
            pending_messages=len(self._pending),
            pending_bytes=sum(p.held_bytes() for p in self._pending.values()),
            reserved_bytes=self._reserved,
        )

    def expire(self, now: float | None = None) -> list[Dropped]:
        """Drop messages idle for `timeout` seconds or more, and return the drops.

        Also returns timeouts noticed by earlier [`feed`][lkkit._chunking.Reassembler.feed]
        calls (which expire old messages before admitting new ones) and not yet returned.
        Call it regularly, say once a second, to learn of truncated messages promptly.
        """
        self._expire(self._clock() if now is None else now)
        expired, self._expired = self._expired, []
        return expired

    def feed(self, sender: str | None, packet: bytes, now: float | None = None) -> FeedResult:
        """Take one received packet, and say what became of it.

        Returns [`Complete`][lkkit._chunking.Complete] when it completes a message,
        [`Stored`][lkkit._chunking.Stored] when it was held as part of one,
        [`Raw`][lkkit._chunking.Raw] when it is not a chunk (deliver it as it is), or
        [`Dropped`][lkkit._chunking.Dropped] with the reason.
        """
        if now is None:
            now = self._clock()
        self._expire(now)
        header_length = _header_length(packet)
        if header_length is None:
            self._raw += 1
            return Raw(sender, packet)
        body_length = len(packet) - header_length
        if packet[4] != WIRE_VERSION:
            return self._drop(sender, None, DropReason.UNSUPPORTED_VERSION, body_length)
        if header_length != HEADER_BYTES:
            return self._drop(sender, None, DropReason.MALFORMED, body_length)

        _, _, _, message_id, index, count, total, chunk_size, crc = _PREFIX.unpack_from(packet)
        key = (sender, message_id)
        pending = self._pending.get(key)
        expected = _body_length(index, count, total, chunk_size)
        if expected is None or expected != body_length:
            return self._drop_message(key, pending, DropReason.MALFORMED, body_length, now)

        finished = self._finished.get(key)
        if finished is not None:
            # Keep remembering a message while its chunks keep coming.
            self._remember(key, finished[0], now)
            reason = DropReason.DUPLICATE if finished[0] is None else DropReason.ALREADY_DROPPED
            return self._drop(sender, message_id, reason, body_length)

        body = memoryview(packet)[HEADER_BYTES:]
        if pending is None:
            if count == 1:
                self._stored += 1
                return self._finish(key, bytes(body), crc, now)
            if total > self._max_pending_bytes:
                return self._drop_message(key, None, DropReason.TOO_LARGE, body_length, now)
            if (
                self._reserved + total > self._max_pending_bytes
                or len(self._pending) >= self._max_pending_messages
            ):
                return self._drop_message(key, None, DropReason.OVER_BUDGET, body_length, now)
            pending = _Pending(count, total, chunk_size, crc, now)
            self._pending[key] = pending
            self._reserved += total
        elif (count, total, chunk_size, crc) != (
            pending.count,
            pending.total,
            pending.chunk_size,
            pending.crc,
        ):
            return self._drop_message(key, pending, DropReason.INCONSISTENT, body_length, now)

        start = index * chunk_size
        if pending.holds(index):
            if pending.buffer[start : start + body_length] == body:
                return self._drop(sender, message_id, DropReason.DUPLICATE, body_length)
            return self._drop_message(key, pending, DropReason.INCONSISTENT, body_length, now)

        pending.buffer[start : start + body_length] = body
        pending.have[index >> 3] |= 1 << (index & 7)
        pending.received += 1
        pending.last_seen = now
        self._pending.move_to_end(key)
        self._stored += 1
        if pending.received < count:
            return Stored(sender, message_id, pending.received, count)
        del self._pending[key]
        self._reserved -= total
        return self._finish(key, bytes(pending.buffer), crc, now)

    # -- internals -----------------------------------------------------------------------

    def _finish(self, key: _Key, payload: bytes, crc: int, now: float) -> Complete | Dropped:
        if zlib.crc32(payload) != crc:
            self._remember(key, DropReason.CORRUPT_MESSAGE, now)
            return self._drop(key[0], key[1], DropReason.CORRUPT_MESSAGE, len(payload))
        self._remember(key, None, now)
        self._completed += 1
        return Complete(key[0], key[1], payload)

    def _drop(
        self, sender: str | None, message_id: bytes | None, reason: DropReason, size: int
    ) -> Dropped:
        self._dropped[reason] += 1
        return Dropped(sender, message_id, reason, size)

    def _drop_message(
        self,
        key: _Key,
        pending: _Pending | None,
        reason: DropReason,
        extra_bytes: int,
        now: float,
    ) -> Dropped:
        """Drop the message `key` (and what it holds), and remember it was dropped."""
        held = 0
        if pending is not None:
            held = pending.held_bytes()
            del self._pending[key]
            self._reserved -= pending.total
        if key not in self._finished:
            self._remember(key, reason, now)
        return self._drop(key[0], key[1], reason, held + extra_bytes)

    def _remember(self, key: _Key, reason: DropReason | None, now: float) -> None:
        self._finished[key] = (reason, now + self._timeout)
        self._finished.move_to_end(key)
        while len(self._finished) > self._max_remembered:
            self._finished.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._finished:
            key, (_, forget_at) = next(iter(self._finished.items()))
            if forget_at > now:
                break
            del self._finished[key]
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if now - pending.last_seen < self._timeout:
                break
            self._expired.append(self._drop_message(key, pending, DropReason.TIMEOUT, 0, now))


def _body_length(index: int, count: int, total: int, chunk_size: int) -> int | None:
    """The body length chunk `index` must have, or `None` if the fields contradict."""
    if count < 1 or index >= count:
        return None
    if count == 1:
        return total if chunk_size == total else None
    if chunk_size < 1 or not (count - 1) * chunk_size < total <= count * chunk_size:
        return None
    return chunk_size if index < count - 1 else total - (count - 1) * chunk_size
