"""Receiving LiveKit native data streams (text and byte streams) as whole messages.

The SDK dispatches a stream by its exact topic to the one handler registered for it.
lkkit registers a handler per topic some subscription names (reference counted), reads
each stream in a task the session owns, and hands the whole message (or a drop) on.
Handlers for topics named before the session connected are registered when the room
is bound, so a subscription entered before connect also receives streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
from livekit import rtc

from .._core import SessionCore
from .._participants import RemoteParticipant
from .._sdk_compat import SdkStreamError
from .._types import DataReliability
from ._types import DataDropped, DataDropReason, DataKind, DataMessage, DataOptions

__all__ = ["NativeStreamReceiver"]

logger = logging.getLogger("lkkit.data")

_StreamReader = rtc.TextStreamReader | rtc.ByteStreamReader


class NativeStreamReceiver:
    """The stream handlers of one session's data channel, and the streams being read."""

    def __init__(
        self,
        core: SessionCore,
        options: Callable[[], DataOptions],
        deliver: Callable[[DataMessage], None],
        report: Callable[[DataDropped], None],
    ) -> None:
        self._core = core
        self._options = options
        self._deliver = deliver
        self._report = report
        # How many subscriptions want each topic, and the (topic, kind) handlers lkkit
        # registered (another owner may hold a topic).
        self._topic_refs: dict[str, int] = {}
        self._handlers: set[tuple[str, DataKind]] = set()
        self._reading = 0
        self._bytes = 0
        self._closed = False
        self.received = 0
        core.on_bind(self._register_wanted)

    @property
    def pending_messages(self) -> int:
        """Streams being read now."""
        return self._reading

    @property
    def pending_bytes(self) -> int:
        """Bytes received by incomplete streams now."""
        return self._bytes

    # -- handlers by topic ---------------------------------------------------------------

    def want(self, topic: str) -> None:
        count = self._topic_refs.get(topic, 0)
        self._topic_refs[topic] = count + 1
        room = self._core.room_or_none
        if count == 0 and room is not None:
            self._register(room, topic)

    def unwant(self, topic: str) -> None:
        count = self._topic_refs.get(topic, 0) - 1
        if count > 0:
            self._topic_refs[topic] = count
            return
        self._topic_refs.pop(topic, None)
        self._unregister(topic)

    def _register_wanted(self, room: rtc.Room) -> None:
        for topic in self._topic_refs:
            self._register(room, topic)

    def _register(self, room: rtc.Room, topic: str) -> None:
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
                self._handlers.add((topic, kind))

    def _unregister(self, topic: str) -> None:
        room = self._core.room_or_none
        if (topic, DataKind.TEXT_STREAM) in self._handlers:
            self._handlers.discard((topic, DataKind.TEXT_STREAM))
            if room is not None:
                room.unregister_text_stream_handler(topic)
        if (topic, DataKind.BYTE_STREAM) in self._handlers:
            self._handlers.discard((topic, DataKind.BYTE_STREAM))
            if room is not None:
                room.unregister_byte_stream_handler(topic)

    # -- reading -------------------------------------------------------------------------

    def _on_text_stream(self, reader: rtc.TextStreamReader, identity: str) -> None:
        self._start(reader, identity, DataKind.TEXT_STREAM)

    def _on_byte_stream(self, reader: rtc.ByteStreamReader, identity: str) -> None:
        self._start(reader, identity, DataKind.BYTE_STREAM)

    def _start(self, reader: _StreamReader, identity: str, kind: DataKind) -> None:
        # Called by the SDK (sync) when a stream on one of our topics opens.
        if self._closed:
            reader.close()
            return
        if self._reading >= self._options().max_pending_messages:
            reader.close()
            self._drop(DataDropReason.OVER_BUDGET, identity, reader.info.topic, 0)
            return
        self._reading += 1
        self._core.spawn(self._read(reader, identity, kind), name="native stream reader")

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

    async def _read(self, reader: _StreamReader, identity: str, kind: DataKind) -> None:
        topic = reader.info.topic
        parts: list[bytes] = []
        try:
            reason = await self._read_parts(reader, parts)
        finally:
            self._reading -= 1
            self._bytes -= sum(len(part) for part in parts)
            reader.close()
        if self._closed:
            return
        if reason is not None:
            self._drop(reason, identity, topic, sum(len(part) for part in parts))
            return
        room = self._core.room_or_none
        participant = room.remote_participants.get(identity) if room is not None else None
        self.received += 1
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

    async def _read_parts(self, reader: _StreamReader, parts: list[bytes]) -> DataDropReason | None:
        """Read `reader` into `parts`, counting the bytes held; why it stopped early."""
        options = self._options()
        cap = options.max_pending_bytes
        if (reader.info.size or 0) > cap:
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
        """Unregister every handler; readers still running are cancelled by the session."""
        self._closed = True
        for topic, _ in list(self._handlers):
            self._unregister(topic)
        self._topic_refs.clear()
