"""lkkit's enums, and their one conversion from the SDK's protobuf values.

The SDK exposes protobuf enum integers (`rtc.TrackSource.SOURCE_CAMERA == 1`); lkkit's
public API uses these string enums instead. The string values are the names LiveKit
uses in tokens and JSON (`"camera"`, `"screen_share"`, `"agent"`...).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    from livekit import rtc

__all__ = [
    "ConnectionQuality",
    "ConnectionState",
    "DataReliability",
    "DisconnectReason",
    "EncryptionState",
    "ParticipantKind",
    "StreamState",
    "TrackKind",
    "TrackSource",
]


class TrackSource(str, enum.Enum):
    """What a track carries. The values are the names LiveKit grants use."""

    UNKNOWN = "unknown"
    CAMERA = "camera"
    MICROPHONE = "microphone"
    SCREEN_SHARE = "screen_share"
    SCREEN_SHARE_AUDIO = "screen_share_audio"


class TrackKind(str, enum.Enum):
    """Audio or video."""

    UNKNOWN = "unknown"
    AUDIO = "audio"
    VIDEO = "video"


class ParticipantKind(str, enum.Enum):
    """What kind of client a participant is; normally set by LiveKit."""

    STANDARD = "standard"
    INGRESS = "ingress"
    EGRESS = "egress"
    SIP = "sip"
    AGENT = "agent"
    CONNECTOR = "connector"
    BRIDGE = "bridge"


class ConnectionState(str, enum.Enum):
    """The state of a session's connection to the server."""

    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


class ConnectionQuality(str, enum.Enum):
    """A participant's connection quality as the server rates it."""

    UNKNOWN = "unknown"
    POOR = "poor"
    GOOD = "good"
    EXCELLENT = "excellent"
    LOST = "lost"


class DisconnectReason(str, enum.Enum):
    """Why a session was disconnected."""

    UNKNOWN = "unknown"
    CLIENT_INITIATED = "client_initiated"
    DUPLICATE_IDENTITY = "duplicate_identity"
    SERVER_SHUTDOWN = "server_shutdown"
    PARTICIPANT_REMOVED = "participant_removed"
    ROOM_DELETED = "room_deleted"
    STATE_MISMATCH = "state_mismatch"
    JOIN_FAILURE = "join_failure"
    MIGRATION = "migration"
    SIGNAL_CLOSE = "signal_close"
    ROOM_CLOSED = "room_closed"
    USER_UNAVAILABLE = "user_unavailable"
    USER_REJECTED = "user_rejected"
    SIP_TRUNK_FAILURE = "sip_trunk_failure"
    CONNECTION_TIMEOUT = "connection_timeout"
    MEDIA_FAILURE = "media_failure"
    AGENT_ERROR = "agent_error"


class StreamState(str, enum.Enum):
    """Whether the server forwards a subscribed track (paused under low bandwidth)."""

    UNKNOWN = "unknown"
    ACTIVE = "active"
    PAUSED = "paused"


class EncryptionState(str, enum.Enum):
    """End-to-end encryption state of a participant's tracks."""

    NEW = "new"
    OK = "ok"
    ENCRYPTION_FAILED = "encryption_failed"
    DECRYPTION_FAILED = "decryption_failed"
    MISSING_KEY = "missing_key"
    KEY_RATCHETED = "key_ratcheted"
    INTERNAL_ERROR = "internal_error"


class DataReliability(str, enum.Enum):
    """How a data packet travels: retried and ordered, or sent once."""

    RELIABLE = "reliable"
    LOSSY = "lossy"


# -- conversions from the SDK ------------------------------------------------------------

_E = TypeVar("_E", bound=enum.Enum)


def _by_suffix(
    sdk_items: Sequence[tuple[str, int]], prefix: str, target: type[_E]
) -> dict[int, _E]:
    # Protobuf enum names are the lkkit names upper-cased behind a common prefix.
    return {value: target(name.removeprefix(prefix).lower()) for name, value in sdk_items}


class _SdkTables(NamedTuple):
    track_source: dict[rtc.TrackSource.ValueType, TrackSource]
    track_source_to_sdk: dict[TrackSource, rtc.TrackSource.ValueType]
    track_kind: dict[int, TrackKind]
    connection_state: dict[int, ConnectionState]
    connection_quality: dict[int, ConnectionQuality]
    stream_state: dict[int, StreamState]
    data_kind: dict[int, DataReliability]
    participant_kind: dict[int, ParticipantKind]
    disconnect_reason: dict[int, DisconnectReason]
    encryption_state: dict[int, EncryptionState]


@cache
def _sdk() -> _SdkTables:
    # Built on first use: the enums above are importable without the SDK (an agent
    # worker registers before it imports the SDK).
    from livekit import rtc

    track_source = {
        rtc.TrackSource.SOURCE_UNKNOWN: TrackSource.UNKNOWN,
        rtc.TrackSource.SOURCE_CAMERA: TrackSource.CAMERA,
        rtc.TrackSource.SOURCE_MICROPHONE: TrackSource.MICROPHONE,
        rtc.TrackSource.SOURCE_SCREENSHARE: TrackSource.SCREEN_SHARE,
        rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO: TrackSource.SCREEN_SHARE_AUDIO,
    }
    return _SdkTables(
        track_source=track_source,
        track_source_to_sdk={v: k for k, v in track_source.items()},
        track_kind={
            rtc.TrackKind.KIND_UNKNOWN: TrackKind.UNKNOWN,
            rtc.TrackKind.KIND_AUDIO: TrackKind.AUDIO,
            rtc.TrackKind.KIND_VIDEO: TrackKind.VIDEO,
        },
        connection_state={
            rtc.ConnectionState.CONN_DISCONNECTED: ConnectionState.DISCONNECTED,
            rtc.ConnectionState.CONN_CONNECTED: ConnectionState.CONNECTED,
            rtc.ConnectionState.CONN_RECONNECTING: ConnectionState.RECONNECTING,
        },
        connection_quality={
            rtc.ConnectionQuality.QUALITY_UNKNOWN: ConnectionQuality.UNKNOWN,
            rtc.ConnectionQuality.QUALITY_POOR: ConnectionQuality.POOR,
            rtc.ConnectionQuality.QUALITY_GOOD: ConnectionQuality.GOOD,
            rtc.ConnectionQuality.QUALITY_EXCELLENT: ConnectionQuality.EXCELLENT,
            rtc.ConnectionQuality.QUALITY_LOST: ConnectionQuality.LOST,
        },
        stream_state={
            rtc.StreamState.STATE_UNKNOWN: StreamState.UNKNOWN,
            rtc.StreamState.STATE_ACTIVE: StreamState.ACTIVE,
            rtc.StreamState.STATE_PAUSED: StreamState.PAUSED,
        },
        data_kind={
            rtc.DataPacketKind.KIND_LOSSY: DataReliability.LOSSY,
            rtc.DataPacketKind.KIND_RELIABLE: DataReliability.RELIABLE,
        },
        participant_kind=_by_suffix(
            rtc.ParticipantKind.items(), "PARTICIPANT_KIND_", ParticipantKind
        ),
        # UNKNOWN_REASON is the one name that is not the lkkit name upper-cased.
        disconnect_reason={
            value: DisconnectReason.UNKNOWN
            if name == "UNKNOWN_REASON"
            else DisconnectReason(name.lower())
            for name, value in rtc.DisconnectReason.items()
        },
        encryption_state=_by_suffix(rtc.EncryptionState.items(), "", EncryptionState),
    )


def _lookup(table: Mapping[Any, _E], value: int, default: _E) -> _E:
    # A newer server or SDK can send values this lkkit does not know yet.
    return table.get(value, default)


def track_source_from_sdk(value: int) -> TrackSource:
    return _lookup(_sdk().track_source, value, TrackSource.UNKNOWN)


def track_source_to_sdk(value: TrackSource) -> rtc.TrackSource.ValueType:
    return _sdk().track_source_to_sdk[value]


def track_kind_from_sdk(value: int) -> TrackKind:
    return _lookup(_sdk().track_kind, value, TrackKind.UNKNOWN)


def connection_state_from_sdk(value: int) -> ConnectionState:
    return _lookup(_sdk().connection_state, value, ConnectionState.DISCONNECTED)


def connection_quality_from_sdk(value: int) -> ConnectionQuality:
    return _lookup(_sdk().connection_quality, value, ConnectionQuality.UNKNOWN)


def stream_state_from_sdk(value: int) -> StreamState:
    return _lookup(_sdk().stream_state, value, StreamState.UNKNOWN)


def participant_kind_from_sdk(value: int) -> ParticipantKind:
    return _lookup(_sdk().participant_kind, value, ParticipantKind.STANDARD)


def disconnect_reason_from_sdk(value: int) -> DisconnectReason:
    return _lookup(_sdk().disconnect_reason, value, DisconnectReason.UNKNOWN)


def encryption_state_from_sdk(value: int) -> EncryptionState:
    return _lookup(_sdk().encryption_state, value, EncryptionState.INTERNAL_ERROR)


def data_reliability_from_sdk(value: int) -> DataReliability:
    return _lookup(_sdk().data_kind, value, DataReliability.RELIABLE)
