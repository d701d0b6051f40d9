"""Typed room and participant events, and their one conversion from the SDK.

Every event is a frozen, slotted dataclass; [`Event`][lkkit.Event] is their union, so
a `match` over it is checked for exhaustiveness by mypy:

```python
async with session.events() as events:
    async for event in events:
        match event:
            case lkkit.ParticipantConnected(participant=p):
                print("joined:", p.identity)
            case lkkit.DataReceived(payload=payload, topic="chat"):
                print("chat:", payload.decode())
            case _:
                pass
```

Participants and publications in events are lkkit's read-through views
([`RemoteParticipant`][lkkit.RemoteParticipant],
[`TrackPublication`][lkkit.TrackPublication]): they show the object's *current* state;
the event's own fields (`metadata`, `quality`, `muted`...) hold the value the event
carried.

The conversion from the SDK's `room.on(name, ...)` callback arguments lives in one
table, `SDK_EVENT_CONVERTERS`, keyed by the SDK's event name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from livekit import rtc

from ._participants import (
    LocalParticipant,
    Participant,
    ParticipantPermissions,
    RemoteParticipant,
    TrackPublication,
    participant_view,
)
from ._sdk_compat import room_token
from ._types import (
    ConnectionQuality,
    ConnectionState,
    DataReliability,
    DisconnectReason,
    EncryptionState,
    StreamState,
    connection_quality_from_sdk,
    connection_state_from_sdk,
    data_reliability_from_sdk,
    disconnect_reason_from_sdk,
    encryption_state_from_sdk,
)

__all__ = [
    "ActiveSpeakersChanged",
    "ConnectionQualityChanged",
    "ConnectionStateChanged",
    "DataReceived",
    "DataTrackPublished",
    "DataTrackUnpublished",
    "Disconnected",
    "E2eeStateChanged",
    "Event",
    "IsSpeakingChanged",
    "LocalTrackPublished",
    "LocalTrackRepublished",
    "LocalTrackSubscribed",
    "LocalTrackUnpublished",
    "Moved",
    "ParticipantActive",
    "ParticipantAttributesChanged",
    "ParticipantConnected",
    "ParticipantDisconnected",
    "ParticipantEncryptionStatusChanged",
    "ParticipantMetadataChanged",
    "ParticipantNameChanged",
    "ParticipantPermissionsChanged",
    "Reconnected",
    "Reconnecting",
    "RoomMetadataChanged",
    "RoomUpdated",
    "SipDtmfReceived",
    "TokenRefreshed",
    "TrackMuted",
    "TrackPublished",
    "TrackStreamStateChanged",
    "TrackSubscribed",
    "TrackSubscriptionFailed",
    "TrackSubscriptionPermissionChanged",
    "TrackUnmuted",
    "TrackUnpublished",
    "TrackUnsubscribed",
    "TranscriptionReceived",
    "TranscriptionSegment",
]

# -- room events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParticipantConnected:
    """A remote participant joined after the local one.

    Participants already in the room when the session joined produce no event: read
    them from the subscription's [`snapshot`][lkkit.EventSubscription.snapshot].
    """

    participant: RemoteParticipant


@dataclass(frozen=True, slots=True)
class ParticipantDisconnected:
    """A remote participant left; `reason` is what the server said."""

    participant: RemoteParticipant
    reason: DisconnectReason


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection to the server was interrupted; the SDK is reconnecting."""


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The SDK reconnected after [`Reconnecting`][lkkit.Reconnecting]."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The session was disconnected (left, removed, room deleted, or failure).

    It is the last event of a session: subscriptions end after it.
    """

    reason: DisconnectReason


@dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    """The session's connection state changed."""

    state: ConnectionState


@dataclass(frozen=True, slots=True)
class ActiveSpeakersChanged:
    """The set of active speakers changed; `speakers` is the whole current set,
    loudest first (empty when nobody speaks)."""

    speakers: tuple[Participant, ...]


@dataclass(frozen=True, slots=True)
class RoomMetadataChanged:
    """The room's metadata changed (through the server API, for example)."""

    old_metadata: str
    metadata: str


@dataclass(frozen=True, slots=True)
class RoomUpdated:
    """The server sent new room information (metadata, counts, recording state)."""

    metadata: str
    num_participants: int
    num_publishers: int
    recording: bool


@dataclass(frozen=True, slots=True)
class Moved:
    """The server moved the local participant to another room (`room_name`)."""

    room_name: str


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    """The server issued a fresh token for this session (kept for reconnects)."""

    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DataTrackUnpublished:
    """A remote data track (`sid`) was unpublished."""

    sid: str


# -- participant events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParticipantActive:
    """A remote participant became active: it can now receive data messages."""

    participant: RemoteParticipant


@dataclass(frozen=True, slots=True)
class TrackPublished:
    """A remote participant published a track after the local one joined."""

    participant: RemoteParticipant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class TrackUnpublished:
    """A remote participant unpublished a track."""

    participant: RemoteParticipant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class TrackSubscribed:
    """The local participant subscribed to a remote track; its media is now readable
    (`publication.sdk.track`)."""

    participant: RemoteParticipant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class TrackUnsubscribed:
    """A subscribed remote track was unsubscribed (unpublished, or unsubscribed by us)."""

    participant: RemoteParticipant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class TrackSubscriptionFailed:
    """Subscribing to a remote participant's track failed."""

    participant: RemoteParticipant
    track_sid: str
    error: str


@dataclass(frozen=True, slots=True)
class TrackMuted:
    """A track was muted; `participant` is local or remote."""

    participant: Participant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class TrackUnmuted:
    """A track was unmuted; `participant` is local or remote."""

    participant: Participant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class LocalTrackPublished:
    """A local track was published."""

    participant: LocalParticipant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class LocalTrackUnpublished:
    """A local track was unpublished."""

    participant: LocalParticipant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class LocalTrackRepublished:
    """After a full reconnect the SDK republished a local track under a new sid."""

    participant: LocalParticipant
    publication: TrackPublication
    previous_sid: str


@dataclass(frozen=True, slots=True)
class LocalTrackSubscribed:
    """A remote participant subscribed to a local track for the first time."""

    participant: LocalParticipant
    publication: TrackPublication


@dataclass(frozen=True, slots=True)
class IsSpeakingChanged:
    """A participant started (`speaking=True`) or stopped speaking.

    Derived by lkkit from [`ActiveSpeakersChanged`][lkkit.ActiveSpeakersChanged]: a
    participant entering the set started, one leaving it stopped.
    """

    participant: Participant
    speaking: bool


@dataclass(frozen=True, slots=True)
class ConnectionQualityChanged:
    """The server rated a participant's connection quality anew."""

    participant: Participant
    quality: ConnectionQuality


@dataclass(frozen=True, slots=True)
class ParticipantMetadataChanged:
    """A participant's metadata changed (by itself or through the server API).

    `old_metadata` is the value before the change (lkkit keeps it: the SDK
    overwrites it with a participant update before it reports the change)."""

    participant: Participant
    old_metadata: str
    metadata: str


@dataclass(frozen=True, slots=True)
class ParticipantNameChanged:
    """A participant's display name changed; `old_name` as for
    [`ParticipantMetadataChanged`][lkkit.ParticipantMetadataChanged]."""

    participant: Participant
    old_name: str
    name: str


@dataclass(frozen=True, slots=True)
class ParticipantAttributesChanged:
    """Some of a participant's attributes changed; `changed` holds only those
    (a removed attribute maps to `""`)."""

    participant: Participant
    changed: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ParticipantEncryptionStatusChanged:
    """Whether a participant's tracks are end-to-end encrypted changed."""

    participant: Participant
    encrypted: bool


@dataclass(frozen=True, slots=True)
class ParticipantPermissionsChanged:
    """A participant's permissions changed (through the server API, for example)."""

    participant: Participant
    permissions: ParticipantPermissions


@dataclass(frozen=True, slots=True)
class DataReceived:
    """A data packet arrived from a participant, or from the server API.

    `participant` is the sender, or `None` when the server API sent the packet.
    **Caveat:** it is also `None` when the SDK does not know the sender yet: a
    participant that publishes no track is announced to the others up to ~3 s after
    it joined (the server batches those updates), and data it sends before that
    arrives without its identity (the SDK's native layer drops it). `received_at` is
    the wall clock (`time.time()`) when lkkit got the packet from the SDK.
    """

    payload: bytes = field(repr=False)
    topic: str
    participant: RemoteParticipant | None
    reliability: DataReliability
    received_at: float

    @property
    def sender_identity(self) -> str | None:
        """The sender's identity; `None` when `participant` is `None`."""
        return self.participant.identity if self.participant is not None else None


@dataclass(frozen=True, slots=True)
class SipDtmfReceived:
    """A DTMF tone (`digit`, `code`) arrived from a SIP participant (or the server)."""

    participant: RemoteParticipant | None
    code: int
    digit: str


@dataclass(frozen=True, slots=True)
class TranscriptionSegment:
    """One segment of a transcription; times are in milliseconds."""

    id: str
    text: str
    start_time: int
    end_time: int
    language: str
    final: bool


@dataclass(frozen=True, slots=True)
class TranscriptionReceived:
    """Transcription segments for one participant's track."""

    participant: Participant | None
    publication: TrackPublication | None
    segments: tuple[TranscriptionSegment, ...]


@dataclass(frozen=True, slots=True)
class E2eeStateChanged:
    """A participant's end-to-end encryption state changed."""

    participant: Participant
    state: EncryptionState


@dataclass(frozen=True, slots=True)
class DataTrackPublished:
    """A remote participant published a data track.

    `sdk_track` is the SDK's `rtc.RemoteDataTrack`, to subscribe to its frames
    (lkkit does not wrap data tracks).
    """

    publisher_identity: str
    sid: str
    name: str
    uses_e2ee: bool
    sdk_track: rtc.RemoteDataTrack = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class TrackStreamStateChanged:
    """A subscribed track was paused or resumed by the server (bandwidth).

    **Not delivered in Python**: the SDK's native layer ignores the server's
    stream-state updates. Read [`TrackPublication.stream_state`][lkkit.TrackPublication]
    instead. The type exists so code written against it type-checks.
    """

    participant: RemoteParticipant
    publication: TrackPublication
    state: StreamState


@dataclass(frozen=True, slots=True)
class TrackSubscriptionPermissionChanged:
    """Whether we may subscribe to a remote track changed.

    **Not delivered in Python**: the SDK's native layer ignores the server's
    subscription-permission updates. The type exists so code written against it
    type-checks.
    """

    participant: RemoteParticipant
    publication: TrackPublication
    allowed: bool


Event: TypeAlias = (
    ParticipantConnected
    | ParticipantDisconnected
    | ParticipantActive
    | Reconnecting
    | Reconnected
    | Disconnected
    | ConnectionStateChanged
    | TrackPublished
    | TrackUnpublished
    | TrackSubscribed
    | TrackUnsubscribed
    | TrackSubscriptionFailed
    | TrackMuted
    | TrackUnmuted
    | LocalTrackPublished
    | LocalTrackUnpublished
    | LocalTrackRepublished
    | LocalTrackSubscribed
    | ActiveSpeakersChanged
    | IsSpeakingChanged
    | ConnectionQualityChanged
    | ParticipantMetadataChanged
    | ParticipantNameChanged
    | ParticipantAttributesChanged
    | ParticipantEncryptionStatusChanged
    | ParticipantPermissionsChanged
    | RoomMetadataChanged
    | RoomUpdated
    | Moved
    | TokenRefreshed
    | DataReceived
    | SipDtmfReceived
    | TranscriptionReceived
    | E2eeStateChanged
    | DataTrackPublished
    | DataTrackUnpublished
    | TrackStreamStateChanged
    | TrackSubscriptionPermissionChanged
)
"""Every lkkit event; `match` over it and mypy checks exhaustiveness."""

EVENT_TYPES: tuple[type[Event], ...] = Event.__args__
"""Every event class, in the order of the union."""

NOT_DELIVERED: frozenset[type[Event]] = frozenset(
    {TrackStreamStateChanged, TrackSubscriptionPermissionChanged}
)
"""Event types the Python SDK cannot deliver (see each class's docstring)."""

# The participant column of SPEC's event table, plus the SDK's further per-participant
# events. An event of these types belongs to the participant in its `participant` field.
PARTICIPANT_SCOPED: frozenset[type[Event]] = frozenset(
    {
        ParticipantActive,
        TrackPublished,
        TrackUnpublished,
        TrackSubscribed,
        TrackUnsubscribed,
        TrackSubscriptionFailed,
        TrackMuted,
        TrackUnmuted,
        LocalTrackPublished,
        LocalTrackUnpublished,
        LocalTrackRepublished,
        LocalTrackSubscribed,
        IsSpeakingChanged,
        ConnectionQualityChanged,
        ParticipantMetadataChanged,
        ParticipantNameChanged,
        ParticipantAttributesChanged,
        ParticipantEncryptionStatusChanged,
        ParticipantPermissionsChanged,
        DataReceived,
        SipDtmfReceived,
        TranscriptionReceived,
        E2eeStateChanged,
        TrackStreamStateChanged,
        TrackSubscriptionPermissionChanged,
    }
)


def participant_of(event: Event) -> Participant | None:
    """The participant a participant-scoped event belongs to, else `None`."""
    if type(event) not in PARTICIPANT_SCOPED:
        return None
    participant: Participant | None = getattr(event, "participant", None)
    return participant


# -- the one conversion from the SDK -----------------------------------------------------

Converter: TypeAlias = Callable[[rtc.Room, tuple[Any, ...]], Event | None]
"""Builds the lkkit event from the room and the SDK callback's positional arguments;
`None` when the SDK gave nothing lkkit can type (a participant it no longer knows)."""


def _local(room: rtc.Room) -> LocalParticipant:
    return LocalParticipant(room.local_participant)


def _local_subscribed(room: rtc.Room, args: tuple[Any, ...]) -> Event | None:
    # The SDK passes the track only (typed optional: `publication.track`); its
    # publication has the same sid.
    track = args[0]
    if track is None:
        return None
    publication = room.local_participant.track_publications.get(track.sid)
    if publication is None:
        return None
    return LocalTrackSubscribed(_local(room), TrackPublication(publication))


def _data_received(room: rtc.Room, args: tuple[Any, ...]) -> Event:
    packet: rtc.DataPacket = args[0]
    return DataReceived(
        payload=packet.data,
        topic=packet.topic or "",
        participant=RemoteParticipant(packet.participant) if packet.participant else None,
        reliability=data_reliability_from_sdk(packet.kind),
        received_at=time.time(),
    )


def _transcription(room: rtc.Room, args: tuple[Any, ...]) -> Event:
    segments, participant, publication = args
    return TranscriptionReceived(
        participant=participant_view(participant) if participant is not None else None,
        publication=TrackPublication(publication) if publication is not None else None,
        segments=tuple(
            TranscriptionSegment(s.id, s.text, s.start_time, s.end_time, s.language, s.final)
            for s in segments
        ),
    )


def _data_track_published(room: rtc.Room, args: tuple[Any, ...]) -> Event:
    track: rtc.RemoteDataTrack = args[0]
    info = track.info
    return DataTrackPublished(
        track.publisher_identity, info.sid, info.name, info.uses_e2ee, sdk_track=track
    )


def _with_participant(
    build: Callable[[Participant, tuple[Any, ...]], Event],
) -> Converter:
    # For SDK events whose participant can be None (an identity the SDK does not know).
    def convert(room: rtc.Room, args: tuple[Any, ...]) -> Event | None:
        if args[0] is None:
            return None
        return build(participant_view(args[0]), args[1:])

    return convert


def _remote(p: Any) -> RemoteParticipant:
    return RemoteParticipant(p)


def _pub(p: Any) -> TrackPublication:
    return TrackPublication(p)


SDK_EVENT_CONVERTERS: Mapping[str, Converter] = MappingProxyType(
    {
        "participant_connected": lambda room, a: ParticipantConnected(_remote(a[0])),
        "participant_disconnected": lambda room, a: ParticipantDisconnected(
            _remote(a[0]), disconnect_reason_from_sdk(a[0].disconnect_reason or 0)
        ),
        "participant_active": lambda room, a: ParticipantActive(_remote(a[0])),
        "reconnecting": lambda room, a: Reconnecting(),
        "reconnected": lambda room, a: Reconnected(),
        "disconnected": lambda room, a: Disconnected(disconnect_reason_from_sdk(a[0])),
        "connection_state_changed": lambda room, a: ConnectionStateChanged(
            connection_state_from_sdk(a[0])
        ),
        "track_published": lambda room, a: TrackPublished(_remote(a[1]), _pub(a[0])),
        "track_unpublished": lambda room, a: TrackUnpublished(_remote(a[1]), _pub(a[0])),
        "track_subscribed": lambda room, a: TrackSubscribed(_remote(a[2]), _pub(a[1])),
        "track_unsubscribed": lambda room, a: TrackUnsubscribed(_remote(a[2]), _pub(a[1])),
        "track_subscription_failed": lambda room, a: TrackSubscriptionFailed(
            _remote(a[0]), a[1], a[2]
        ),
        "track_muted": lambda room, a: TrackMuted(participant_view(a[0]), _pub(a[1])),
        "track_unmuted": lambda room, a: TrackUnmuted(participant_view(a[0]), _pub(a[1])),
        "local_track_published": lambda room, a: LocalTrackPublished(_local(room), _pub(a[0])),
        "local_track_unpublished": lambda room, a: LocalTrackUnpublished(_local(room), _pub(a[0])),
        "local_track_republished": lambda room, a: LocalTrackRepublished(
            _local(room), _pub(a[0]), a[1]
        ),
        "local_track_subscribed": _local_subscribed,
        "active_speakers_changed": lambda room, a: ActiveSpeakersChanged(
            tuple(participant_view(p) for p in a[0])
        ),
        "connection_quality_changed": _with_participant(
            lambda p, a: ConnectionQualityChanged(p, connection_quality_from_sdk(a[0]))
        ),
        "participant_metadata_changed": _with_participant(
            lambda p, a: ParticipantMetadataChanged(p, a[0], a[1])
        ),
        "participant_name_changed": _with_participant(
            lambda p, a: ParticipantNameChanged(p, a[0], a[1])
        ),
        # The SDK passes (changed_attributes, participant): the one reversed pair.
        "participant_attributes_changed": lambda room, a: ParticipantAttributesChanged(
            participant_view(a[1]), MappingProxyType(dict(a[0]))
        ),
        "participant_encryption_status_changed": _with_participant(
            lambda p, a: ParticipantEncryptionStatusChanged(p, bool(a[0]))
        ),
        "participant_permissions_changed": _with_participant(
            lambda p, a: ParticipantPermissionsChanged(
                p, ParticipantPermissions._from_sdk(p.sdk.permissions)
            )
        ),
        "e2ee_state_changed": _with_participant(
            lambda p, a: E2eeStateChanged(p, encryption_state_from_sdk(a[0]))
        ),
        "room_metadata_changed": lambda room, a: RoomMetadataChanged(a[0], a[1]),
        "room_updated": lambda room, a: RoomUpdated(
            room.metadata, room.num_participants, room.num_publishers, room.is_recording
        ),
        "moved": lambda room, a: Moved(room.name),
        "token_refreshed": lambda room, a: TokenRefreshed(room_token(room)),
        "data_received": _data_received,
        "sip_dtmf_received": lambda room, a: SipDtmfReceived(
            _remote(a[0].participant) if a[0].participant else None, a[0].code, a[0].digit
        ),
        "transcription_received": _transcription,
        "data_track_published": _data_track_published,
        "data_track_unpublished": lambda room, a: DataTrackUnpublished(a[0]),
    }
)
"""SDK event name -> converter. `"connected"` is absent: the SDK declares it but never
emits it (the session is connected when `connect` returns)."""
