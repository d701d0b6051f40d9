"""Native streams as they are produced and consumed: `DataStreamWriter` (an open
outgoing text or byte stream) and `IncomingStream` (a received stream, read chunk by
chunk while it arrives).

The SDK cuts what is written into chunks within the 15 KiB packet budget. A received
stream's chunks wait in a bounded buffer (the one subscription primitive, `FAIL` on
overflow): a consumer that falls more than `buffer_bytes` behind loses that stream
with `SubscriptionOverflow`, never the session's memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._exceptions import InvalidDataArgument, StreamError, map_sdk_exceptions
from .._participants import RemoteParticipant
from .._subscription import OverflowPolicy, Subscription
from ._types import DataKind

if TYPE_CHECKING:
    from livekit import rtc

__all__ = ["DataStreamWriter", "IncomingStream", "check_attributes"]

ChunkT = TypeVar("ChunkT", str, bytes)


def check_attributes(attributes: object) -> dict[str, str]:
    """A copy of `attributes` (`None`: empty), or `InvalidDataArgument`."""
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise InvalidDataArgument(f"attributes must map str to str, got {attributes!r}")
    return dict(attributes)


class DataStreamWriter(Generic[ChunkT]):
    """An open outgoing native stream: `write` chunks as they are produced, then it
    closes (the `async with` block's end, or `aclose()`).

    ```python
    async with session.data.open_text_stream(topic="lk.chat") as stream:
        async for token in llm:
            await stream.write(token)
    ```

    Readers see the chunks as they arrive (`IncomingStream.chunks()`, JS
    `reader` iteration). Leaving the block with an exception closes the stream with
    that reason, which receivers see as a failed stream.
    """

    def __init__(self, writer: rtc.TextStreamWriter | rtc.ByteStreamWriter, text: bool) -> None:
        self._writer = writer
        self._text = text
        self._closed = False
        self.bytes_written = 0
        """UTF-8 / raw bytes written so far."""

    @property
    def stream_id(self) -> str:
        return self._writer.info.stream_id

    @property
    def closed(self) -> bool:
        return self._closed

    async def write(self, chunk: ChunkT) -> None:
        """Send `chunk` now (a `str` for a text stream, bytes for a byte stream).

        Raises:
            InvalidDataArgument: the wrong type for this stream; nothing sent.
            StreamError: the stream is closed, or the SDK failed to send.
        """
        if self._text:
            if not isinstance(chunk, str):
                raise InvalidDataArgument(f"a text stream takes str, not {type(chunk).__name__}")
            size = len(chunk.encode("utf-8"))
        else:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidDataArgument(f"a byte stream takes bytes, not {type(chunk).__name__}")
            chunk = bytes(chunk)
            size = len(chunk)
        if self._closed:
            raise StreamError("the stream is closed")
        with map_sdk_exceptions():
            try:
                await self._writer.write(chunk)  # type: ignore[arg-type]
            except RuntimeError as exc:  # the SDK's "closed" / "not open"
                raise StreamError(str(exc)) from exc
        self.bytes_written += size

    async def aclose(
        self, *, reason: str = "", attributes: Mapping[str, str] | None = None
    ) -> None:
        """End the stream (idempotent). A non-empty `reason` marks it failed for
        readers; `attributes` reach them with the end."""
        if self._closed:
            return
        extra = check_attributes(attributes)
        self._closed = True
        with map_sdk_exceptions():
            try:
                await self._writer.aclose(reason=reason, attributes=extra or None)
            except RuntimeError as exc:
                raise StreamError(str(exc)) from exc

    async def __aenter__(self) -> DataStreamWriter[ChunkT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        reason = "" if exc is None else f"{type(exc).__name__}: {exc}"[:256]
        await self.aclose(reason=reason)


def _chunk_size(chunk: Any) -> int:
    return len(chunk)


@dataclass(eq=False)
class IncomingStream(Generic[ChunkT]):
    """A native stream being received, from
    [`session.data.streams()`][lkkit.DataChannel.streams]: read it chunk by chunk as
    it arrives, or whole.

    ```python
    async with session.data.streams("lk.chat") as streams:
        async for stream in streams:
            async for token in stream.chunks():
                print(token, end="")
    ```

    Attributes:
        topic: the topic it was sent on.
        sender: the sender's identity.
        participant: a live view of the sender, when this session knows it.
        kind: `TEXT_STREAM` (chunks are `str`) or `BYTE_STREAM` (`bytes`).
        stream_id: the sender's id for the stream.
        name: a byte stream's name (a file name), `""` for text.
        mime_type: what the sender declared.
        total_size: the size the sender declared, if it did.
        attributes: the sender's attributes (those sent with the end are added
            once the stream ended).
        opened_at: wall-clock time its header arrived.
    """

    topic: str
    sender: str | None
    participant: RemoteParticipant | None = field(repr=False)
    kind: DataKind
    stream_id: str
    name: str
    mime_type: str
    total_size: int | None
    attributes: Mapping[str, str]
    opened_at: float
    _chunks: Subscription[ChunkT] = field(repr=False)

    @classmethod
    def _open(
        cls,
        info: rtc.TextStreamInfo | rtc.ByteStreamInfo,
        sender: str | None,
        participant: RemoteParticipant | None,
        kind: DataKind,
        opened_at: float,
        buffer_bytes: int,
    ) -> IncomingStream[Any]:
        chunks: Subscription[Any] = Subscription(
            buffer=1 << 20,
            overflow=OverflowPolicy.FAIL,
            max_bytes=buffer_bytes,
            size_of=_chunk_size,
            what="stream",
        )
        chunks._open()
        return cls(
            topic=info.topic,
            sender=sender,
            participant=participant,
            kind=kind,
            stream_id=info.stream_id,
            name=getattr(info, "name", ""),
            mime_type=info.mime_type,
            total_size=info.size,
            attributes=MappingProxyType(dict(info.attributes or {})),
            opened_at=opened_at,
            _chunks=chunks,
        )

    async def chunks(self) -> AsyncIterator[ChunkT]:
        """The chunks in order, as they arrive; ends with the stream.

        Raises:
            StreamError: the stream failed (aborted by the sender, timed out, the
                session ended).
            SubscriptionOverflow: this reader fell more than its `buffer_bytes`
                behind the stream.
            SubscriptionBusy: another task is reading it.
        """
        async for chunk in self._chunks:
            yield chunk

    async def read(self) -> ChunkT:
        """The rest of the stream, whole (`str` for text, `bytes` for bytes)."""
        parts = [chunk async for chunk in self.chunks()]
        if self.kind is DataKind.TEXT_STREAM:
            return "".join(parts)  # type: ignore[arg-type, return-value]
        return b"".join(parts)  # type: ignore[arg-type, return-value]

    def _push(self, chunk: ChunkT) -> bool:
        """Buffer one chunk; `False` once this reader can take no more."""
        return self._chunks._offer(chunk)

    def _finish(self, error: BaseException | None, attributes: Mapping[str, str]) -> None:
        if attributes:
            self.attributes = MappingProxyType({**self.attributes, **attributes})
        self._chunks._end(error)

    async def aclose(self) -> None:
        """Stop reading; buffered chunks are discarded, later ones not kept."""
        await self._chunks.aclose()
