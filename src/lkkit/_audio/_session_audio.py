"""`session.audio`: a session's audio publishers and received streams, and their end."""

from __future__ import annotations

from livekit import rtc

from .._core import SessionCore
from .._exceptions import AudioFormatError, ConfigurationError
from .._media_streams import RemoteStreams, resolve_remote_track, subscribed_track
from .._participants import Participant, TrackPublication
from .._subscription import OverflowPolicy, check_buffer
from .._types import TrackSource, track_source_to_sdk
from ._frames import AudioFormat, check_duration_ms
from ._options import AudioOptions
from ._publisher import AudioPublisher
from ._stream import AudioStream

__all__ = ["DEFAULT_STREAM_BUFFER_MS", "SessionAudio"]

DEFAULT_STREAM_BUFFER_MS = 1000
"""Received audio a stream buffers for a slow reader before dropping the oldest."""


class SessionAudio:
    """A session's audio: [`publish`][lkkit.SessionAudio.publish] fixed frames and
    [`stream`][lkkit.SessionAudio.stream] received audio. Reached as `session.audio`.

    Owns the session's open publishers and streams: it ends them all when the session
    ends, and ends a stream when its track is unsubscribed or unpublished, or its
    participant gone (the shared `RemoteStreams` registry).
    """

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self._publishers: set[AudioPublisher] = set()
        self._streams = RemoteStreams(core, rtc.TrackKind.KIND_AUDIO)
        core.on_close(self._on_session_closed)

    def publish(
        self,
        name: str,
        *,
        sample_rate: int = 48_000,
        channels: int = 1,
        frame_ms: int = 10,
        buffer_ms: int = 50,
        capture_ms: int | None = None,
        options: AudioOptions | None = None,
    ) -> AudioPublisher:
        """An audio track to publish: `async with session.audio.publish("voice") as pub:`.

        Args:
            name: the track's name.
            sample_rate: samples per second per channel (a multiple of 100).
            channels: channel count (1-8).
            frame_ms: the frame duration: writes are cut into frames of this length,
                the remainder carried; `flush` pads the last one. A multiple of 10 ms.
            buffer_ms: the native buffer: a capture returns once the buffer holds at
                most this much. A multiple of 10 ms, at least `frame_ms`.
            capture_ms: audio handed to the native source per capture, whole frames up
                to `buffer_ms`; defaults to the most frames that fit `buffer_ms`.
                Smaller means less buffered audio and more Python work.
            options: processing and encoding, default `AudioOptions()`.

        Raises:
            AudioFormatError: a rate, channel count or duration the native layer refuses.
            ConfigurationError: an empty name.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError("an audio track needs a non-empty name")
        fmt = AudioFormat(sample_rate, channels, frame_ms)
        buffer_ms = check_duration_ms("buffer_ms", buffer_ms)
        if buffer_ms < frame_ms:
            raise AudioFormatError(
                f"buffer_ms ({buffer_ms}) must be at least frame_ms ({frame_ms})"
            )
        default_capture = buffer_ms // frame_ms * frame_ms
        capture = default_capture if capture_ms is None else capture_ms
        check_duration_ms("capture_ms", capture)
        if capture % frame_ms or capture > buffer_ms:
            raise AudioFormatError(
                f"capture_ms ({capture}) must be a multiple of frame_ms ({frame_ms}) "
                f"no larger than buffer_ms ({buffer_ms})"
            )
        return AudioPublisher(self, name, fmt, buffer_ms, capture, options or AudioOptions())

    def stream(
        self,
        track: Participant | TrackPublication | rtc.RemoteParticipant | rtc.Track,
        *,
        sample_rate: int = 48_000,
        channels: int = 1,
        frame_ms: int = 10,
        source: TrackSource = TrackSource.MICROPHONE,
        buffer: int = DEFAULT_STREAM_BUFFER_MS // 10,
    ) -> AudioStream:
        """Receive a remote audio track as numpy chunks.

        ```python
        async with session.audio.stream(participant) as chunks:
            async for chunk in chunks:
                ...
        ```

        `track` is a remote participant (its track of kind `source` is used, waited
        for when it is not subscribed yet), a subscribed remote track publication,
        or an SDK remote audio track. The audio is resampled and remixed natively to
        `sample_rate`/`channels` and regrouped into `frame_ms` chunks: 50 ms chunks
        cost the event loop a fifth of 10 ms ones. At most `buffer` chunks wait for
        a slow reader (one second of audio by default for 10 ms chunks); then the
        oldest are dropped and counted in the stream's `dropped`.

        Raises:
            AudioFormatError: a rate, channel count or duration the native layer refuses.
            ConfigurationError: the local participant, a video track, or a source that
                is not audio.
            TrackNotSubscribed: the publication's track is not subscribed (yet).
            NotConnected: the session is not connected.
        """
        fmt = AudioFormat(sample_rate, channels, frame_ms)
        buffer, _ = check_buffer(buffer, OverflowPolicy.DROP_OLDEST)
        if source not in (TrackSource.MICROPHONE, TrackSource.SCREEN_SHARE_AUDIO):
            raise ConfigurationError(f"source must be an audio source, got {source!r}")
        room = self._core.require_connected()
        if isinstance(track, Participant | rtc.RemoteParticipant):
            participant = track.sdk if isinstance(track, Participant) else track
            if not isinstance(participant, rtc.RemoteParticipant):
                raise ConfigurationError(
                    "receive audio from a remote participant, not the local one"
                )
            stream = AudioStream(self, fmt, participant.identity, source, buffer=buffer)
            self._streams.add(stream)
            found = subscribed_track(
                participant, rtc.TrackKind.KIND_AUDIO, track_source_to_sdk(source)
            )
            if found is not None:
                stream._bind(*found)
            return stream
        sdk_track, sid = resolve_remote_track(track, rtc.TrackKind.KIND_AUDIO)
        identity = next(
            (i for i, p in room.remote_participants.items() if sid in p.track_publications),
            "",
        )
        stream = AudioStream(self, fmt, identity, source, buffer=buffer)
        self._streams.add(stream)
        stream._bind(sdk_track, sid)
        return stream

    def _on_session_closed(self) -> None:
        # The streams end through their registry's own close hook.
        for publisher in tuple(self._publishers):
            publisher._on_session_closed()
