"""`session.video`: a session's video publishers and received streams, and their end."""

from __future__ import annotations

import math
from typing import TypeVar

from livekit import rtc

from .._core import SessionCore
from .._exceptions import ConfigurationError
from .._media_streams import RemoteStreams, resolve_remote_track, subscribed_track
from .._participants import Participant, TrackPublication
from .._subscription import OverflowPolicy, check_buffer
from .._types import TrackSource, track_source_to_sdk
from ._formats import (
    VideoCodec,
    VideoFormat,
    VideoPreset,
    check_size,
    default_preset,
)
from ._publisher import VideoPublisher
from ._stream import VideoStream

__all__ = ["DEFAULT_VIDEO_BUFFER", "SessionVideo"]

DEFAULT_VIDEO_BUFFER = 2
"""Received frames a video stream keeps for a slow reader before dropping the oldest."""

_VIDEO_SOURCES = (TrackSource.CAMERA, TrackSource.SCREEN_SHARE)


class SessionVideo:
    """A session's video: [`publish`][lkkit.SessionVideo.publish] numpy frames and
    [`stream`][lkkit.SessionVideo.stream] received video. Reached as `session.video`.

    Ends its publishers and streams when the session ends, and a stream when its
    track is unsubscribed or unpublished or its participant leaves.
    """

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self._publishers: set[VideoPublisher] = set()
        self._streams = RemoteStreams(core, rtc.TrackKind.KIND_VIDEO)
        core.on_close(self._on_session_closed)

    def publish(
        self,
        name: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        preset: VideoPreset | None = None,
        format: VideoFormat = VideoFormat.RGBA,
        source: TrackSource = TrackSource.CAMERA,
        simulcast: bool = True,
        codec: VideoCodec = VideoCodec.VP8,
    ) -> VideoPublisher:
        """A video track to publish: `async with session.video.publish("cam", ...) as pub:`.

        Give the frame size as `width`/`height`, or a `preset` whose size is used;
        both may be given (the preset then only sets the encoding). The encoding
        (bitrate and frame-rate caps) is `preset`'s, or the one LiveKit's JS client
        picks for the size (see [`VideoPresets`][lkkit.VideoPresets]).

        Args:
            name: the track's name.
            width: frame width in pixels.
            height: frame height in pixels.
            fps: the frame rate `write` paces to (default: the preset's).
            preset: resolution and encoding, e.g. `VideoPresets.H1080`.
            format: the pixel layout of the frames written.
            source: `CAMERA` or `SCREEN_SHARE` (screen content: the encoder keeps
                resolution and drops frames under congestion, and skips static ones).
            simulcast: also send lower-resolution layers (receivers choose with
                [`set_quality`][lkkit.TrackPublication.set_quality]).
            codec: the video codec.

        Raises:
            ConfigurationError: an empty name, no size, a bad size, frame rate, format,
                source or codec.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError("a video track needs a non-empty name")
        if preset is not None and not isinstance(preset, VideoPreset):
            raise ConfigurationError(f"preset must be a VideoPreset, got {preset!r}")
        if width is None and height is None and preset is not None and preset.width:
            width, height = preset.width, preset.height
        if width is None or height is None:
            raise ConfigurationError("give the frame size: width= and height=, or a preset=")
        width, height = check_size(width, height)
        fmt = _member(VideoFormat, format, "format")
        kind = _member(TrackSource, source, "source")
        if kind not in _VIDEO_SOURCES:
            raise ConfigurationError(f"a video source is CAMERA or SCREEN_SHARE, got {source!r}")
        chosen = preset or default_preset(width, height, kind is TrackSource.SCREEN_SHARE)
        rate = chosen.max_framerate if fps is None else fps
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or not 0 < rate <= 240
        ):
            raise ConfigurationError(f"fps must be a number in (0, 240], got {fps!r}")
        return VideoPublisher(
            self,
            name,
            width=width,
            height=height,
            fps=float(rate),
            fmt=fmt,
            source=kind,
            preset=chosen,
            simulcast=bool(simulcast),
            codec=_member(VideoCodec, codec, "codec"),
        )

    def stream(
        self,
        track: Participant | TrackPublication | rtc.RemoteParticipant | rtc.Track,
        *,
        format: VideoFormat = VideoFormat.RGB,
        size: tuple[int, int] | None = None,
        source: TrackSource = TrackSource.CAMERA,
        buffer: int = DEFAULT_VIDEO_BUFFER,
    ) -> VideoStream:
        """Receive a remote video track as numpy frames.

        ```python
        async with session.video.stream(participant) as frames:
            async for frame in frames:
                ...
        ```

        `track` is a remote participant (its track of kind `source` is used, waited
        for when it is not subscribed yet), a subscribed remote track publication, or
        an SDK remote video track. Frames are converted natively to `format`, and
        scaled to `size` (`(width, height)`, nearest neighbour, packed formats only)
        when given. At most `buffer` frames wait for a slow reader; then the oldest is
        dropped and counted in the stream's `dropped`.

        Raises:
            ConfigurationError: the local participant, an audio track, a source that is
                not video, a bad format, size or buffer.
            TrackNotSubscribed: the publication's track is not subscribed (yet).
            NotConnected: the session is not connected.
        """
        fmt = _member(VideoFormat, format, "format")
        if size is not None:
            if not isinstance(size, tuple) or len(size) != 2:
                raise ConfigurationError(f"size is (width, height), got {size!r}")
            size = check_size(*size)
            if not fmt.packed:
                raise ConfigurationError(f"size= needs a packed format, not {fmt.name}")
        buffer, _ = check_buffer(buffer, OverflowPolicy.DROP_OLDEST)
        kind = _member(TrackSource, source, "source")
        if kind not in _VIDEO_SOURCES:
            raise ConfigurationError(f"source must be a video source, got {source!r}")
        room = self._core.require_connected()
        if isinstance(track, Participant | rtc.RemoteParticipant):
            participant = track.sdk if isinstance(track, Participant) else track
            if not isinstance(participant, rtc.RemoteParticipant):
                raise ConfigurationError(
                    "receive video from a remote participant, not the local one"
                )
            stream = VideoStream(self, fmt, size, participant.identity, kind, buffer=buffer)
            self._streams.add(stream)
            found = subscribed_track(
                participant, rtc.TrackKind.KIND_VIDEO, track_source_to_sdk(kind)
            )
            if found is not None:
                stream._bind(*found)
            return stream
        sdk_track, sid = resolve_remote_track(track, rtc.TrackKind.KIND_VIDEO)
        identity = next(
            (i for i, p in room.remote_participants.items() if sid in p.track_publications),
            "",
        )
        stream = VideoStream(self, fmt, size, identity, kind, buffer=buffer)
        self._streams.add(stream)
        stream._bind(sdk_track, sid)
        return stream

    def _on_session_closed(self) -> None:
        # The streams end through their registry's own close hook.
        for publisher in tuple(self._publishers):
            publisher._on_session_closed()


_E = TypeVar("_E", VideoFormat, VideoCodec, TrackSource)


def _member(enum: type[_E], value: object, what: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        names = ", ".join(m.name for m in enum)
        raise ConfigurationError(f"{what} must be one of {names}, got {value!r}") from None
