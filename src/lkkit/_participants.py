"""Read-only, typed views of the SDK's participants and track publications.

A view reads through to the live SDK object, so it always shows the current state;
it exposes lkkit enums and plain Python values, never protobuf types.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from livekit import rtc

from ._exceptions import ConfigurationError, TrackNotPublished
from ._sdk_compat import proto_participant as participant_pb2
from ._sdk_compat import track_room
from ._types import (
    ConnectionQuality,
    ParticipantKind,
    StreamState,
    TrackKind,
    TrackSource,
    connection_quality_from_sdk,
    participant_kind_from_sdk,
    stream_state_from_sdk,
    track_kind_from_sdk,
    track_source_from_sdk,
)

if TYPE_CHECKING:
    from ._video import VideoQuality

__all__ = [
    "LocalParticipant",
    "Participant",
    "ParticipantPermissions",
    "RemoteParticipant",
    "TrackPublication",
]


@dataclass(frozen=True, slots=True)
class ParticipantPermissions:
    """What a participant may do in the room, as the server last said."""

    can_subscribe: bool
    can_publish: bool
    can_publish_data: bool
    can_publish_sources: tuple[TrackSource, ...]
    can_update_metadata: bool
    hidden: bool

    @classmethod
    def _from_sdk(cls, permission: participant_pb2.ParticipantPermission) -> ParticipantPermissions:
        return cls(
            can_subscribe=permission.can_subscribe,
            can_publish=permission.can_publish,
            can_publish_data=permission.can_publish_data,
            can_publish_sources=tuple(
                track_source_from_sdk(s) for s in permission.can_publish_sources
            ),
            can_update_metadata=permission.can_update_metadata,
            hidden=permission.hidden,
        )


_VIDEO_QUALITY = {
    "low": rtc.VideoQuality.VIDEO_QUALITY_LOW,
    "medium": rtc.VideoQuality.VIDEO_QUALITY_MEDIUM,
    "high": rtc.VideoQuality.VIDEO_QUALITY_HIGH,
}


class TrackPublication:
    """A track a participant publishes: what it is, and whether we receive it."""

    __slots__ = ("_publication",)

    def __init__(self, publication: rtc.TrackPublication) -> None:
        self._publication = publication

    @property
    def sid(self) -> str:
        return self._publication.sid

    @property
    def name(self) -> str:
        return self._publication.name

    @property
    def kind(self) -> TrackKind:
        return track_kind_from_sdk(self._publication.kind)

    @property
    def source(self) -> TrackSource:
        return track_source_from_sdk(self._publication.source)

    @property
    def muted(self) -> bool:
        """Whether the track is muted. For a local track this is the local state,
        changed at once by [`mute`][lkkit.TrackPublication.mute]; for a remote one,
        what the server last said."""
        track = self._publication.track
        if isinstance(self._publication, rtc.LocalTrackPublication) and track is not None:
            return track.muted
        return self._publication.muted

    async def mute(self) -> None:
        """Mute a local track: peers get `TrackMuted` and receive no more audio from it
        (the track stays published). Idempotent: muting a muted track sends nothing.

        Raises:
            TrackNotPublished: the publication is remote, or no longer published
                (unpublished, or its session ended).
        """
        self._set_muted(True)

    async def unmute(self) -> None:
        """Unmute a local track: peers get `TrackUnmuted` and its audio again.
        Idempotent.

        Raises:
            TrackNotPublished: as [`mute`][lkkit.TrackPublication.mute].
        """
        self._set_muted(False)

    def _set_muted(self, muted: bool) -> None:
        publication = self._publication
        track = publication.track
        if not isinstance(publication, rtc.LocalTrackPublication):
            raise TrackNotPublished(f"track {publication.sid} is not a local track")
        room = track_room(track) if track is not None else None
        if not isinstance(track, rtc.LocalAudioTrack | rtc.LocalVideoTrack) or (
            room is not None and not room.isconnected()
        ):
            raise TrackNotPublished(
                f"track {publication.sid} ({publication.name!r}) is no longer published"
            )
        if track.muted == muted:
            return
        if muted:
            track.mute()  # tells the server, which tells every peer
        else:
            track.unmute()

    @property
    def mime_type(self) -> str:
        return self._publication.mime_type

    @property
    def simulcasted(self) -> bool:
        return self._publication.simulcasted

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """`(width, height)` of a video track; `None` for audio."""
        if self.kind is not TrackKind.VIDEO:
            return None
        return self._publication.width, self._publication.height

    @property
    def is_local(self) -> bool:
        return isinstance(self._publication, rtc.LocalTrackPublication)

    @property
    def subscribed(self) -> bool:
        """Whether the local participant receives this track (always true for local ones)."""
        if isinstance(self._publication, rtc.RemoteTrackPublication):
            return self._publication.subscribed
        return True

    def subscribe(self) -> None:
        """Ask the server to send this remote track (with `auto_subscribe=False`, or
        after [`unsubscribe`][lkkit.TrackPublication.unsubscribe]). Returns at once;
        the track arrives as [`TrackSubscribed`][lkkit.TrackSubscribed] (or
        `TrackSubscriptionFailed`).

        Raises:
            ConfigurationError: the publication is local.
        """
        self._remote("subscribe to").set_subscribed(True)

    def unsubscribe(self) -> None:
        """Stop receiving this remote track; streams reading it end
        ([`TrackUnsubscribed`][lkkit.TrackUnsubscribed] follows).

        Raises:
            ConfigurationError: the publication is local.
        """
        self._remote("unsubscribe from").set_subscribed(False)

    def set_quality(self, quality: VideoQuality) -> None:
        """Choose the simulcast layer the server sends for this remote video track:
        `LOW`, `MEDIUM` or `HIGH` (the publisher's full resolution).

        Raises:
            ConfigurationError: a local or audio publication, one published without
                simulcast, or not a `VideoQuality`.
        """
        from ._video import VideoQuality

        try:
            layer = VideoQuality(quality)
        except ValueError:
            raise ConfigurationError(
                f"quality must be a VideoQuality (LOW, MEDIUM, HIGH), got {quality!r}"
            ) from None
        publication = self._remote("choose the quality of")
        if publication.kind != rtc.TrackKind.KIND_VIDEO:
            raise ConfigurationError(f"track {publication.sid} is not a video track")
        if not publication.simulcasted:
            raise ConfigurationError(
                f"track {publication.sid} was published without simulcast: one layer only"
            )
        publication.set_video_quality(_VIDEO_QUALITY[layer])

    def _remote(self, action: str) -> rtc.RemoteTrackPublication:
        if not isinstance(self._publication, rtc.RemoteTrackPublication):
            raise ConfigurationError(f"cannot {action} a local track")
        return self._publication

    @property
    def stream_state(self) -> StreamState:
        """`PAUSED` when the server stopped forwarding the track (low bandwidth)."""
        track = self._publication.track
        if track is None:
            return StreamState.UNKNOWN
        return stream_state_from_sdk(track.stream_state)

    @property
    def sdk(self) -> rtc.TrackPublication:
        """The SDK object behind this view, for what lkkit does not wrap."""
        return self._publication

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrackPublication) and other._publication is self._publication

    def __hash__(self) -> int:
        return hash(id(self._publication))

    def __repr__(self) -> str:
        return f"<TrackPublication {self.sid} {self.kind.value}/{self.source.value} {self.name!r}>"


class Participant:
    """A member of the room, local or remote."""

    __slots__ = ("_participant",)

    def __init__(self, participant: rtc.Participant) -> None:
        self._participant = participant

    @property
    def sid(self) -> str:
        return self._participant.sid

    @property
    def identity(self) -> str:
        return self._participant.identity

    @property
    def name(self) -> str:
        return self._participant.name

    @property
    def metadata(self) -> str:
        return self._participant.metadata

    @property
    def attributes(self) -> Mapping[str, str]:
        return MappingProxyType(dict(self._participant.attributes))

    @property
    def kind(self) -> ParticipantKind:
        return participant_kind_from_sdk(self._participant.kind)

    @property
    def joined_at(self) -> datetime.datetime | None:
        return self._participant.joined_at

    @property
    def permissions(self) -> ParticipantPermissions:
        return ParticipantPermissions._from_sdk(self._participant.permissions)

    @property
    def connection_quality(self) -> ConnectionQuality:
        return connection_quality_from_sdk(self._participant.connection_quality)

    @property
    def track_publications(self) -> Mapping[str, TrackPublication]:
        """The participant's tracks by track sid."""
        return MappingProxyType(
            {sid: TrackPublication(p) for sid, p in self._participant.track_publications.items()}
        )

    @property
    def is_local(self) -> bool:
        return isinstance(self._participant, rtc.LocalParticipant)

    @property
    def sdk(self) -> rtc.Participant:
        """The SDK object behind this view, for what lkkit does not wrap."""
        return self._participant

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Participant) and other._participant is self._participant

    def __hash__(self) -> int:
        return hash(id(self._participant))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity!r} {self.sid}>"


class LocalParticipant(Participant):
    """The participant this session joined as."""

    __slots__ = ()

    @property
    def sdk(self) -> rtc.LocalParticipant:
        assert isinstance(self._participant, rtc.LocalParticipant)
        return self._participant


class RemoteParticipant(Participant):
    """Another member of the room."""

    __slots__ = ()

    @property
    def sdk(self) -> rtc.RemoteParticipant:
        assert isinstance(self._participant, rtc.RemoteParticipant)
        return self._participant


def participant_view(participant: rtc.Participant) -> Participant:
    """The typed view of an SDK participant, local or remote."""
    if isinstance(participant, rtc.LocalParticipant):
        return LocalParticipant(participant)
    if isinstance(participant, rtc.RemoteParticipant):
        return RemoteParticipant(participant)
    return Participant(participant)
