"""Data messages of any size: `session.data.send(...)` and `session.data.messages(...)`.

```python
await session.data.send("hello", topic="chat")
await session.data.send(big_blob, topic="files", to=["bob"])  # chunked if > 15 KiB

async with session.data.messages("chat") as messages:
    async for message in messages:
        print(message.sender, message.text)
```

A payload that fits one packet (15,360 bytes) goes out unframed, byte-identical to
what a plain LiveKit SDK sends; a larger reliable one is split by the one chunk codec
(`lkkit._chunking`, specified in docs/wire-format.md) and reassembled by receiving
lkkit sessions. See docs/data.md for sizes, reliability, topics, destinations and what
is reported when something is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from livekit import rtc
from livekit.rtc.data_stream import StreamError as SdkStreamError

from ._chunking import (
    MAGIC,
    MAX_PACKET_BYTES,
    Complete,
    Dropped,
    DropReason,
    Raw,
    Reassembler,
    Stored,
    encode_message,
    needs_framing,
)
from ._data_subscription import DataSubscription
from ._data_types import (
    LOSSY_MTU_BYTES,
    MAX_TOPIC_BYTES,
    DataDropped,
    DataDropReason,
    DataKind,
    DataMessage,
    DataOptions,
    DataSent,
    DataStats,
    drop_reason_from_codec,
)
from ._events import DataReceived
from ._exceptions import (
    DataPermissionDenied,
    DataSendIncomplete,
    DataTooLarge,
    InvalidDataArgument,
    LkkitError,
    SessionStateError,
    map_sdk_exceptions,
)
from ._participants import RemoteParticipant
from ._types import DataReliability

if TYPE_CHECKING:
    from ._events import Event
    from ._session import Session

__all__ = ["DataChannel"]

logger = logging.getLogger("lkkit.data")

# Payloads above this are split in a worker thread, so the event loop stays free.
_ENCODE_IN_THREAD_BYTES = 1024 * 1024
# Packets of one message in flight at once: enough to keep the native send queue fed
# without one FFI round trip per packet on the critical path, few enough to stay small.
_SEND_WINDOW = 8
_DEFAULT_MAX_BUFFERED = 1024
_DEFAULT_MAX_BUFFERED_BYTES = 128 * 1024 * 1024
_Key = tuple[str | None, bytes]
_StreamReader = rtc.TextStreamReader | rtc.ByteStreamReader


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)  # a snapshot: the caller may reuse its buffer at once
    raise InvalidDataArgument(
        f"a data payload must be bytes, bytearray, memoryview or str, not {type(payload).__name__}"
    )


def _check_topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise InvalidDataArgument(f"topic must be a str, not {type(topic).__name__}")
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise InvalidDataArgument(f"topic must be at most {MAX_TOPIC_BYTES} UTF-8 bytes")
    return topic


def _destinations(to: object) -> tuple[str, ...] | None:
    if to is None:
        return None
    if isinstance(to, (str, bytes, bytearray)) or not isinstance(to, Iterable):
        raise InvalidDataArgument(
            f"`to` must be an iterable of identities (a list, say) or None, not {type(to).__name__}"
        )
    identities: list[str] = []
    for identity in to:
        if not isinstance(identity, str) or not identity:
            raise InvalidDataArgument(
                f"every destination must be a non-empty identity str, got {identity!r}"
            )
        if identity not in identities:
            identities.append(identity)
    if not identities:
        raise InvalidDataArgument(
            "`to` is empty; LiveKit would send to everyone. Use to=None for everyone."
        )
    return tuple(identities)


def _topics(topic: object) -> frozenset[str] | None:
    if topic is None:
        return None
    if isinstance(topic, str):
        return frozenset((_check_topic(topic),))
    if isinstance(topic, (bytes, bytearray)) or not isinstance(topic, Iterable):
        raise InvalidDataArgument(
            f"topic must be a str, an iterable of str, or None, not {type(topic).__name__}"
        )
    topics = frozenset(_check_topic(t) for t in topic)
    if not topics:
        raise InvalidDataArgument("an empty topic collection would receive nothing")
    return topics


def _positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise InvalidDataArgument(f"{name} must be a positive int, got {value!r}")
    return value


class DataChannel:
    """A session's data messages; get it as [`session.data`][lkkit.Session.data].

    Sends and receives messages of any size on topics, reports what it drops, and
    keeps counters ([`stats`][lkkit.DataChannel.stats]). It starts receiving when it
    is first used, and ends with the session.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._options = DataOptions()
        self._reassembler = self._new_reassembler(self._options)
        self._send_lock = asyncio.Lock()
        self._message_subs: list[DataSubscription[DataMessage]] = []
        self._drop_subs: list[DataSubscription[DataDropped]] = []
        # Topic of each incomplete chunked message, for its messages and drops.
        self._pending_topics: dict[_Key, str] = {}
        # Incomplete messages whose first chunks came without identity, and the
        # identity later chunks revealed.
        self._late_senders: dict[bytes, str] = {}
        # Native streams being read: one task each, owned here, cancelled at close.
        self._stream_tasks: set[asyncio.Task[None]] = set()
        self._stream_bytes = 0
        # Topics with native stream handlers: how many subscriptions want each, and
        # the ones whose handlers lkkit registered (another owner may hold a topic).
        self._stream_topic_refs: dict[str, int] = {}
        self._stream_handlers: set[tuple[str, DataKind]] = set()
        self._closed = False
        # counters
        self._messages_sent = 0
        self._packets_sent = 0
        self._bytes_sent = 0
        self._lossy_over_mtu = 0
        self._messages_received = 0
        self._bytes_received = 0
        self._chunked_received = 0
        self._streams_received = 0
        self._unrouted = 0
        self._dropped = dict.fromkeys(DataDropReason, 0)
        self._bytes_dropped = 0
        self._drops_unreported = 0
        self._remove_listener: Callable[[], None] | None = None
        if session._shutdown_done or session._bus.closed:
            self._close()
        else:
            # Packets come from the session's one event registry, in SDK order.
            self._remove_listener = session._bus.add_listener(self._on_event)
            session._on_close(self._close)

    # -- options and stats ---------------------------------------------------------------

    @property
    def options(self) -> DataOptions:
        """The limits in force."""
        return self._options

    def configure(self, options: DataOptions) -> None:
        """Replace the limits (the subscriber buffers are set per subscription).

        Raises:
            SessionStateError: an incomplete message or native stream is being
                received now, and would lose its state.
        """
        if not isinstance(options, DataOptions):
            raise InvalidDataArgument(f"expected DataOptions, not {type(options).__name__}")
        if self._pending_topics or self._stream_tasks:
            raise SessionStateError(
                "cannot change data limits while incomplete messages are being received"
            )
        self._options = options
        self._reassembler = self._new_reassembler(options)

    @staticmethod
    def _new_reassembler(options: DataOptions) -> Reassembler:
        return Reassembler(
            max_pending_bytes=options.max_pending_bytes,
            timeout=options.incomplete_timeout,
            max_pending_messages=options.max_pending_messages,
        )

    @property
    def stats(self) -> DataStats:
        """The counters now."""
        reassembly = self._reassembler.stats
        return DataStats(
            messages_sent=self._messages_sent,
            packets_sent=self._packets_sent,
            bytes_sent=self._bytes_sent,
            lossy_over_mtu_sent=self._lossy_over_mtu,
            messages_received=self._messages_received,
            bytes_received=self._bytes_received,
            chunked_received=self._chunked_received,
            streams_received=self._streams_received,
            messages_unrouted=self._unrouted,
            dropped=MappingProxyType(dict(self._dropped)),
            bytes_dropped=self._bytes_dropped,
            drops_unreported=self._drops_unreported,
            pending_messages=reassembly.pending_messages + len(self._stream_tasks),
            pending_bytes=reassembly.reserved_bytes + self._stream_bytes,
        )

    # -- sending -------------------------------------------------------------------------

    async def send(
        self,
        payload: bytes | bytearray | memoryview | str,
        *,
        topic: str = "",
        reliable: bool = True,
        to: Iterable[str] | None = None,
        native_stream: bool = False,
    ) -> DataSent:
        """Send one message to everyone in the room, or to the identities in `to`.

        Every check runs before the first packet leaves. A payload of at most 15,360
        bytes goes as one packet, byte-identical (so plain LiveKit peers receive it
        as sent); a larger reliable payload is split into chunks of at most 15,360
        bytes that receiving lkkit sessions reassemble. Reliable messages of one
        session arrive in the order their `send` calls began, large and small alike
        (sends wait for each other); lossy ones do not wait.

        Args:
            payload: the bytes to send; a `str` is sent as UTF-8.
            topic: what receivers filter on; `""` (the default) is LiveKit's "no
                topic". At most 256 UTF-8 bytes.
            reliable: retried and ordered (the default), or sent once (lossy: at most
                `options.lossy_max_bytes`, one packet, may be lost or reordered).
            to: identities to send to; `None` for everyone. Identities not in the
                room are skipped by the server without error; the result lists
                those this session could not see.
            native_stream: send as a LiveKit native data stream (`send_text` for a
                `str`, `send_bytes` otherwise), which plain JS, Swift, Kotlin and
                Python clients receive with their stream handlers. Reliable only.

        Raises:
            InvalidDataArgument: a wrong payload, topic or `to` type or value, or
                lossy with `native_stream`.
            DataTooLarge: a lossy payload above `options.lossy_max_bytes`.
            DataPermissionDenied: the local participant lacks `canPublishData`.
            NotConnected: the session is not connected.
            PublishError: the SDK refused the first (or only) packet.
            DataSendIncomplete: a chunked message failed after some packets left.
            StreamError: a native stream send failed.
        """
        data = _payload_bytes(payload)
        topic = _check_topic(topic)
        if not isinstance(reliable, bool):
            raise InvalidDataArgument(f"reliable must be a bool, got {reliable!r}")
        if not isinstance(native_stream, bool):
            raise InvalidDataArgument(f"native_stream must be a bool, got {native_stream!r}")
        destinations = _destinations(to)
        if native_stream and not reliable:
            raise InvalidDataArgument("native streams are reliable only; use reliable=True")
        packets: list[bytes] | None = None
        if not reliable:
            limit = self._options.lossy_max_bytes
            if len(data) <= limit:
                packets = encode_message(data)
            if packets is None or len(packets) != 1 or len(packets[0]) > limit:
                raise DataTooLarge(
                    f"a lossy payload must fit one packet of at most {limit} bytes, "
                    f"got {len(data)} bytes; send it reliably to have it chunked"
                )
        room = self._session.require_connected()
        if not room.local_participant.permissions.can_publish_data:
            raise DataPermissionDenied(
                f"participant {room.local_participant.identity!r} may not publish data "
                "(its token or permissions lack canPublishData); the server would drop it"
            )
        absent = (
            tuple(d for d in destinations if d not in room.remote_participants)
            if destinations is not None
            else ()
        )
        send_to = list(destinations) if destinations is not None else []

        if native_stream:
            async with self._send_lock:
                with map_sdk_exceptions():
                    if isinstance(payload, str):
                        await room.local_participant.send_text(
                            payload, topic=topic, destination_identities=send_to
                        )
                    else:
                        await room.local_participant.send_bytes(
                            data, topic=topic, destination_identities=send_to
                        )
            self._count_sent(len(data), 0)
            return DataSent(len(data), None, None, absent)

        if packets is not None:  # lossy: one packet, no ordering, no waiting
            await self._publish(room, packets[0], False, topic, send_to)
            if len(data) > LOSSY_MTU_BYTES:
                self._lossy_over_mtu += 1
            self._count_sent(len(data), 1)
            return DataSent(len(data), 1, None, absent)

        chunked = len(data) > MAX_PACKET_BYTES or needs_framing(data)
        # The lock is taken before any await, so messages leave in the order their
        # sends began, whatever their sizes.
        async with self._send_lock:
            if len(data) > _ENCODE_IN_THREAD_BYTES:
                packets = await anyio.to_thread.run_sync(encode_message, data)
            else:
                packets = encode_message(data)
            message_id = packets[0][6:14] if chunked else None
            sent, error = await self._publish_packets(room, packets, topic, send_to)
        if error is not None:
            self._packets_sent += sent
            if sent == 0:
                raise error
            raise DataSendIncomplete(
                f"sending a {len(data)}-byte message failed after {sent} of "
                f"{len(packets)} packets: {error}; receivers drop the partial "
                "message when it times out",
                sent=sent,
                total=len(packets),
            ) from error
        self._count_sent(len(data), len(packets))
        return DataSent(len(data), len(packets), message_id, absent)

    async def _publish_packets(
        self, room: rtc.Room, packets: list[bytes], topic: str, to: list[str]
    ) -> tuple[int, LkkitError | None]:
        """Publish a message's packets, up to `_SEND_WINDOW` at a time; return how many
        were accepted, and the first error (after which no packet is started).

        The caller holds the send lock and this returns only when every started packet
        has finished, so messages never overlap: chunks of one message may reach the
        native layer in any order (the receiver does not mind), messages may not.
        """
        if len(packets) == 1:
            try:
                await self._publish(room, packets[0], True, topic, to)
            except LkkitError as exc:
                return 0, exc
            return 1, None
        sent = 0
        error: LkkitError | None = None
        window = anyio.Semaphore(_SEND_WINDOW)

        async def publish(packet: bytes) -> None:
            nonlocal sent, error
            try:
                await self._publish(room, packet, True, topic, to)
                sent += 1
            except LkkitError as exc:
                error = error or exc
            finally:
                window.release()

        async with anyio.create_task_group() as tg:
            for packet in packets:
                await window.acquire()
                if error is not None:
                    window.release()
                    break
                tg.start_soon(publish, packet)
        return sent, error

    async def _publish(
        self, room: rtc.Room, packet: bytes, reliable: bool, topic: str, to: list[str]
    ) -> None:
        # publish_data resolves once the native layer queued the packet, and waits while
        # the channel's send buffer is full: awaiting each packet is the backpressure.
        with map_sdk_exceptions():
            await room.local_participant.publish_data(
                packet, reliable=reliable, topic=topic, destination_identities=to
            )

    def _count_sent(self, size: int, packets: int) -> None:
        self._messages_sent += 1
        self._packets_sent += packets
        self._bytes_sent += size

    # -- subscriptions -------------------------------------------------------------------

    def messages(
        self,
        topic: str | Iterable[str] | None = None,
        *,
        max_buffered: int = _DEFAULT_MAX_BUFFERED,
        max_buffered_bytes: int = _DEFAULT_MAX_BUFFERED_BYTES,
    ) -> DataSubscription[DataMessage]:
        """Subscribe to whole messages on one topic, several, or all (`None`).

        ```python
        async with session.data.messages("chat") as messages:
            async for message in messages: ...
        ```

        Messages arriving after `async with` entered are queued (at most
        `max_buffered` messages and `max_buffered_bytes` payload bytes; when full,
        a new message is a `SUBSCRIBER_FULL` drop for this subscriber only).
        Subscribing to named topics also receives the LiveKit native text and byte
        streams sent on them (streams are dispatched by exact topic, so a
        subscription to all topics receives streams only on topics some other
        subscription names).

        Raises:
            InvalidDataArgument: a topic that is not a `str` (or is too long), an
                empty collection, or a non-positive bound.
        """
        topics = _topics(topic)
        _positive("max_buffered", max_buffered)
        _positive("max_buffered_bytes", max_buffered_bytes)

        def accepts(message: DataMessage) -> bool:
            return topics is None or message.topic in topics

        return DataSubscription[DataMessage](
            self,
            accepts=accepts,
            size_of=len,
            max_buffered=max_buffered,
            max_buffered_bytes=max_buffered_bytes,
            topics=topics,
        )

    def drops(self, *, max_buffered: int = _DEFAULT_MAX_BUFFERED) -> DataSubscription[DataDropped]:
        """Subscribe to reports of received data thrown away (see `DataDropReason`).

        ```python
        async with session.data.drops() as drops:
            async for drop in drops:
                log.warning("lost %s from %s: %s", drop.topic, drop.sender, drop.reason)
        ```

        Drops no subscription takes are still counted in
        [`stats`][lkkit.DataChannel.stats].
        """
        _positive("max_buffered", max_buffered)
        return DataSubscription[DataDropped](
            self,
            accepts=_accept_all,
            size_of=_no_size,
            max_buffered=max_buffered,
            max_buffered_bytes=1,
        )

    def _attach(self, subscription: DataSubscription[Any]) -> None:
        if self._closed:
            subscription._end()
            return
        if subscription._accepts is _accept_all:
            self._drop_subs.append(subscription)
            return
        self._message_subs.append(subscription)
        for topic in subscription.topics or ():
            self._want_stream_topic(topic)

    def _detach(self, subscription: DataSubscription[Any]) -> None:
        if subscription in self._message_subs:
            self._message_subs.remove(subscription)
            if not self._closed:
                for topic in subscription.topics or ():
                    self._unwant_stream_topic(topic)
        elif subscription in self._drop_subs:
            self._drop_subs.remove(subscription)

    # -- lazy expiry (no background timer) -----------------------------------------------

    def _expiry_wait(self) -> float | None:
        if not self._pending_topics or self._closed:
            return None
        return max(0.05, min(1.0, self._options.incomplete_timeout / 4))

    def _expire_now(self) -> None:
        if self._closed:
            return
        for drop in self._reassembler.expire():
            self._report_codec_drop(drop, None)

    # -- receiving packets (from the session's event bus) --------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, DataReceived) and not self._closed:
            try:
                self._on_packet(event)
            except Exception:  # never let one packet break the SDK's dispatch
                logger.exception("lkkit could not process a data packet")

    def _on_packet(self, event: DataReceived) -> None:
        participant = event.participant
        sender = event.sender_identity
        payload = event.payload
        key = sender
        if (
            sender is not None
            and payload[:4] == MAGIC
            and (None, payload[6:14]) in self._pending_topics
        ):
            # The first chunks of this message came without the sender's identity (the
            # SDK learns of a participant that publishes nothing up to ~3 s after it
            # joined): keep its chunks together under that first key.
            self._late_senders[payload[6:14]] = sender
            key = None
        result = self._reassembler.feed(key, payload)
        if isinstance(result, Raw):
            self._deliver(
                DataMessage(
                    payload=result.payload,
                    topic=event.topic,
                    sender=sender,
                    participant=participant,
                    reliability=event.reliability,
                    kind=DataKind.PACKET,
                    received_at=event.received_at,
                )
            )
        elif isinstance(result, Stored):
            self._pending_topics.setdefault((result.sender, result.message_id), event.topic)
        elif isinstance(result, Complete):
            topic = self._pending_topics.pop((result.sender, result.message_id), event.topic)
            if result.sender is None:
                sender = self._late_senders.pop(result.message_id, None)
            self._chunked_received += 1
            self._deliver(
                DataMessage(
                    payload=result.payload,
                    topic=topic,
                    sender=sender,
                    participant=participant,
                    reliability=event.reliability,
                    kind=DataKind.CHUNKED,
                    received_at=event.received_at,
                )
            )
        else:
            self._report_codec_drop(result, event.topic)
        # Timeouts that this packet's arrival noticed.
        for drop in self._reassembler.expire():
            self._report_codec_drop(drop, None)

    def _report_codec_drop(self, drop: Dropped, topic: str | None) -> None:
        sender = drop.sender
        if drop.message_id is not None:
            key = (drop.sender, drop.message_id)
            if drop.reason is DropReason.DUPLICATE:  # one packet; its message goes on
                topic = self._pending_topics.get(key, topic)
                if sender is None:
                    sender = self._late_senders.get(drop.message_id)
            else:
                topic = self._pending_topics.pop(key, topic)
                if sender is None:
                    sender = self._late_senders.pop(drop.message_id, None)
        self._report(
            DataDropped(
                reason=drop_reason_from_codec(drop.reason),
                sender=sender,
                topic=topic,
                message_id=drop.message_id,
                bytes_dropped=drop.bytes_dropped,
                at=time.time(),
            )
        )

    def _report(self, drop: DataDropped) -> None:
        self._dropped[drop.reason] += 1
        self._bytes_dropped += drop.bytes_dropped
        logger.debug("dropped data: %s", drop)
        taken = False
        for subscription in list(self._drop_subs):
            if subscription._wants(drop):
                taken = subscription._offer(drop) or taken
        if not taken:
            self._drops_unreported += 1

    def _deliver(self, message: DataMessage) -> None:
        self._messages_received += 1
        self._bytes_received += len(message.payload)
        routed = False
        for subscription in list(self._message_subs):
            if not subscription._wants(message):
                continue
            routed = True
            if not subscription._offer(message):
                self._report(
                    DataDropped(
                        reason=DataDropReason.SUBSCRIBER_FULL,
                        sender=message.sender,
                        topic=message.topic,
                        message_id=None,
                        bytes_dropped=len(message.payload),
                        at=time.time(),
                    )
                )
        if not routed:
            self._unrouted += 1

    # -- receiving native data streams ---------------------------------------------------

    def _want_stream_topic(self, topic: str) -> None:
        count = self._stream_topic_refs.get(topic, 0)
        self._stream_topic_refs[topic] = count + 1
        room = self._session._room
        if count or room is None:
            return
        registrations: tuple[tuple[DataKind, Callable[[str, Any], None]], ...] = (
            (DataKind.TEXT_STREAM, room.register_text_stream_handler),
            (DataKind.BYTE_STREAM, room.register_byte_stream_handler),
        )
        for kind, register in registrations:
            handler = self._on_text_stream if kind is DataKind.TEXT_STREAM else self._on_byte_stream
            try:
                register(topic, handler)
            except ValueError:
                # The SDK takes one handler per topic, and someone else (the
                # application, another library) holds this one: leave it to them.
                logger.warning(
                    "native %s on topic %r already have a handler; lkkit does not "
                    "receive them (it still receives data packets on that topic)",
                    kind.value.replace("_", " ") + "s",
                    topic,
                )
            else:
                self._stream_handlers.add((topic, kind))

    def _unwant_stream_topic(self, topic: str) -> None:
        count = self._stream_topic_refs.get(topic, 0) - 1
        if count > 0:
            self._stream_topic_refs[topic] = count
            return
        self._stream_topic_refs.pop(topic, None)
        self._unregister_stream_handlers(topic)

    def _unregister_stream_handlers(self, topic: str) -> None:
        room = self._session._room
        if (topic, DataKind.TEXT_STREAM) in self._stream_handlers:
            self._stream_handlers.discard((topic, DataKind.TEXT_STREAM))
            if room is not None:
                room.unregister_text_stream_handler(topic)
        if (topic, DataKind.BYTE_STREAM) in self._stream_handlers:
            self._stream_handlers.discard((topic, DataKind.BYTE_STREAM))
            if room is not None:
                room.unregister_byte_stream_handler(topic)

    def _on_text_stream(self, reader: rtc.TextStreamReader, identity: str) -> None:
        self._start_stream(reader, identity, DataKind.TEXT_STREAM)

    def _on_byte_stream(self, reader: rtc.ByteStreamReader, identity: str) -> None:
        self._start_stream(reader, identity, DataKind.BYTE_STREAM)

    def _start_stream(self, reader: _StreamReader, identity: str, kind: DataKind) -> None:
        # Called by the SDK (sync) when a stream on one of our topics opens.
        if self._closed:
            reader.close()
            return
        if len(self._stream_tasks) >= self._options.max_pending_messages:
            reader.close()
            self._report(
                DataDropped(
                    reason=DataDropReason.OVER_BUDGET,
                    sender=identity or None,
                    topic=reader.info.topic,
                    message_id=None,
                    bytes_dropped=0,
                    at=time.time(),
                )
            )
            return
        task = asyncio.get_running_loop().create_task(self._read_stream(reader, identity, kind))
        self._stream_tasks.add(task)
        task.add_done_callback(self._stream_tasks.discard)

    async def _read_stream(self, reader: _StreamReader, identity: str, kind: DataKind) -> None:
        topic = reader.info.topic
        parts: list[bytes] = []
        held = 0
        try:
            reason = await self._read_stream_parts(reader, parts)
        finally:
            held = sum(len(part) for part in parts)
            self._stream_bytes -= held
            reader.close()
        if self._closed:
            return
        if reason is not None:
            self._report(
                DataDropped(
                    reason=reason,
                    sender=identity or None,
                    topic=topic,
                    message_id=None,
                    bytes_dropped=held,
                    at=time.time(),
                )
            )
            return
        room = self._session._room
        participant = room.remote_participants.get(identity) if room is not None else None
        self._streams_received += 1
        self._deliver(
            DataMessage(
                payload=b"".join(parts),
                topic=topic,
                sender=identity or None,
                participant=RemoteParticipant(participant) if participant is not None else None,
                reliability=DataReliability.RELIABLE,
                kind=kind,
                received_at=time.time(),
            )
        )

    async def _read_stream_parts(
        self, reader: _StreamReader, parts: list[bytes]
    ) -> DataDropReason | None:
        """Read `reader` into `parts`, counting the bytes held; why it stopped early."""
        cap = self._options.max_pending_bytes
        if (reader.info.size or 0) > cap:
            return DataDropReason.TOO_LARGE
        held = 0
        iterator = reader.__aiter__()
        try:
            while True:
                with anyio.fail_after(self._options.incomplete_timeout):
                    try:
                        chunk: str | bytes = await iterator.__anext__()
                    except StopAsyncIteration:
                        return None
                data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
                if held + len(data) > cap:
                    return DataDropReason.TOO_LARGE
                if self._stream_bytes + len(data) > cap:
                    return DataDropReason.OVER_BUDGET
                parts.append(data)
                held += len(data)
                self._stream_bytes += len(data)
        except TimeoutError:
            return DataDropReason.TIMEOUT
        except SdkStreamError as exc:
            logger.debug("native data stream on %r failed: %s", reader.info.topic, exc)
            return DataDropReason.STREAM_FAILED

    # -- the end -------------------------------------------------------------------------

    def _close(self) -> None:
        """End every subscription and stream reader; run once when the session ends."""
        if self._closed:
            return
        self._closed = True
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        for messages in self._message_subs:
            messages._end()
        for drops in self._drop_subs:
            drops._end()
        for task in list(self._stream_tasks):
            task.cancel()
        for topic, _ in list(self._stream_handlers):
            self._unregister_stream_handlers(topic)
        self._stream_topic_refs.clear()
        self._pending_topics.clear()
        self._late_senders.clear()
        self._reassembler = self._new_reassembler(self._options)  # frees partial buffers

    def __repr__(self) -> str:
        return (
            f"<DataChannel subscriptions={len(self._message_subs)} "
            f"pending={len(self._pending_topics) + len(self._stream_tasks)}>"
        )


def _accept_all(_: object) -> bool:
    return True


def _no_size(_: object) -> int:
    return 0
