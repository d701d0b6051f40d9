"""lkkit: a typed, async, honest face on the LiveKit realtime SDK.

```python
import lkkit

async with lkkit.connect(url, token) as session:
    ...
```

Only the asyncio backend is supported: the LiveKit SDK is bound to asyncio.
"""

from ._audio import AudioChunk, AudioPublisher, AudioStream, SessionAudio
from ._audio_options import AudioOptions
from ._audio_sources import WavAudio, iter_chunks, read_wav, silence, sine_tone
from ._exceptions import (
    AudioError,
    AudioFormatError,
    CaptureError,
    ConfigurationError,
    ConnectError,
    ConnectionRejected,
    ConnectTimeout,
    DataError,
    DataPermissionDenied,
    DataTooLarge,
    InvalidCredentials,
    InvalidGrant,
    LkkitError,
    LocalServerError,
    NotConnected,
    PublishError,
    RemoteCallError,
    ServerApiError,
    ServerBinaryNotFound,
    ServerStartError,
    ServerUnreachable,
    SessionStateError,
    StreamError,
    TokenError,
    TokenExpired,
    TokenMalformed,
    TokenSignatureInvalid,
    TokenVerificationError,
    TrackNotSubscribed,
)
from ._participants import (
    LocalParticipant,
    Participant,
    ParticipantPermissions,
    RemoteParticipant,
    TrackPublication,
)
from ._session import ConnectOptions, Session, ShutdownCallback, connect
from ._tokens import Credentials, Grants, Token
from ._types import (
    ConnectionQuality,
    ConnectionState,
    DataReliability,
    DisconnectReason,
    EncryptionState,
    ParticipantKind,
    StreamState,
    TrackKind,
    TrackSource,
)
from ._version import __version__

__all__ = [
    "AudioChunk",
    "AudioError",
    "AudioFormatError",
    "AudioOptions",
    "AudioPublisher",
    "AudioStream",
    "CaptureError",
    "ConfigurationError",
    "ConnectError",
    "ConnectOptions",
    "ConnectTimeout",
    "ConnectionQuality",
    "ConnectionRejected",
    "ConnectionState",
    "Credentials",
    "DataError",
    "DataPermissionDenied",
    "DataReliability",
    "DataTooLarge",
    "DisconnectReason",
    "EncryptionState",
    "Grants",
    "InvalidCredentials",
    "InvalidGrant",
    "LkkitError",
    "LocalParticipant",
    "LocalServerError",
    "NotConnected",
    "Participant",
    "ParticipantKind",
    "ParticipantPermissions",
    "PublishError",
    "RemoteCallError",
    "RemoteParticipant",
    "ServerApiError",
    "ServerBinaryNotFound",
    "ServerStartError",
    "ServerUnreachable",
    "Session",
    "SessionAudio",
    "SessionStateError",
    "ShutdownCallback",
    "StreamError",
    "StreamState",
    "Token",
    "TokenError",
    "TokenExpired",
    "TokenMalformed",
    "TokenSignatureInvalid",
    "TokenVerificationError",
    "TrackKind",
    "TrackNotSubscribed",
    "TrackPublication",
    "TrackSource",
    "WavAudio",
    "__version__",
    "connect",
    "iter_chunks",
    "read_wav",
    "silence",
    "sine_tone",
]
