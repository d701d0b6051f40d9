"""lkkit's exceptions, all in one tree.

```
LkkitError
├── ConfigurationError (ValueError)         bad option values, caught before use
├── TokenError (ValueError)
│   ├── InvalidGrant                         a grant combination that cannot be signed
│   ├── InvalidCredentials                   empty API key or secret
│   └── TokenVerificationError
│       ├── TokenExpired
│       ├── TokenSignatureInvalid
│       └── TokenMalformed
├── ConnectError (ConnectionError)           joining a room failed
│   ├── ServerUnreachable                    nothing answered at the URL
│   ├── ConnectionRejected (PermissionError) the server refused the token
│   └── ConnectTimeout (TimeoutError)        no answer within the connect timeout
├── NotConnected (RuntimeError)              the session is not (or no longer) connected
├── SessionStateError (RuntimeError)         a session opened twice, or used after close
├── PublishError                             the SDK refused to publish (data, track, DTMF)
│   └── DataSendIncomplete                   a chunked message failed part-way
├── RemoteCallError                          an RPC to another participant failed
├── DataError
│   ├── DataTooLarge (ValueError)            payload over the packet limit (lossy)
│   ├── DataPermissionDenied (PermissionError)  no canPublishData
│   └── InvalidDataArgument (TypeError, ValueError)  bad payload, topic or destinations
├── AudioError
│   ├── AudioFormatError (ValueError)        wrong dtype, shape, channels, NaN/inf
│   ├── CaptureError                         the native audio source refused a frame
│   └── TrackNotSubscribed (RuntimeError)    audio asked of a track not received
├── ServerApiError                           the server API answered with an error
├── StreamError (ConnectionError)            a native data stream failed
├── WorkerError (RuntimeError)               an agent worker could not start
├── ProtocolError (ValueError)               the server sent no agent protocol message
├── SubscriptionOverflow                     a subscription (OverflowPolicy.FAIL) fell behind
├── SubscriptionBusy (RuntimeError)          two tasks read one subscription at once
└── LocalServerError                         lkkit.testing could not provide a server
    ├── ServerBinaryNotFound (FileNotFoundError)
    └── ServerStartError (RuntimeError)
```

Exceptions of the SDK (`livekit.rtc`, `livekit.api`) are translated in exactly one
place, [`map_sdk_exceptions`][lkkit._exceptions.map_sdk_exceptions], always with
`raise ... from exc` so the original stays reachable as `__cause__`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

__all__ = [
    "AudioError",
    "AudioFormatError",
    "CaptureError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionRejected",
    "DataError",
    "DataPermissionDenied",
    "DataSendIncomplete",
    "DataTooLarge",
    "InvalidCredentials",
    "InvalidDataArgument",
    "InvalidGrant",
    "LkkitError",
    "LocalServerError",
    "NotConnected",
    "ProtocolError",
    "PublishError",
    "RemoteCallError",
    "ServerApiError",
    "ServerBinaryNotFound",
    "ServerStartError",
    "ServerUnreachable",
    "SessionStateError",
    "StreamError",
    "SubscriptionBusy",
    "SubscriptionOverflow",
    "TokenError",
    "TokenExpired",
    "TokenMalformed",
    "TokenSignatureInvalid",
    "TokenVerificationError",
    "TrackNotSubscribed",
    "WorkerError",
    "map_sdk_exceptions",
]


class LkkitError(Exception):
    """Root of every exception lkkit raises on purpose."""


class ConfigurationError(LkkitError, ValueError):
    """Raised when an option value is invalid, before anything is sent or started."""


# -- tokens ------------------------------------------------------------------------------


class TokenError(LkkitError, ValueError):
    """Root of the token errors: minting or verifying a JWT failed."""


class InvalidGrant(TokenError):
    """Raised before signing when grants cannot make a valid token.

    For example: `room_join` or `room_admin` without a `room`, an unknown publish
    source or participant kind, an empty identity on a joining token, a non-positive TTL.
    """


class InvalidCredentials(TokenError):
    """Raised when the API key or the API secret is empty."""


class TokenVerificationError(TokenError):
    """Raised when a JWT does not verify; the subclasses say why."""


class TokenExpired(TokenVerificationError):
    """Raised when verifying a JWT whose `exp` is in the past."""


class TokenSignatureInvalid(TokenVerificationError):
    """Raised when a JWT was signed with another secret or names another API key."""


class TokenMalformed(TokenVerificationError):
    """Raised when a string is not a JWT, or its claims are not LiveKit claims."""


# -- sessions ----------------------------------------------------------------------------


class ConnectError(LkkitError, ConnectionError):
    """Raised when joining a room fails; the subclasses say why when it is known."""


class ServerUnreachable(ConnectError):
    """Raised when nothing answers at the server URL (refused, bad host, bad scheme)."""


class ConnectionRejected(ConnectError, PermissionError):
    """Raised when the server refuses the token (bad signature, expired, no `roomJoin`)."""


class ConnectTimeout(ConnectError, TimeoutError):
    """Raised when the server did not complete the join within the connect timeout."""


class NotConnected(LkkitError, RuntimeError):
    """Raised when an operation needs a connected session and the session is not."""


class SessionStateError(LkkitError, RuntimeError):
    """Raised when a session object is used in the wrong state (opened twice, say)."""


class PublishError(LkkitError):
    """Raised when the SDK refuses to publish data, a track or DTMF."""


class DataSendIncomplete(PublishError):
    """Raised when sending a chunked data message fails after some of its packets left.

    `sent` packets of `total` were handed to the SDK; the cause is `__cause__`.
    Receiving lkkit sessions drop the partial message when its timeout expires and
    report it as a `TIMEOUT` drop; nothing partial is ever delivered.
    """

    def __init__(self, message: str, *, sent: int, total: int) -> None:
        super().__init__(message)
        self.sent = sent
        self.total = total


class RemoteCallError(LkkitError):
    """Raised when an RPC to another participant fails (the SDK's `RpcError`)."""


# -- data --------------------------------------------------------------------------------


class DataError(LkkitError):
    """Root of the data-message errors raised before anything is sent."""


class DataTooLarge(DataError, ValueError):
    """Raised before sending when a payload cannot be sent in the chosen mode.

    A lossy payload must fit one packet; a reliable one of any size is chunked.
    """


class DataPermissionDenied(DataError, PermissionError):
    """Raised before sending when the local participant lacks `canPublishData`.

    The server would otherwise drop the packets without telling anyone.
    """


class InvalidDataArgument(DataError, TypeError, ValueError):
    """Raised before sending when an argument of a data send is unusable.

    A payload that is not `bytes`-like or `str`, a topic that is not a `str` or is
    longer than 256 UTF-8 bytes, destinations that are not an iterable of non-empty
    identity strings (a bare `str` included), an empty destination list (which
    LiveKit would read as "everyone"), or a lossy send through native streams.
    It subclasses both `TypeError` and `ValueError`, whichever the mistake is.
    """


# -- audio -------------------------------------------------------------------------------


class AudioError(LkkitError):
    """Root of the audio errors."""


class AudioFormatError(AudioError, ValueError):
    """Raised before capture for a wrong dtype, shape, channel count, NaN or inf,
    or frame and buffer durations the native layer refuses."""


class CaptureError(AudioError):
    """Raised when the native audio source refuses a frame."""


class TrackNotSubscribed(AudioError, RuntimeError):
    """Raised when audio is asked of a remote track publication this session does not
    receive (not subscribed, or not yet)."""


# -- server API and streams --------------------------------------------------------------


class ServerApiError(LkkitError):
    """Raised when the server API (room service) answers with an error.

    `status` is the HTTP status and `code` the Twirp error code, when known.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class StreamError(LkkitError, ConnectionError):
    """Raised when a native LiveKit data stream fails or is cut short."""


class WorkerError(LkkitError, RuntimeError):
    """Raised when an agent worker cannot start: no server URL or credentials, no
    registration with the server, or a prewarm that failed or timed out."""


class ProtocolError(LkkitError, ValueError):
    """Raised when the server sends an agent worker something that is not an agent
    protocol message."""


class SubscriptionOverflow(LkkitError):
    """Raised by reading a subscription made with `OverflowPolicy.FAIL` once its buffer
    overflowed: lkkit ended the subscription rather than drop items.

    Every item buffered before the overflow is delivered first.
    """


class SubscriptionBusy(LkkitError, RuntimeError):
    """Raised when a task reads a subscription that another task is reading right now
    (each would get only some of the items)."""


# -- the local test server ---------------------------------------------------------------


class LocalServerError(LkkitError):
    """Root of the errors of [`lkkit.testing`][lkkit.testing]."""


class ServerBinaryNotFound(LocalServerError, FileNotFoundError):
    """Raised when no `livekit-server` binary is available and none can be built."""


class ServerStartError(LocalServerError, RuntimeError):
    """Raised when the local server exits early or does not answer in time.

    The message ends with the tail of the server's log.
    """


# -- the one translation point -----------------------------------------------------------

# Messages of the native layer that tell why a connect failed. The FFI gives only text.
_REJECTED = re.compile(r"401|403|unauthori[sz]ed|permission|invalid token|token", re.I)
_UNREACHABLE = re.compile(
    r"connection refused|failed to lookup|dns|no route|unreachable|invalid url|"
    r"relative url|url|connect.*error|io error|tcp",
    re.I,
)
_TIMEOUT = re.compile(r"timed? ?out|timeout|elapsed", re.I)


# Every exception class the SDK defines, and what it becomes. A test walks the SDK's
# modules and fails when a class is missing here. Built on first use: importing the
# SDK costs half a second, and an agent worker registers before it pays that.
@cache
def sdk_exception_map() -> dict[type[BaseException], type[LkkitError]]:
    from livekit import api, rtc
    from livekit.rtc import data_stream, data_track, participant, platform_audio, rpc

    return {
        rtc.ConnectError: ConnectError,
        participant.PublishDataError: PublishError,
        participant.PublishTrackError: PublishError,
        participant.UnpublishTrackError: PublishError,
        participant.PublishDTMFError: PublishError,
        participant.PublishTranscriptionError: PublishError,
        participant.PublishDataTrackError: PublishError,
        rpc.RpcError: RemoteCallError,
        data_stream.StreamError: StreamError,
        data_track.SubscribeDataTrackError: StreamError,
        data_track.PushFrameError: PublishError,
        platform_audio.PlatformAudioError: AudioError,
        api.ServerError: ServerApiError,
        api.SipCallError: ServerApiError,
    }


# The server echoes a rejected token in its error text; keep credentials out of logs.
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")


def _connect_error(message: str) -> ConnectError:
    message = _JWT.sub("<token>", message)
    if _TIMEOUT.search(message):
        return ConnectTimeout(message)
    if _REJECTED.search(message):
        return ConnectionRejected(message)
    if _UNREACHABLE.search(message):
        return ServerUnreachable(message)
    return ConnectError(message)


def translate(exc: BaseException) -> LkkitError | None:
    """The lkkit exception for an SDK exception, or `None` when it is not the SDK's."""
    from livekit import api, rtc

    if isinstance(exc, rtc.ConnectError):
        return _connect_error(exc.message)
    if isinstance(exc, api.ServerError):
        return ServerApiError(f"{exc.code}: {exc.message}", status=exc.status, code=exc.code)
    for sdk_type, lkkit_type in sdk_exception_map().items():
        if isinstance(exc, sdk_type):
            message = getattr(exc, "message", None) or str(exc) or sdk_type.__name__
            return lkkit_type(message)
    return None


@contextmanager
def map_sdk_exceptions() -> Iterator[None]:
    """Translate SDK exceptions raised inside the block into lkkit exceptions."""
    try:
        yield
    except LkkitError:
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc
