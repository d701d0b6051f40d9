"""The video publisher: a published track fed with numpy frames, paced to its frame rate.

```python
async with session.video.publish("robot-cam", width=1280, height=720, fps=30) as pub:
    while True:
        await pub.write(render())          # (720, 1280, 4) uint8 RGBA
```

Pacing: frame n is due at `start + n / fps`. A frame written early waits for its
slot; a frame written late goes at once and the schedule restarts from it, so a late
frame is never followed by a burst (nor sent twice) to catch up. Each capture is one
synchronous FFI request that reads the numpy array in place and converts it to I420
natively: nothing is copied in Python, and the array may be reused once `write`
returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import numpy.typing as npt
from livekit import rtc

from .._core import SessionCore
from .._exceptions import NotConnected, SessionStateError
from .._participants import TrackPublication
from .._sdk_compat import dispose_handle, ffi_request, handle_id, proto_ffi, proto_video
from .._types import TrackSource, track_source_to_sdk
from ._formats import VideoCodec, VideoFormat, VideoPreset, check_frame, plane_sizes

if TYPE_CHECKING:
    from ._session_video import SessionVideo

__all__ = ["VideoPublisher"]

logger = logging.getLogger("lkkit")

_UNPUBLISH_TIMEOUT_S = 5.0

BUFFER_TYPES = {
    # The SDK's buffer type of each format (publishing and received streams).
    VideoFormat.RGBA: proto_video.VideoBufferType.RGBA,
    VideoFormat.BGRA: proto_video.VideoBufferType.BGRA,
    VideoFormat.ARGB: proto_video.VideoBufferType.ARGB,
    VideoFormat.ABGR: proto_video.VideoBufferType.ABGR,
    VideoFormat.RGB: proto_video.VideoBufferType.RGB24,
    VideoFormat.I420: proto_video.VideoBufferType.I420,
    VideoFormat.NV12: proto_video.VideoBufferType.NV12,
}

_CODECS = {
    VideoCodec.VP8: proto_video.VideoCodec.VP8,
    VideoCodec.H264: proto_video.VideoCodec.H264,
    VideoCodec.VP9: proto_video.VideoCodec.VP9,
    VideoCodec.AV1: proto_video.VideoCodec.AV1,
    VideoCodec.H265: proto_video.VideoCodec.H265,
}


class VideoPublisher:
    """A published video track fed with numpy frames; use it as an `async with` block.

    Created by [`session.video.publish`][lkkit.SessionVideo.publish]. Entering
    publishes the track, leaving unpublishes it. `write` paces frames to `fps`;
    concurrent writers are serialised.
    """

    def __init__(
        self,
        video: SessionVideo,
        name: str,
        *,
        width: int,
        height: int,
        fps: float,
        fmt: VideoFormat,
        source: TrackSource,
        preset: VideoPreset,
        simulcast: bool,
        codec: VideoCodec,
    ) -> None:
        self._video = video
        self._core: SessionCore = video._core
        self._name = name
        self._width = width
        self._height = height
        self._fps = fps
        self._period = 1.0 / fps
        self._format = fmt
        self._source_kind = source
        self._preset = preset
        self._simulcast = simulcast
        self._codec = codec
        self._opened = False
        self._closed = False
        self._source: rtc.VideoSource | None = None
        self._track: rtc.LocalVideoTrack | None = None
        self._publication: rtc.LocalTrackPublication | None = None
        self._lock = asyncio.Lock()
        self._next_due: float | None = None
        self._started = 0.0
        self._frames_written = 0
        self._frames_late = 0
        # One request, reused: a capture only changes its pointers and timestamp.
        self._request = proto_ffi.FfiRequest()
        self._request.capture_video_frame.rotation = proto_video.VideoRotation.VIDEO_ROTATION_0
        buffer = self._request.capture_video_frame.buffer
        buffer.type = BUFFER_TYPES[fmt]
        buffer.width = width
        buffer.height = height
        self._planes = plane_sizes(fmt, width, height)

    # -- properties ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def format(self) -> VideoFormat:
        return self._format

    @property
    def source(self) -> TrackSource:
        return self._source_kind

    @property
    def preset(self) -> VideoPreset:
        """The encoding the track was published with (bitrate and frame-rate caps)."""
        return self._preset

    @property
    def frames_written(self) -> int:
        """Frames handed to the native source."""
        return self._frames_written

    @property
    def frames_late(self) -> int:
        """Frames written after their slot had passed by more than one frame period
        (each went at once and restarted the schedule)."""
        return self._frames_late

    @property
    def publication(self) -> TrackPublication:
        """The published track, while it is: read it inside the `async with` block.

        Raises:
            SessionStateError: before the block is entered, or once the track is
                unpublished (the block left, `aclose()`, or the session ended).
        """
        if self._publication is None:
            raise SessionStateError(
                "the video track is not published "
                + ("any more" if self._closed else "yet (enter the block)")
            )
        return TrackPublication(self._publication)

    @property
    def muted(self) -> bool:
        """Whether the track is muted (see [`mute`][lkkit.VideoPublisher.mute])."""
        return self.publication.muted

    async def mute(self) -> None:
        """Mute the track: peers get `TrackMuted` and no more frames; it stays published
        and writes go on being paced. Idempotent.

        Raises:
            TrackNotPublished: the track is no longer published.
            SessionStateError: the block was not entered yet.
        """
        await self.publication.mute()

    async def unmute(self) -> None:
        """Unmute the track: peers get `TrackUnmuted` and its frames again. Idempotent."""
        await self.publication.unmute()

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> VideoPublisher:
        if self._opened:
            raise SessionStateError("a video publisher can be entered once")
        self._core.require_connected()
        self._opened = True
        self._video._publishers.add(self)
        self._source = rtc.VideoSource(
            self._width,
            self._height,
            is_screencast=self._source_kind is TrackSource.SCREEN_SHARE,
        )
        self._request.capture_video_frame.source_handle = handle_id(self._source)
        try:
            self._track = rtc.LocalVideoTrack.create_video_track(self._name, self._source)
            self._publication = await self._core.publish_track(self._track, self._options())
        except BaseException:
            await self._release(unpublish=False)
            raise
        self._started = time.monotonic()
        return self

    def _options(self) -> rtc.TrackPublishOptions:
        return rtc.TrackPublishOptions(
            source=track_source_to_sdk(self._source_kind),
            simulcast=self._simulcast,
            video_codec=_CODECS[self._codec],
            video_encoding=rtc.VideoEncoding(
                max_bitrate=self._preset.max_bitrate,
                max_framerate=min(self._preset.max_framerate, self._fps),
            ),
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._release(unpublish=True)

    async def aclose(self) -> None:
        """Unpublish the track. Idempotent."""
        await self._release(unpublish=True)

    async def _release(self, *, unpublish: bool) -> None:
        self._closed = True
        with anyio.CancelScope(shield=True):
            publication, self._publication = self._publication, None
            if unpublish and publication is not None and self._core.is_connected:
                with anyio.move_on_after(_UNPUBLISH_TIMEOUT_S):
                    try:
                        await self._core.unpublish_track(publication.sid)
                    except Exception:
                        logger.exception("unpublishing video track %r failed", self._name)
            self._free_native()

    def _free_native(self) -> None:
        self._video._publishers.discard(self)
        if self._source is not None:
            dispose_handle(self._source)
        self._source = None

    def _on_session_closed(self) -> None:
        self._closed = True
        self._publication = None
        self._free_native()

    # -- writing -------------------------------------------------------------------------

    async def write(self, frame: npt.NDArray[Any], *, timestamp: float | None = None) -> None:
        """Send `frame` in its slot: wait if it is early, go at once if it is late.

        Args:
            frame: a uint8 array of the publisher's format and size (see
                [`VideoFormat`][lkkit.VideoFormat]). Read in place; reusable once
                `write` returns.
            timestamp: the frame's capture time in seconds (any monotonic origin);
                by default the time since the track was published.

        Raises:
            VideoFrameError: not a uint8 array of the publisher's format and size
                (checked before anything is sent or waited for).
            NotConnected: the publisher is closed or its session ended.
            SessionStateError: the block was not entered yet.
        """
        pixels = check_frame(frame, self._format, self._width, self._height)
        self._require_open()
        async with self._lock:
            now = time.monotonic()
            due = now if self._next_due is None else self._next_due
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > self._period:
                self._frames_late += 1
                due = now  # restart the schedule: no burst to catch up
            self._require_open()  # it may have closed while this frame waited
            self._capture(pixels, timestamp)
            self._next_due = due + self._period

    def write_now(self, frame: npt.NDArray[Any], *, timestamp: float | None = None) -> None:
        """Send `frame` at once, outside the pacing (for a caller with its own clock).

        Raises:
            VideoFrameError: as [`write`][lkkit.VideoPublisher.write].
            NotConnected: the publisher is closed or its session ended.
        """
        pixels = check_frame(frame, self._format, self._width, self._height)
        self._require_open()
        self._capture(pixels, timestamp)

    def _require_open(self) -> None:
        if not self._opened:
            raise SessionStateError("enter the publisher's `async with` block first")
        if self._closed or self._source is None:
            raise NotConnected("the video publisher is closed (or its session ended)")

    def _capture(self, pixels: npt.NDArray[Any], timestamp: float | None) -> None:
        capture = self._request.capture_video_frame
        buffer = capture.buffer
        address = pixels.ctypes.data
        buffer.data_ptr = address
        if self._format.packed:
            buffer.stride = pixels.strides[0]
        else:
            del buffer.components[:]
            for stride, size in self._planes:
                plane = buffer.components.add()
                plane.data_ptr, plane.stride, plane.size = address, stride, size
                address += size
        seconds = time.monotonic() - self._started if timestamp is None else timestamp
        capture.timestamp_us = max(1, int(seconds * 1_000_000))
        ffi_request(self._request)  # synchronous: the array is read before it returns
        self._frames_written += 1

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._opened else "new")
        return (
            f"<VideoPublisher {self._name!r} {self._width}x{self._height} "
            f"{self._format.name} {self._fps:g} fps {state} written={self._frames_written}>"
        )
