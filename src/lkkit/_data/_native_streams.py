"""Receiving LiveKit native data streams (text and byte streams) as whole messages.

The SDK dispatches a stream to the one handler registered for its exact topic and
drops the rest. lkkit takes every stream no one registered a handler for (through
`_sdk_compat.route_unclaimed_streams`), on any topic: a stream some subscription wants
is read in a task the session owns and handed on whole (or as a drop); one no
subscription wants is counted as unrouted and left unread. Topics the application
registered its own SDK handler for stay the application's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import anyio
from livekit import rtc

from .._core import SessionCore
from .._exceptions import StreamError
from .._participants import RemoteParticipant
from .._sdk_compat import (
    SdkStreamError,
    StreamHandler,
    route_unclaimed_streams,
    stream_topic_claimed,
    tap_room_events,
)
from .._types import DataReliability
from ._stream_io import IncomingStream
from ._types import DataDropped, DataDropReason, DataKind, DataMessage, DataOptions

__all__ = ["NativeStreamReceiver", "StreamSlot"]

# What an incremental reader's `StreamError` says when the stream did not end well.
_REASONS = {
    DataDropReason.TOO_LARGE: "the stream is larger than max_pending_bytes",
    DataDropReason.OVER_BUDGET: "the streams being read hold max_pending_bytes",
    DataDropReason.TIMEOUT: "no chunk arrived within incomplete_timeout",
    DataDropReason.STREAM_FAILED: "the sender aborted the stream, or the session ended",
    DataDropReason.SUBSCRIBER_FULL: "every reader fell behind",
}

logger = logging.getLogger("lkkit.data")

_StreamReader = rtc.TextStreamReader | rtc.ByteStreamReader


class StreamSlot:
    """A stream's place among its sender's messages, filled once it has been read."""

    __slots__ = ("done", "message", "on_fill")

    def __init__(self, on_fill: Callable[[], None]) -> None:
        self.done = False
        self.message: DataMessage | None = None
        self.on_fill = on_fill

    def fill(self, message: DataMessage | None) -> None:
        self.message, self.done = message, True
        self.on_fill()


class NativeStreamReceiver:
    """The native streams of one session's data channel: which it takes, and the
    streams being read."""

    def __init__(
        self,
        core: SessionCore,
        options: Callable[[], DataOptions],
        opened: Callable[[str], StreamSlot],
        report: Callable[[DataDropped], None],
        wants: Callable[[str], bool],
        stream_readers: Callable[[str], list[Callable[[IncomingStream[Any]], bool]]],
        unrouted: Callable[[], None],
    ) -> None:
        self._core = core
        self._options = options
        self._opened = opened
        self._report = report
        self._wants = wants
        self._stream_readers = stream_readers
        self._unrouted = unrouted
        self._restore: Callable[[], None] | None = None
        self._untap: Callable[[], None] | None = None
        # Places taken by stream headers, by stream id, until the stream opens.
        self._placed: dict[str, tuple[StreamSlot, asyncio.TimerHandle]] = {}
        self._reading = 0
        self._bytes = 0
        self._closed = False
        self.received = 0
        core.on_bind(self._bind)

    @property
    def pending_messages(self) -> int:
        """Streams being read now."""
        return self._reading

    @property
    def pending_bytes(self) -> int:
        """Bytes held by incomplete streams for whole-message subscriptions now."""
        return self._bytes

    def _bind(self, room: rtc.Room) -> None:
        if not self._closed:
            self._restore = route_unclaimed_streams(room, self._route)
            self._untap = tap_room_events(room, self._on_raw_event)

    def _on_raw_event(self, event: Any) -> None:
        # On the loop thread, in the connection's order: a header before the packets
        # sent after it (see the module's docstring).
        if self._closed or event.WhichOneof("message") != "stream_header_received":
            return
        received = event.stream_header_received
        header = received.header
        room = self._core.room_or_none
        if (
            room is None
            or header.stream_id in self._placed
            or not self._wants(header.topic)
            or stream_topic_claimed(room, header.topic)  # the application's own handler
        ):
            return
        slot = self._opened(received.participant_identity)
        # A header whose stream never opens (refused by the SDK) must not hold the
        # sender's later messages for ever.
        timer = asyncio.get_running_loop().call_later(
            self._options().incomplete_timeout, self._unplace, header.stream_id
        )
        self._placed[header.stream_id] = (slot, timer)

    def _unplace(self, stream_id: str) -> None:
        placed = self._placed.pop(stream_id, None)
        if placed is not None:
            placed[1].cancel()
            placed[0].fill(None)

    def _take_place(self, stream_id: str) -> StreamSlot | None:
        placed = self._placed.pop(stream_id, None)
        if placed is None:
            return None
        placed[1].cancel()
        return placed[0]

    def _route(self, topic: str, is_text: bool, stream_id: str) -> StreamHandler | None:
        # Called by the SDK's dispatch for a stream no handler was registered for.
        # Who wants it is decided here, once; the SDK calls the handler right away.
        if self._closed:
            return None
        whole = self._wants(topic)
        offers = self._stream_readers(topic)
        if not whole and not offers:
            self._unplace(stream_id)  # its subscription closed since the header came
            self._unrouted()
            return None  # the SDK disposes of it unread
        kind = DataKind.TEXT_STREAM if is_text else DataKind.BYTE_STREAM
        return functools.partial(self._start, kind=kind, whole=whole, offers=offers)

    # -- reading -------------------------------------------------------------------------

    def _start(
        self,
        reader: _StreamReader,
        identity: str,
        *,
        kind: DataKind,
        whole: bool,
        offers: list[Callable[[IncomingStream[Any]], bool]],
    ) -> None:
        # Called by the SDK (sync) as the stream `_route` took opens.
        topic = reader.info.topic
        options = self._options()
        placed = self._take_place(reader.info.stream_id)
        if self._reading >= options.max_pending_messages:
            reader.close()
            self._drop(DataDropReason.OVER_BUDGET, identity, topic, 0)
            if placed is not None:
                placed.fill(None)
            return
        room = self._core.room_or_none
        sdk_participant = room.remote_participants.get(identity) if room is not None else None
        participant = RemoteParticipant(sdk_participant) if sdk_participant is not None else None
        # Incremental readers: one IncomingStream (its own bounded buffer) each.
        consumers: list[IncomingStream[Any]] = []
        for offer in offers:
            stream = IncomingStream._open(
                reader.info,
                identity or None,
                participant,
                kind,
                time.time(),
                options.max_pending_bytes,
            )
            if offer(stream):
                consumers.append(stream)
        if not whole and not consumers:  # every stream subscription refused it
            reader.close()
            self._unrouted()
            if placed is not None:
                placed.fill(None)
            return
        self._reading += 1
        slot = None
        if whole:
            slot = placed if placed is not None else self._opened(identity)
        elif placed is not None:
            placed.fill(None)
        self._core.spawn(
            self._read(reader, identity, participant, kind, slot, consumers),
            name="native stream reader",
        )

    def _drop(self, reason: DataDropReason, identity: str, topic: str, held: int) -> None:
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

    async def _read(
        self,
        reader: _StreamReader,
        identity: str,
        participant: RemoteParticipant | None,
        kind: DataKind,
        slot: StreamSlot | None,
        consumers: list[IncomingStream[Any]],
    ) -> None:
        topic = reader.info.topic
        parts: list[bytes] | None = [] if slot is not None else None
        message = None
        reason: DataDropReason | None = DataDropReason.STREAM_FAILED
        try:
            reason = await self._read_parts(reader, parts, consumers)
        finally:
            held = sum(len(part) for part in parts or ())
            self._reading -= 1
            self._bytes -= held
            reader.close()
            attributes = reader.info.attributes or {}
            error = None if reason is None else StreamError(_REASONS[reason])
            for stream in consumers:
                stream._finish(error, attributes)
            if reason is None and not self._closed:
                self.received += 1
                if parts is not None:
                    message = DataMessage(
                        payload=b"".join(parts),
                        topic=topic,
                        sender=identity or None,
                        participant=participant,
                        reliability=DataReliability.RELIABLE,
                        kind=kind,
                        received_at=time.time(),
                        attributes=MappingProxyType(dict(attributes)),
                        name=getattr(reader.info, "name", None),
                        mime_type=reader.info.mime_type,
                    )
            elif reason is not None and not self._closed:
                self._drop(reason, identity, topic, held)
            if slot is not None:
                slot.fill(message)  # delivered in the sender's order, or nothing

    async def _read_parts(
        self,
        reader: _StreamReader,
        parts: list[bytes] | None,
        consumers: list[IncomingStream[Any]],
    ) -> DataDropReason | None:
        """Read `reader`: each chunk to the incremental readers, and into `parts` for
        whole-message subscriptions (`None`: none want it), counting the bytes held;
        why it stopped early."""
        options = self._options()
        cap = options.max_pending_bytes
        if parts is not None and (reader.info.size or 0) > cap:
            return DataDropReason.TOO_LARGE
        held = 0
        iterator = reader.__aiter__()
        try:
            while True:
                with anyio.fail_after(options.incomplete_timeout):
                    try:
                        chunk: str | bytes = await iterator.__anext__()
                    except StopAsyncIteration:
                        return None
                for stream in consumers:
                    stream._push(chunk)  # a reader too far behind fails alone
                if parts is None:
                    if consumers and all(stream._chunks.ended for stream in consumers):
                        return DataDropReason.SUBSCRIBER_FULL
                    continue
                data = chunk.encode("utf-8") if isinstance(chunk, str) else chunk
                if held + len(data) > cap:
                    return DataDropReason.TOO_LARGE
                if self._bytes + len(data) > cap:
                    return DataDropReason.OVER_BUDGET
                parts.append(data)
                held += len(data)
                self._bytes += len(data)
        except TimeoutError:
            return DataDropReason.TIMEOUT
        except SdkStreamError as exc:
            logger.debug("native data stream on %r failed: %s", reader.info.topic, exc)
            return DataDropReason.STREAM_FAILED

    def close(self) -> None:
        """Stop taking streams; readers still running are cancelled by the session."""
        self._closed = True
        if self._restore is not None:
            self._restore()
            self._restore = None
        if self._untap is not None:
            self._untap()
            self._untap = None
        for _, timer in self._placed.values():
            timer.cancel()
        self._placed.clear()
