"""The values of lkkit's data-message API: messages, drops, options, send results, stats.

Pure values (frozen, slotted dataclasses and string enums); the behaviour lives in
`lkkit._data`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .._chunking import MAX_PACKET_BYTES, DropReason
from .._exceptions import ConfigurationError
from .._participants import RemoteParticipant
from .._types import DataReliability

__all__ = [
    "LOSSY_MTU_BYTES",
    "MAX_TOPIC_BYTES",
    "DataDropReason",
    "DataDropped",
    "DataKind",
    "DataMessage",
    "DataOptions",
    "DataOrigin",
    "DataSent",
    "DataStats",
]

LOSSY_MTU_BYTES = 1_300
"""LiveKit's advice for lossy packets: at most one network MTU."""

MAX_TOPIC_BYTES = 256
"""Longest topic lkkit sends, in UTF-8 bytes: every packet of a message repeats it."""


class DataKind(str, enum.Enum):
    """How a received message travelled."""

    PACKET = "packet"
    """One data packet, unframed: what any LiveKit SDK's `publish_data` sends."""
    CHUNKED = "chunked"
    """Several lkkit chunks, reassembled and checked (see the wire format page)."""
    TEXT_STREAM = "text_stream"
    """A LiveKit native text stream (`send_text` / `stream_text` of any SDK)."""
    BYTE_STREAM = "byte_stream"
    """A LiveKit native byte stream (`send_bytes` / `stream_bytes` / `send_file`)."""


class DataDropReason(str, enum.Enum):
    """Why received data was thrown away instead of delivered.

    The first nine are the chunk codec's reasons (see the wire format page); the
    others come from delivery and from native streams.
    """

    CORRUPT_MESSAGE = "corrupt_message"
    """All chunks arrived but the message's CRC-32 does not match."""
    MALFORMED = "malformed"
    """A chunk whose header fields contradict each other."""
    INCONSISTENT = "inconsistent"
    """A chunk that disagrees with earlier chunks of its message."""
    DUPLICATE = "duplicate"
    """A chunk received twice (only that packet is dropped)."""
    TIMEOUT = "timeout"
    """An incomplete message (or native stream) got nothing new for `incomplete_timeout`."""
    OVER_BUDGET = "over_budget"
    """A new incomplete message would take the held bytes over `max_pending_bytes`,
    or the number of incomplete messages over `max_pending_messages`."""
    TOO_LARGE = "too_large"
    """A message declared a length above `max_pending_bytes`: it could never fit."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """A chunk of a wire-format version this lkkit does not know."""
    ALREADY_DROPPED = "already_dropped"
    """A chunk of a message dropped earlier for another reason."""
    SUBSCRIBER_FULL = "subscriber_full"
    """A complete message could not be queued for one subscriber whose buffer was full
    (that subscriber misses it; other subscribers still get it)."""
    STREAM_FAILED = "stream_failed"
    """A native data stream ended with an error (sender aborted, disconnect)."""


_FROM_CODEC = {reason: DataDropReason(reason.value) for reason in DropReason}


def drop_reason_from_codec(reason: DropReason) -> DataDropReason:
    """The public reason for one of the chunk codec's reasons (same name and value)."""
    return _FROM_CODEC[reason]


class DataOrigin(str, enum.Enum):
    """What a receiver knows of who sent a message."""

    PARTICIPANT = "participant"
    """A participant, whose identity is the message's `sender`."""
    UNKNOWN = "unknown"
    """No identity came with it: the server API sent it, or a participant that the
    SDK has not announced yet (one that publishes nothing is announced up to ~3 s
    after it joined). The SDK reports both the same way."""


@dataclass(frozen=True, slots=True)
class DataMessage:
    """A received data message, whole.

    Attributes:
        payload: the bytes sent, exactly (a `str` sent is its UTF-8 encoding).
        topic: the topic it was sent on (`""` when sent without one).
        sender: the sender's identity; `None` when it came without one (see
            [`origin`][lkkit.DataMessage.origin]).
        participant: a live view of the sender; `None` when the server API sent it,
            or when this session does not know the sender yet (a participant that
            publishes nothing is announced to others up to ~3 s after it joined, and
            can send data before that: `sender` is set then).
        reliability: how it travelled; native streams and chunked messages are
            always reliable.
        kind: one packet, lkkit chunks, or a native text or byte stream.
        received_at: wall-clock time (`time.time()`) its last packet arrived.
        attributes: a native stream's attributes (from its header and its end);
            empty for packets.
        name: a byte stream's name (a file's name); `None` otherwise.
        mime_type: a native stream's MIME type; `None` for packets.
    """

    payload: bytes = field(repr=False)
    topic: str
    sender: str | None
    participant: RemoteParticipant | None = field(repr=False, compare=False)
    reliability: DataReliability
    kind: DataKind
    received_at: float = field(compare=False)
    attributes: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False
    )
    name: str | None = None
    mime_type: str | None = None

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (raises `UnicodeDecodeError` if it is not)."""
        return self.payload.decode("utf-8")

    @property
    def reliable(self) -> bool:
        """Whether it came over the reliable channel."""
        return self.reliability is DataReliability.RELIABLE

    @property
    def origin(self) -> DataOrigin:
        """What is known of the sender: a participant (identity in `sender`), or
        unknown (the server API, or a participant the SDK has not announced yet: the
        two look the same as the SDK reports them)."""
        return DataOrigin.PARTICIPANT if self.sender is not None else DataOrigin.UNKNOWN

    def __len__(self) -> int:
        """The payload's length in bytes."""
        return len(self.payload)

    def __bool__(self) -> bool:
        """Always true: a message is a message, even a zero-byte one."""
        return True


@dataclass(frozen=True, slots=True)
class DataDropped:
    """Received data that lkkit threw away instead of delivering, and why.

    Attributes:
        reason: why.
        sender: the sender's identity (`None` for the server API).
        topic: the topic, when known (`None` for a timed-out chunked message whose
            topic was never seen, which cannot happen with lkkit senders).
        message_id: the chunked message's id (`None` for native streams and for
            chunks whose header could not be read).
        bytes_dropped: payload bytes thrown away (chunk bodies, headers excluded).
        at: wall-clock time (`time.time()`) of the drop.
    """

    reason: DataDropReason
    sender: str | None
    topic: str | None
    message_id: bytes | None
    bytes_dropped: int
    at: float = field(compare=False)


@dataclass(frozen=True, slots=True)
class DataSent:
    """What [`DataChannel.send`][lkkit.DataChannel.send] did.

    Attributes:
        size: payload bytes sent.
        packets: data packets handed to the SDK (1 for an unframed message); `None`
            for a native stream, which the SDK splits itself.
        message_id: the chunked message's id; `None` when it went unframed or as a
            native stream.
        absent_destinations: destination identities that were not in the room when
            the message was sent, as far as this session could see. The server
            delivers to the others and skips these silently (hidden participants
            are never listed, so they show up here even though they receive it).
    """

    size: int
    packets: int | None
    message_id: bytes | None
    absent_destinations: tuple[str, ...] = ()

    @property
    def chunked(self) -> bool:
        """Whether it went as lkkit chunks (more than 15,360 bytes, or framed)."""
        return self.message_id is not None


@dataclass(frozen=True, slots=True)
class DataOptions:
    """Limits of a session's data channel. Set them with
    [`DataChannel.configure`][lkkit.DataChannel.configure].

    Attributes:
        max_pending_bytes: cap on the bytes held in incomplete messages (chunked
            messages reserve their declared length at their first chunk; native
            streams count what they received so far, under their own cap of the
            same size). Larger messages are dropped as `TOO_LARGE`.
        incomplete_timeout: seconds an incomplete message (or native stream) may go
            without a new packet before it is dropped as `TIMEOUT`.
        max_pending_messages: cap on the number of incomplete chunked messages.
        lossy_max_bytes: largest lossy payload `send` accepts, 1 to 15,360. The
            default allows one full packet; set
            [`LOSSY_MTU_BYTES`][lkkit.LOSSY_MTU_BYTES] (1,300) to refuse lossy
            payloads that the network would fragment.
    """

    max_pending_bytes: int = 64 * 1024 * 1024
    incomplete_timeout: float = 30.0
    max_pending_messages: int = 128
    lossy_max_bytes: int = MAX_PACKET_BYTES

    def __post_init__(self) -> None:
        if self.max_pending_bytes < 1:
            raise ConfigurationError(
                f"max_pending_bytes must be positive, got {self.max_pending_bytes}"
            )
        if not self.incomplete_timeout > 0:
            raise ConfigurationError(
                f"incomplete_timeout must be positive, got {self.incomplete_timeout}"
            )
        if self.max_pending_messages < 1:
            raise ConfigurationError(
                f"max_pending_messages must be positive, got {self.max_pending_messages}"
            )
        if not 1 <= self.lossy_max_bytes <= MAX_PACKET_BYTES:
            raise ConfigurationError(
                f"lossy_max_bytes must be between 1 and {MAX_PACKET_BYTES}, "
                f"got {self.lossy_max_bytes}"
            )


@dataclass(frozen=True, slots=True)
class DataStats:
    """A snapshot of a session's data counters since the session started.

    Attributes:
        messages_sent: messages `send` completed.
        packets_sent: data packets handed to the SDK (native streams not included).
        bytes_sent: payload bytes of the messages sent.
        lossy_over_mtu_sent: lossy messages sent above 1,300 bytes (see the data
            page: they are lost whole if any IP fragment is lost).
        messages_received: messages delivered to at least one subscriber, or that
            found none (see `messages_unrouted`).
        bytes_received: payload bytes of those messages.
        chunked_received: of `messages_received`, the reassembled ones.
        streams_received: of `messages_received`, native text and byte streams.
        messages_unrouted: complete messages no subscription wanted (not drops).
        dropped: drops by reason, every reason present.
        bytes_dropped: payload bytes of all drops.
        drops_unreported: drops that no `drops()` subscription could take (none
            open, or all full); they are still counted in `dropped`.
        pending_messages: incomplete chunked messages and native streams now.
        pending_bytes: bytes reserved by incomplete chunked messages plus bytes
            received by incomplete native streams, now.
    """

    messages_sent: int
    packets_sent: int
    bytes_sent: int
    lossy_over_mtu_sent: int
    messages_received: int
    bytes_received: int
    chunked_received: int
    streams_received: int
    messages_unrouted: int
    dropped: Mapping[DataDropReason, int]
    bytes_dropped: int
    drops_unreported: int
    pending_messages: int
    pending_bytes: int

    @property
    def total_dropped(self) -> int:
        """Drops of every reason together."""
        return sum(self.dropped.values())
