"""The remote tracks a session's media streams read, and their end: one registry for
audio and video.

A stream given a participant waits for its track of the wanted source; the registry
binds it when the track is subscribed, and ends it when the track is unsubscribed or
unpublished, its participant leaves, or the session ends. One listener on the
session's event bus serves all streams of one kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from livekit import rtc

from ._core import SessionCore
from ._events import (
    Event,
    ParticipantDisconnected,
    TrackSubscribed,
    TrackUnpublished,
    TrackUnsubscribed,
)
from ._exceptions import ConfigurationError, TrackNotSubscribed
from ._participants import TrackPublication
from ._types import TrackSource, track_source_to_sdk

__all__ = ["RemoteStream", "RemoteStreams", "resolve_remote_track", "subscribed_track"]


class RemoteStream(Protocol):
    """What the registry needs of a stream."""

    _identity: str
    _source: TrackSource
    _sid: str

    @property
    def _track(self) -> rtc.Track | None: ...

    def _bind(self, track: rtc.Track, sid: str) -> None: ...

    def _end(self, error: BaseException | None = None) -> None: ...


class RemoteStreams:
    """The open streams of one kind (audio or video) of one session."""

    def __init__(self, core: SessionCore, kind: int) -> None:
        self._core = core
        self._kind = kind  # rtc.TrackKind value
        self._streams: set[RemoteStream] = set()
        self._by_sid: dict[str, set[RemoteStream]] = {}
        self._remove_listener: Callable[[], None] | None = None
        core.on_close(self._on_session_closed)

    def add(self, stream: RemoteStream) -> None:
        """Track `stream` until it ends (it calls `forget`)."""
        if self._remove_listener is None:
            # The bus drops the listener when the session ends.
            self._remove_listener = self._core.bus.add_listener(self._on_event)
        self._streams.add(stream)

    def index(self, stream: RemoteStream) -> None:
        """`stream` now reads the track `stream._sid`."""
        self._by_sid.setdefault(stream._sid, set()).add(stream)

    def forget(self, stream: RemoteStream) -> None:
        self._streams.discard(stream)
        readers = self._by_sid.get(stream._sid)
        if readers is not None:
            readers.discard(stream)
            if not readers:
                del self._by_sid[stream._sid]

    def __len__(self) -> int:
        return len(self._streams)

    def _on_event(self, event: Event) -> None:
        # Synchronous, in the SDK's dispatch order. Both unsubscribe and unpublish
        # end a stream: when the SDK handles the unpublish first it drops the
        # publication and never reports the unsubscribe; nor does it report tracks
        # unsubscribed after their participant left.
        if isinstance(event, TrackUnsubscribed | TrackUnpublished):
            for stream in tuple(self._by_sid.get(event.publication.sid, ())):
                stream._end()
        elif isinstance(event, ParticipantDisconnected):
            identity = event.participant.identity
            for stream in tuple(self._streams):
                if stream._identity == identity:
                    stream._end()
        elif isinstance(event, TrackSubscribed):
            publication = event.publication.sdk
            track = publication.track
            if track is None or publication.kind != self._kind:
                return
            identity = event.participant.identity
            for stream in tuple(self._streams):
                if (
                    stream._track is None
                    and stream._identity == identity
                    and publication.source == track_source_to_sdk(stream._source)
                ):
                    stream._bind(track, publication.sid)

    def _on_session_closed(self) -> None:
        for stream in tuple(self._streams):
            stream._end()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None


def subscribed_track(
    participant: rtc.RemoteParticipant, kind: int, source: int
) -> tuple[rtc.Track, str] | None:
    """`participant`'s subscribed track of `kind` and `source`, with its sid."""
    for publication in participant.track_publications.values():
        track = publication.track
        if publication.source == source and publication.kind == kind and track is not None:
            return track, publication.sid
    return None


def resolve_remote_track(track: TrackPublication | rtc.Track, kind: int) -> tuple[rtc.Track, str]:
    """The subscribed SDK track of `kind` a stream reads, and its sid, given a remote
    publication or an SDK remote track.

    Raises:
        ConfigurationError: a local publication, or a track of another kind.
        TrackNotSubscribed: the publication's track is not subscribed (yet).
    """
    audio = kind == rtc.TrackKind.KIND_AUDIO
    what, article = ("audio", "an audio") if audio else ("video", "a video")
    if isinstance(track, TrackPublication):
        publication = track.sdk
        if not isinstance(publication, rtc.RemoteTrackPublication):
            raise ConfigurationError(f"receive {what} from a remote track, not a local one")
        if publication.kind != kind:
            raise ConfigurationError(f"track {publication.sid} is not {article} track")
        if publication.track is None:
            raise TrackNotSubscribed(
                f"track {publication.sid} is not subscribed by this session (yet)"
            )
        return publication.track, publication.sid
    if not isinstance(track, rtc.RemoteAudioTrack if audio else rtc.RemoteVideoTrack):
        raise ConfigurationError(
            f"receive {what} from a remote {what} track, got {type(track).__name__}"
        )
    return track, track.sid
