"""The data channel: sends messages of any size, routes received ones to subscriptions.

A payload that fits one packet (15,360 bytes) goes out unframed, byte-identical to
what a plain LiveKit SDK sends; a larger reliable one is split by the one chunk codec
(`lkkit._chunking`, specified in docs/wire-format.md) and reassembled by receiving
lkkit sessions. See docs/data.md for sizes, reliability, topics, destinations and what
is reported when something is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import mimetypes
import os
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from livekit import rtc

from .._chunking import MAX_PACKET_BYTES, encode_message, needs_framing
from .._core import SessionCore
from .._events import DataReceived, Event
from .._exceptions import (
    DataPermissionDenied,
    DataSendIncomplete,
    DataTooLarge,
    InvalidDataArgument,
    LkkitError,
    SessionStateError,
    map_sdk_exceptions,
)
from .._subscription import OverflowPolicy, Subscription, check_buffer
from .._types import DataReliability
from ._args import check_topic, destinations, payload_bytes, positive, topics
from ._native_streams import NativeStreamReceiver, StreamSlot
from ._packets import PacketReceiver
from ._stream_io import DataStreamWriter, IncomingStream, check_attributes
from ._types import (
    LOSSY_MTU_BYTES,
    DataDropped,
    DataDropReason,
    DataMessage,
    DataOptions,
    DataSent,
    DataStats,
)

__all__ = ["DataChannel", "DataSubscription"]

logger = logging.getLogger("lkkit.data")

# Payloads above this are split in a worker thread, so the event loop stays free.
_ENCODE_IN_THREAD_BYTES = 1024 * 1024
# Packets of one message in flight at once: enough to keep the native send queue fed
# without one FFI round trip per packet on the critical path, few enough to stay small.
_SEND_WINDOW = 8
_DEFAULT_BUFFER = 1024
_DEFAULT_BUFFER_BYTES = 128 * 1024 * 1024
# Packets held behind one sender's stream (15 KiB each at most): past this, they go on
# out of order rather than grow without bound.
_MAX_HELD_PACKETS = 1024
# What `send_file` reads and writes at a time: one chunk of the SDK's streams.
_FILE_CHUNK_BYTES = 15_000

T_co = TypeVar("T_co", covariant=True)


class DataSubscription(Subscription[T_co]):
    """Whole data messages on some topics (or all), or drop reports: a
    [`Subscription`][lkkit.Subscription] (`async with`, then `async for`).

    ```python
    async with session.data.messages("chat") as messages:
        async for message in messages:
            print(message.sender, message.text)
    ```

    It receives what arrives after `async with` entered, and ends (the `async for`
    stops, after what is already buffered) when the session ends or the block exits.
    When its buffer is full (`buffer` items, or `buffer_bytes` of payload), the
    overflow policy applies: by default the oldest message is dropped and reported as
    a `SUBSCRIBER_FULL` drop; other subscribers are unaffected.
    """

    def __init__(
        self,
        channel: DataChannel,
        *,
        topics: frozenset[str] | None,
        drops: bool,
        buffer: int,
        streams: bool = False,
        buffer_bytes: int | None,
        overflow: OverflowPolicy,
    ) -> None:
        super().__init__(
            buffer=buffer,
            overflow=overflow,
            max_bytes=buffer_bytes,
            size_of=_message_size if not (drops or streams) else _no_size,
            on_open=channel._attach,
            on_close=channel._detach,
            on_drop=None if drops else channel._subscriber_dropped,
            what="data drop subscription" if drops else "data subscription",
        )
        self._topics = topics
        self._drops = drops
        self._streams = streams

    @property
    def topics(self) -> frozenset[str] | None:
        """The topics this subscription receives; `None` for all."""
        return self._topics

    def _wants_topic(self, topic: str) -> bool:
        return self._accepting and (self._topics is None or topic in self._topics)


def _absent(room: rtc.Room | None, identities: tuple[str, ...] | None) -> tuple[str, ...]:
    """The destinations this session does not see in the room (the server skips them)."""
    if identities is None:
        return ()
    return tuple(d for d in identities if room is None or d not in room.remote_participants)


def _message_size(message: Any) -> int:
    return len(message.payload) if isinstance(message, DataMessage) else 0


def _no_size(_: object) -> int:
    return 0


def _nothing() -> None:
    pass


class DataChannel:
    """A session's data messages; get it as [`session.data`][lkkit.Session.data].

    Sends and receives messages of any size on topics, reports what it drops, and
    keeps counters ([`stats`][lkkit.DataChannel.stats]). It starts receiving when it
    is first used, and ends with the session.
    """

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self._options = DataOptions()
        self._send_lock = asyncio.Lock()
        self._message_subs: list[DataSubscription[DataMessage]] = []
        self._stream_subs: list[DataSubscription[IncomingStream[Any]]] = []
        self._drop_subs: list[DataSubscription[DataDropped]] = []
        self._packets = PacketReceiver(self._options, self._deliver, self._report)
        self._streams = NativeStreamReceiver(
            core,
            lambda: self._options,
            self._stream_opened,
            self._report,
            wants=self._wants_topic,
            stream_readers=self._stream_readers,
            unrouted=self._count_unrouted,
        )
        # Per sender, while one of its streams is being read: that stream and what
        # came after it (reliable packets, later streams), delivered in that order.
        self._in_order: dict[str, collections.deque[StreamSlot | DataReceived]] = {}
        self._held_packets = 0
        # Times incomplete chunked messages out while packets are quiet.
        self._expiry: asyncio.Task[None] | None = None
        self._closed = False
        # counters
        self._messages_sent = 0
        self._packets_sent = 0
        self._bytes_sent = 0
        self._lossy_over_mtu = 0
        self._messages_received = 0
        self._bytes_received = 0
        self._unrouted = 0
        self._dropped = dict.fromkeys(DataDropReason, 0)
        self._bytes_dropped = 0
        self._drops_unreported = 0
        self._remove_listener: Callable[[], None] = _nothing
        if core.closed:
            self._close()
        else:
            # Packets come from the session's one event registry, in SDK order.
            self._remove_listener = core.bus.add_listener(self._on_event)
            core.on_close(self._close)

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
        if self._packets.pending or self._streams.pending_messages:
            raise SessionStateError(
                "cannot change data limits while incomplete messages are being received"
            )
        self._options = options
        self._packets.reset(options)

    @property
    def stats(self) -> DataStats:
        """The counters now."""
        return DataStats(
            messages_sent=self._messages_sent,
            packets_sent=self._packets_sent,
            bytes_sent=self._bytes_sent,
            lossy_over_mtu_sent=self._lossy_over_mtu,
            messages_received=self._messages_received,
            bytes_received=self._bytes_received,
            chunked_received=self._packets.chunked_received,
            streams_received=self._streams.received,
            messages_unrouted=self._unrouted,
            dropped=MappingProxyType(dict(self._dropped)),
            bytes_dropped=self._bytes_dropped,
            drops_unreported=self._drops_unreported,
            pending_messages=self._packets.pending_messages + self._streams.pending_messages,
            pending_bytes=self._packets.pending_bytes + self._streams.pending_bytes,
        )

    # -- sending -------------------------------------------------------------------------

    async def send(
        self,
        payload: bytes | bytearray | memoryview | str,
        *,
        topic: str = "",
        reliable: bool = True,
        to: Iterable[str] | None = None,
        native_stream: bool | None = None,
    ) -> DataSent:
        """Send one message to everyone in the room, or to the identities in `to`.

        Every check runs before anything leaves. A payload of at most 15,360 bytes
        goes as one packet, byte-identical; a larger reliable one goes as a LiveKit
        native stream (a text stream for a `str`, a byte stream otherwise), which
        every LiveKit SDK receives whole with its stream handlers (JS
        `registerTextStreamHandler` / `registerByteStreamHandler`, ...). Reliable
        messages of one session leave in the order their `send` calls began (sends
        wait for each other); lossy ones do not wait. See the data page for what
        each wire gives and which order receivers see.

        Args:
            payload: the bytes to send; a `str` is sent as UTF-8.
            topic: what receivers filter on; `""` (the default) is LiveKit's "no
                topic". At most 256 UTF-8 bytes.
            reliable: retried and ordered (the default), or sent once (lossy: at most
                `options.lossy_max_bytes`, one packet, may be lost or reordered).
            to: identities to send to; `None` for everyone. Identities not in the
                room are skipped by the server without error; the result lists
                those this session could not see.
            native_stream: `None` (the default): one packet when the payload fits,
                else a native stream. `True`: a native stream whatever the size.
                `False`: one packet, or, when larger, lkkit's own chunk format
                (integrity-checked and ordered with packets, but only lkkit
                sessions can read it). Streams are reliable only.

        Raises:
            InvalidDataArgument: a wrong payload, topic or `to` type or value, or
                lossy with `native_stream`.
            DataTooLarge: a lossy payload above `options.lossy_max_bytes`.
            DataPermissionDenied: the local participant lacks `canPublishData`.
            NotConnected: the session is not connected, or its reconnection failed
                (a reliable send waits while the session reconnects).
            PublishError: the SDK refused the first (or only) packet.
            DataSendIncomplete: a chunked message failed after some packets left.
            StreamError: a native stream send failed.
        """
        data = payload_bytes(payload)
        topic = check_topic(topic)
        if not isinstance(reliable, bool):
            raise InvalidDataArgument(f"reliable must be a bool, got {reliable!r}")
        if native_stream is not None and not isinstance(native_stream, bool):
            raise InvalidDataArgument(
                f"native_stream must be None, True or False, got {native_stream!r}"
            )
        identities = destinations(to)
        if native_stream is True and not reliable:
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
        room = self._publishing_room()
        absent = _absent(room, identities)
        send_to = list(identities) if identities is not None else []

        if native_stream is None:
            native_stream = reliable and (len(data) > MAX_PACKET_BYTES or needs_framing(data))
        if native_stream:
            async with self._send_lock:
                room = await self._core.wait_until_sendable()
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
            # While the session reconnects, wait for the outcome (a failed one is
            # NotConnected, not the SDK's generic "engine is closed").
            room = await self._core.wait_until_sendable()
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
        buffer: int = _DEFAULT_BUFFER,
        buffer_bytes: int = _DEFAULT_BUFFER_BYTES,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> DataSubscription[DataMessage]:
        """Subscribe to whole messages on one topic, several, or all (`None`).

        ```python
        async with session.data.messages("chat") as messages:
            async for message in messages: ...
        ```

        Messages arriving after `async with` entered are buffered (at most `buffer`
        messages and `buffer_bytes` payload bytes; when full, `overflow` applies: by
        default the oldest buffered message is dropped and reported as a
        `SUBSCRIBER_FULL` drop, for this subscriber only). LiveKit native text and
        byte streams arrive here whole, on every topic, like packets (except topics
        the application registered its own handler for on `session.room`); a stream
        no subscription wants is counted in `stats.messages_unrouted`, unread.

        Raises:
            InvalidDataArgument: a topic that is not a `str` (or is too long), an
                empty collection, or a non-positive bound.
            ConfigurationError: an unknown overflow policy.
        """
        chosen = topics(topic)
        positive("buffer", buffer)
        positive("buffer_bytes", buffer_bytes)
        buffer, policy = check_buffer(buffer, overflow)
        return DataSubscription(
            self,
            topics=chosen,
            drops=False,
            buffer=buffer,
            buffer_bytes=buffer_bytes,
            overflow=policy,
        )

    def streams(
        self, topic: str | Iterable[str] | None = None, *, buffer: int = _DEFAULT_BUFFER
    ) -> DataSubscription[IncomingStream[Any]]:
        """Subscribe to native streams as they open, to read each chunk by chunk while
        it arrives (an LLM's tokens, a large file) rather than whole.

        ```python
        async with session.data.streams("lk.chat") as streams:
            async for stream in streams:
                async for token in stream.chunks():
                    print(token, end="")
        ```

        Each stream subscription gets its own [`IncomingStream`][lkkit.IncomingStream]
        per stream, with a buffer of at most `options.max_pending_bytes`: a reader
        that falls further behind loses that stream (`SubscriptionOverflow`), the
        others go on. Whole-message subscriptions (`messages`) on the same topic
        still get the stream whole. Packets are not streams: they come only through
        `messages`.

        Raises:
            InvalidDataArgument: a topic that is not a `str` (or is too long), an
                empty collection, or a non-positive bound.
        """
        chosen = topics(topic)
        positive("buffer", buffer)
        return DataSubscription(
            self,
            topics=chosen,
            drops=False,
            streams=True,
            buffer=buffer,
            buffer_bytes=None,
            overflow=OverflowPolicy.DROP_OLDEST,
        )

    async def open_text_stream(
        self,
        *,
        topic: str = "",
        to: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        total_size: int | None = None,
    ) -> DataStreamWriter[str]:
        """Open a native text stream to write as the text is produced (every LiveKit
        SDK reads it: JS `registerTextStreamHandler`).

        ```python
        async with await session.data.open_text_stream(topic="lk.chat") as stream:
            async for token in llm:
                await stream.write(token)
        ```

        Raises:
            InvalidDataArgument: a wrong topic, `to`, attributes or `total_size`.
            DataPermissionDenied: the local participant lacks `canPublishData`.
            NotConnected: the session is not connected, or its reconnection failed
                (a reliable send waits while the session reconnects).
            StreamError: the SDK could not open the stream.
        """
        topic, send_to, extra = self._stream_args(topic, to, attributes, total_size)
        self._publishing_room()
        room = await self._core.wait_until_sendable()
        with map_sdk_exceptions():
            writer = await room.local_participant.stream_text(
                destination_identities=send_to,
                topic=topic,
                attributes=extra or None,
                total_size=total_size,
            )
        return DataStreamWriter(writer, text=True)

    async def open_byte_stream(
        self,
        *,
        topic: str = "",
        name: str = "",
        mime_type: str = "application/octet-stream",
        to: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        total_size: int | None = None,
    ) -> DataStreamWriter[bytes]:
        """Open a native byte stream to write as the bytes are produced (JS
        `registerByteStreamHandler`); `name` and `mime_type` reach the receivers.

        Raises:
            InvalidDataArgument: a wrong topic, name, MIME type, `to`, attributes or
                `total_size`.
            DataPermissionDenied: the local participant lacks `canPublishData`.
            NotConnected: the session is not connected, or its reconnection failed
                (a reliable send waits while the session reconnects).
            StreamError: the SDK could not open the stream.
        """
        topic, send_to, extra = self._stream_args(topic, to, attributes, total_size)
        for label, value in (("name", name), ("mime_type", mime_type)):
            if not isinstance(value, str):
                raise InvalidDataArgument(f"{label} must be a str, got {value!r}")
        self._publishing_room()
        room = await self._core.wait_until_sendable()
        with map_sdk_exceptions():
            writer = await room.local_participant.stream_bytes(
                name,
                total_size=total_size,
                mime_type=mime_type or "application/octet-stream",
                attributes=extra or None,
                destination_identities=send_to,
                topic=topic,
            )
        return DataStreamWriter(writer, text=False)

    async def send_file(
        self,
        path: str | os.PathLike[str],
        *,
        topic: str = "",
        name: str | None = None,
        mime_type: str | None = None,
        to: Iterable[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> DataSent:
        """Send a file as a native byte stream with its name and MIME type, read and
        sent a chunk at a time (memory stays flat whatever its size).

        Args:
            path: the file.
            name: what receivers see as its name; default: the file's own name.
            mime_type: default: guessed from the name, else
                `application/octet-stream`.
            on_progress: called as `on_progress(bytes_sent, total_bytes)` after each
                chunk left.

        Raises:
            InvalidDataArgument: not a readable regular file, or a wrong argument;
                nothing sent.
            DataPermissionDenied, NotConnected, StreamError: as `open_byte_stream`.
        """
        identities = destinations(to)
        file_path = anyio.Path(path)
        if not await file_path.is_file():
            raise InvalidDataArgument(f"not a file: {str(file_path)!r}")
        if on_progress is not None and not callable(on_progress):
            raise InvalidDataArgument("on_progress must be callable")
        name = file_path.name if name is None else name
        if mime_type is None:
            mime_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        total = (await file_path.stat()).st_size
        try:
            handle = await file_path.open("rb")
        except OSError as exc:
            raise InvalidDataArgument(f"cannot read {str(file_path)!r}: {exc}") from exc
        async with handle:
            stream = await self.open_byte_stream(
                topic=topic,
                name=name,
                mime_type=mime_type,
                to=identities,
                attributes=attributes,
                total_size=total,
            )
            async with stream:
                while chunk := await handle.read(_FILE_CHUNK_BYTES):
                    await stream.write(chunk)
                    if on_progress is not None:
                        on_progress(stream.bytes_written, total)
        self._count_sent(stream.bytes_written, 0)
        return DataSent(
            stream.bytes_written, None, None, _absent(self._core.room_or_none, identities)
        )

    def _stream_args(
        self,
        topic: object,
        to: object,
        attributes: object,
        total_size: object,
    ) -> tuple[str, list[str], dict[str, str]]:
        checked_topic = check_topic(topic)
        identities = destinations(to)
        extra = check_attributes(attributes)
        if total_size is not None and (
            not isinstance(total_size, int) or isinstance(total_size, bool) or total_size < 0
        ):
            raise InvalidDataArgument(f"total_size must be an int >= 0, got {total_size!r}")
        return checked_topic, list(identities) if identities is not None else [], extra

    def _publishing_room(self) -> rtc.Room:
        room = self._core.require_connected()
        if not room.local_participant.permissions.can_publish_data:
            raise DataPermissionDenied(
                f"participant {room.local_participant.identity!r} may not publish data "
                "(its token or permissions lack canPublishData); the server would drop it"
            )
        return room

    def drops(self, *, buffer: int = _DEFAULT_BUFFER) -> DataSubscription[DataDropped]:
        """Subscribe to reports of received data thrown away (see `DataDropReason`).

        ```python
        async with session.data.drops() as drops:
            async for drop in drops:
                log.warning("lost %s from %s: %s", drop.topic, drop.sender, drop.reason)
        ```

        Drops no subscription takes are still counted in
        [`stats`][lkkit.DataChannel.stats]; a full drop subscription loses its oldest
        reports (counted in its `dropped`).
        """
        positive("buffer", buffer)
        return DataSubscription(
            self,
            topics=None,
            drops=True,
            buffer=buffer,
            buffer_bytes=None,
            overflow=OverflowPolicy.DROP_OLDEST,
        )

    def _attach(self, subscription: Subscription[Any]) -> None:
        assert isinstance(subscription, DataSubscription)
        if self._closed:
            subscription._end()
            return
        if subscription._drops:
            self._drop_subs.append(subscription)
        elif subscription._streams:
            self._stream_subs.append(subscription)
        else:
            self._message_subs.append(subscription)

    def _detach(self, subscription: Subscription[Any]) -> None:
        if subscription in self._message_subs:
            assert isinstance(subscription, DataSubscription)
            self._message_subs.remove(subscription)
        elif subscription in self._drop_subs:
            self._drop_subs.remove(subscription)
        elif subscription in self._stream_subs:
            self._stream_subs.remove(subscription)

    # -- receiving ---------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, DataReceived) and not self._closed:
            queue = self._in_order.get(event.sender_identity or "")
            if (
                queue is not None
                and event.reliability is DataReliability.RELIABLE
                and self._held_packets < _MAX_HELD_PACKETS
            ):
                queue.append(event)
                self._held_packets += 1
                return
            self._take_packet(event)

    def _stream_opened(self, sender: str) -> StreamSlot:
        slot = StreamSlot(lambda: self._flush(sender))
        self._in_order.setdefault(sender, collections.deque()).append(slot)
        return slot

    def _flush(self, sender: str) -> None:
        # Deliver from the front of the sender's queue up to a stream still being read.
        queue = self._in_order.get(sender)
        while queue and not self._closed:
            item = queue[0]
            if isinstance(item, StreamSlot):
                if not item.done:
                    return
                queue.popleft()
                if item.message is not None:
                    self._deliver(item.message)
            else:
                queue.popleft()
                self._held_packets -= 1
                self._take_packet(item)
        self._in_order.pop(sender, None)

    def _take_packet(self, event: DataReceived) -> None:
        try:
            self._packets.on_packet(event)
        except Exception:  # never let one packet break the SDK's dispatch
            logger.exception("lkkit could not process a data packet")
        if self._packets.pending and (self._expiry is None or self._expiry.done()):
            self._expiry = self._core.spawn(self._expire_while_pending(), name="data expiry")

    async def _expire_while_pending(self) -> None:
        # One timer per session, only while an incomplete message is held: a stalled
        # message is reported within a quarter of its timeout.
        while self._packets.pending and not self._closed:
            await anyio.sleep(max(0.05, min(1.0, self._options.incomplete_timeout / 4)))
            self._packets.expire()

    def _report(self, drop: DataDropped) -> None:
        self._dropped[drop.reason] += 1
        self._bytes_dropped += drop.bytes_dropped
        logger.debug("dropped data: %s", drop)
        taken = False
        for subscription in list(self._drop_subs):
            taken = subscription._offer(drop) or taken
        if not taken:
            self._drops_unreported += 1

    def _subscriber_dropped(self, message: Any) -> None:
        # A full subscription dropped its oldest message to take a new one.
        assert isinstance(message, DataMessage)
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

    def _wants_topic(self, topic: str) -> bool:
        return any(sub._wants_topic(topic) for sub in self._message_subs)

    def _stream_readers(self, topic: str) -> list[Callable[[IncomingStream[Any]], bool]]:
        return [sub._offer for sub in self._stream_subs if sub._wants_topic(topic)]

    def _count_unrouted(self) -> None:
        self._unrouted += 1

    def _deliver(self, message: DataMessage) -> None:
        self._messages_received += 1
        self._bytes_received += len(message.payload)
        routed = False
        for subscription in list(self._message_subs):
            if subscription._wants_topic(message.topic):
                routed = True
                subscription._offer(message)
        if not routed:
            self._unrouted += 1

    # -- the end -------------------------------------------------------------------------

    def _close(self) -> None:
        """End every subscription and stream reader; run once when the session ends."""
        if self._closed:
            return
        self._closed = True
        self._remove_listener()
        for subscription in [*self._message_subs, *self._drop_subs, *self._stream_subs]:
            subscription._end()
        self._streams.close()
        self._in_order.clear()
        self._packets.reset(self._options)  # frees partial buffers

    def __repr__(self) -> str:
        pending = self._packets.pending_messages + self._streams.pending_messages
        return f"<DataChannel subscriptions={len(self._message_subs)} pending={pending}>"
