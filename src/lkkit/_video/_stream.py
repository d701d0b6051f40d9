"""Received video: one remote track as a bounded subscription of numpy frames.

```python
async with session.video.stream(participant, format=lkkit.VideoFormat.RGB) as frames:
    async for frame in frames:                 # lkkit.VideoFrame
        print(frame.timestamp, frame.pixels.shape)
```

The native layer decodes and converts each frame to the chosen format; lkkit copies it
once into a numpy array and releases the native buffer. Frames come through the
per-loop stream router (one FFI subscription for all video streams). The buffer is
small (two frames by default) and drops the oldest: a slow reader gets the newest
frames and a `dropped` count, never a growing delay.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .._audio._ffi import StreamRouter, stream_router
from .._sdk_compat import drop_handle, handle_id, proto_ffi, proto_video
from .._subscription import OverflowPolicy, Subscription
from .._types import TrackSource
from ._formats import UInt8Array, VideoFormat, frame_bytes
from ._publisher import BUFFER_TYPES

if TYPE_CHECKING:
    from livekit import rtc

    from ._session_video import SessionVideo

__all__ = ["VideoFrame", "VideoStream"]


@dataclass(frozen=True, slots=True, eq=False)
class VideoFrame:
    """A received video frame.

    Attributes:
        pixels: uint8; `(height, width, channels)` for packed formats, the planes as
            one flat array for I420 and NV12.
        width: pixels.
        height: pixels.
        format: the pixel layout.
        timestamp: the frame's timestamp in seconds, as the native layer reports it
            (the receiver's clock, microsecond resolution).
        received_at: `time.monotonic()` when lkkit received the frame.
    """

    pixels: UInt8Array = field(repr=False)
    width: int
    height: int
    format: VideoFormat
    timestamp: float
    received_at: float


class VideoStream(Subscription[VideoFrame]):
    """Video received from one remote track, as [`VideoFrame`][lkkit.VideoFrame]s.

    Created by [`session.video.stream`][lkkit.SessionVideo.stream]; a
    [`Subscription`][lkkit.Subscription]: enter it with `async with` (that opens the
    native stream), read it with `async for`. Iteration ends (frames already
    received are yielded first) when the track is unsubscribed or unpublished, when
    its participant leaves, or when the session ends. Given a participant whose
    track is not subscribed yet, the stream waits until it is.
    """

    def __init__(
        self,
        video: SessionVideo,
        fmt: VideoFormat,
        size: tuple[int, int] | None,
        identity: str,
        source: TrackSource,
        *,
        buffer: int,
    ) -> None:
        super().__init__(
            buffer=buffer,
            overflow=OverflowPolicy.DROP_OLDEST,
            on_open=lambda _: self._open_native(),
            what=f"video stream of {identity!r}",
        )
        self._video = video
        self._format = fmt
        self._size = size
        self._identity = identity
        self._source = source
        self._track: rtc.Track | None = None
        self._sid = ""
        self._router: StreamRouter | None = None
        self._handle = 0
        self._frames = 0

    @property
    def format(self) -> VideoFormat:
        return self._format

    @property
    def size(self) -> tuple[int, int] | None:
        """The `(width, height)` frames are scaled to, or `None` for the sent size."""
        return self._size

    @property
    def frames_received(self) -> int:
        """Frames received from the native layer (read or dropped)."""
        return self._frames

    @property
    def participant_identity(self) -> str:
        """Identity of the participant whose track this stream reads."""
        return self._identity

    @property
    def track_sid(self) -> str:
        """The track's sid; empty while the stream waits for the track."""
        return self._sid

    # -- binding and opening -------------------------------------------------------------

    def _bind(self, track: rtc.Track, sid: str) -> None:
        if self.ended or self._track is not None:
            return
        self._track = track
        self._sid = sid
        self._video._streams.index(self)
        self._open_native()

    def _open_native(self) -> None:
        track = self._track
        if track is None or self._router is not None or not self._accepting:
            return
        request = proto_ffi.FfiRequest()
        new = request.new_video_stream
        new.track_handle = handle_id(track)
        new.type = proto_video.VideoStreamType.VIDEO_STREAM_NATIVE
        new.format = BUFFER_TYPES[self._format]
        new.normalize_stride = True
        router = stream_router(asyncio.get_running_loop(), "video")
        self._handle = router.open(request, self)
        self._router = router

    def _on_native_event(self, event: proto_video.VideoStreamEvent) -> None:
        # On the loop thread, routed by the StreamRouter.
        if event.HasField("frame_received"):
            received = event.frame_received
            owned = received.buffer
            info = owned.info
            width, height = info.width, info.height
            size = frame_bytes(self._format, width, height)
            try:
                data = ctypes.string_at(info.data_ptr, size)
            finally:
                drop_handle(owned.handle.id)
            pixels: UInt8Array = np.frombuffer(data, dtype=np.uint8)
            if self._format.packed:
                pixels = pixels.reshape(height, width, self._format.channels)
                if self._size is not None and self._size != (width, height):
                    pixels = _scale(pixels, *self._size)
                    width, height = self._size
            self._frames += 1
            self._offer(
                VideoFrame(
                    pixels,
                    width,
                    height,
                    self._format,
                    received.timestamp_us / 1_000_000,
                    time.monotonic(),
                )
            )
        elif event.HasField("eos"):
            self._end()

    # -- the end -------------------------------------------------------------------------

    def _end(self, error: BaseException | None = None) -> None:
        """No more frames arrive (buffered ones are still yielded); the native stream is
        released. Idempotent."""
        super()._end(error)
        self._video._streams.forget(self)
        router, self._router = self._router, None
        if router is not None:
            router.close(self._handle)

    def __repr__(self) -> str:
        state = "ended" if self.ended else ("open" if self._router else "waiting")
        return (
            f"<VideoStream {self._identity!r} {self._sid or '-'} {self._format.name} "
            f"{state} received={self._frames} dropped={self.dropped}>"
        )


def _scale(pixels: UInt8Array, width: int, height: int) -> UInt8Array:
    """Nearest-neighbour scaling of a packed frame to `width x height` (one copy)."""
    rows = np.arange(height) * pixels.shape[0] // height
    cols = np.arange(width) * pixels.shape[1] // width
    scaled: UInt8Array = pixels[rows[:, None], cols[None, :]]
    return scaled
