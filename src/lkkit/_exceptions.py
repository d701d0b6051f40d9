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
│   ├── DataSendIncomplete                   a chunked message failed part-way
│   └── PublishNotAllowed (PermissionError)  the grants do not allow this track source
├── RemoteCallError                          an RPC failed; `.code` is LiveKit's error code
│   ├── RpcApplicationError                  1500 the handler failed
│   ├── RpcConnectionTimeout (TimeoutError)  1501 the recipient never acknowledged
│   ├── RpcResponseTimeout (TimeoutError)    1502 no response within the timeout
│   ├── RpcRecipientDisconnected (ConnectionError)  1503
│   ├── RpcResponseTooLarge                  1504 the response is over the limit
│   ├── RpcSendFailed (ConnectionError)      1505 the request could not be sent
│   ├── RpcUnsupportedMethod (LookupError)   1400 no handler for the method
│   ├── RpcRecipientNotFound (LookupError)   1401 no such participant in the room
│   ├── RpcRequestTooLarge (ValueError)      1402 the request is over the limit
│   ├── RpcUnsupportedServer                 1403 the server is older than 1.8
│   └── RpcUnsupportedVersion                1404
├── InvalidRpcArgument (TypeError, ValueError)  bad identity, method, payload or timeout
├── ParticipantUpdateError                   the server refused a self-update
│   ├── ParticipantUpdateDenied (PermissionError)  no `canUpdateOwnMetadata`
│   └── InvalidParticipantUpdate (TypeError, ValueError)  a value of the wrong type
├── DataError
│   ├── DataTooLarge (ValueError)            payload over the packet limit (lossy)
│   ├── DataPermissionDenied (PermissionError)  no canPublishData
│   └── InvalidDataArgument (TypeError, ValueError)  bad payload, topic or destinations
├── AudioError
│   ├── AudioFormatError (ValueError)        wrong dtype, shape, channels, NaN/inf
│   └── CaptureError                         the native audio source refused a frame
├── VideoError
│   └── VideoFrameError (ValueError)         wrong type, dtype, shape or size of a frame
├── TrackError (RuntimeError)
│   ├── TrackNotPublished                    control of a track no longer published
│   └── TrackNotSubscribed                   media asked of a track not received
├── ServerApiError                           the server API answered with an error
│   ├── ServerApiNotFound (LookupError)      no such room, participant, track or dispatch
│   └── ServerApiNotAllowed (PermissionError)  wrong API key or secret, grants lacking
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
from typing import ClassVar

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
    "InvalidParticipantUpdate",
    "InvalidRpcArgument",
    "LkkitError",
    "LocalServerError",
    "NotConnected",
    "ParticipantUpdateDenied",
    "ParticipantUpdateError",
    "ProtocolError",
    "PublishError",
    "PublishNotAllowed",
    "RemoteCallError",
    "RpcApplicationError",
    "RpcConnectionTimeout",
    "RpcRecipientDisconnected",
    "RpcRecipientNotFound",
    "RpcRequestTooLarge",
    "RpcResponseTimeout",
    "RpcResponseTooLarge",
    "RpcSendFailed",
    "RpcUnsupportedMethod",
    "RpcUnsupportedServer",
    "RpcUnsupportedVersion",
    "ServerApiError",
    "ServerApiNotAllowed",
    "ServerApiNotFound",
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
    "TrackError",
    "TrackNotPublished",
    "TrackNotSubscribed",
    "VideoError",
    "VideoFrameError",
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
    """Raised when nothing answers at the server URL (refused, bad host, bad scheme):
    on joining a room, and on a server API call (`RoomAdmin`), where a server that does
    not answer within the request timeout counts as unreachable too."""


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


class PublishNotAllowed(PublishError, PermissionError):
    """Raised when the session's grants do not allow publishing a track of this
    source (`canPublish` false, or the source missing from `canPublishSources`),
    before anything is sent; or when the server refused the track for that reason."""


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


# -- RPC -----------------------------------------------------------------------------------


class RemoteCallError(LkkitError):
    """Raised when an RPC fails; raise it in a handler to answer the caller with an error.

    `code` is LiveKit's error code (the subclasses are its built-in codes, see the
    tree above), `message` a readable text, `data` an optional string (JSON, say).
    A handler may raise any code: `RemoteCallError("out of stock", code=2001,
    data='{"sku": 12}')` reaches the caller as a `RemoteCallError` with that code,
    message and data (LiveKit reserves 1001-1999 for its own codes). On the wire the
    message is cut to 256 UTF-8 bytes and the data to 15,360, as in every LiveKit SDK.
    """

    CODE: ClassVar[int] = 1500
    """The code of this class (`RemoteCallError` itself: any code, 1500 by default)."""

    def __init__(self, message: str = "", *, code: int | None = None, data: str | None = None):
        if code is None:
            code = self.CODE
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < 2**32:
            raise InvalidRpcArgument(f"an RPC error code is an int in [0, 2**32), got {code!r}")
        self.code = code
        self.message = message or _RPC_MESSAGES.get(code, "RPC failed")
        self.data = data or None
        super().__init__(f"{self.message} (RPC error {code})")

    @classmethod
    def from_code(cls, code: int, message: str = "", data: str | None = None) -> RemoteCallError:
        """The error for `code`: the built-in subclass when there is one."""
        error_type = _RPC_ERRORS.get(code, RemoteCallError)
        return error_type(message, code=code, data=data)


class RpcApplicationError(RemoteCallError):
    """Raised when the handler failed: it raised something other than a
    `RemoteCallError` (its details stay on the handler's side, in its log), or
    returned something other than a `str` (1500)."""

    CODE = 1500


class RpcConnectionTimeout(RemoteCallError, TimeoutError):
    """Raised when the recipient did not acknowledge the request within 7 s (1501)."""

    CODE = 1501


class RpcResponseTimeout(RemoteCallError, TimeoutError):
    """Raised when no response came within the call's timeout (1502), on the caller's
    side or when the handler overran the deadline it was given."""

    CODE = 1502


class RpcRecipientDisconnected(RemoteCallError, ConnectionError):
    """Raised when the recipient left, or its session ended, before it answered (1503)."""

    CODE = 1503


class RpcResponseTooLarge(RemoteCallError):
    """Raised when the handler's response is larger than the caller can receive
    (15,360 UTF-8 bytes for callers without data-stream RPC) (1504)."""

    CODE = 1504


class RpcSendFailed(RemoteCallError, ConnectionError):
    """Raised when the request could not be sent (1505)."""

    CODE = 1505


class RpcUnsupportedMethod(RemoteCallError, LookupError):
    """Raised when the recipient has no handler for the method (1400)."""

    CODE = 1400


class RpcRecipientNotFound(RemoteCallError, LookupError):
    """Raised when the recipient is not in the room (1401). LiveKit reports a missing
    recipient as a connection timeout after 7 s; lkkit raises this instead when the
    identity is still unknown to the session then."""

    CODE = 1401


class RpcRequestTooLarge(RemoteCallError, ValueError):
    """Raised before sending when the request payload is larger than the recipient can
    receive: 15,360 UTF-8 bytes for recipients without data-stream RPC (1402)."""

    CODE = 1402


class RpcUnsupportedServer(RemoteCallError):
    """Raised when the server is too old for RPC (before 1.8) (1403)."""

    CODE = 1403


class RpcUnsupportedVersion(RemoteCallError):
    """Raised when the recipient speaks another RPC version (1404)."""

    CODE = 1404


_RPC_ERRORS: dict[int, type[RemoteCallError]] = {
    t.CODE: t
    for t in (
        RpcApplicationError,
        RpcConnectionTimeout,
        RpcResponseTimeout,
        RpcRecipientDisconnected,
        RpcResponseTooLarge,
        RpcSendFailed,
        RpcUnsupportedMethod,
        RpcRecipientNotFound,
        RpcRequestTooLarge,
        RpcUnsupportedServer,
        RpcUnsupportedVersion,
    )
}

# LiveKit's messages for its codes (the same text in every SDK).
_RPC_MESSAGES: dict[int, str] = {
    1500: "Application error in method handler",
    1501: "Connection timeout",
    1502: "Response timeout",
    1503: "Recipient disconnected",
    1504: "Response payload too large",
    1505: "Failed to send",
    1400: "Method not supported at destination",
    1401: "Recipient not found",
    1402: "Request payload too large",
    1403: "RPC not supported by server",
    1404: "Unsupported RPC version",
}


class InvalidRpcArgument(LkkitError, TypeError, ValueError):
    """Raised before anything is sent when an RPC argument is unusable.

    An identity that is not a non-empty `str` (or is the caller's own), a method name
    that is not a non-empty `str` of at most 256 UTF-8 bytes, a payload that is not a
    `str` (or cannot be encoded as UTF-8), a timeout that is not a finite number > 0,
    a handler that is not callable, a method registered twice, or an unknown method
    unregistered. It subclasses both `TypeError` and `ValueError`.
    """


# -- self-updates ------------------------------------------------------------------------


class ParticipantUpdateError(LkkitError):
    """Raised when the server refuses to update the local participant's metadata, name
    or attributes.

    `reason` is the server's reason (`"NotAllowed"`, `"LimitExceeded"`, ...) when it
    gave one, else `""` (no answer in time, say).
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class ParticipantUpdateDenied(ParticipantUpdateError, PermissionError):
    """Raised when the token lacks `canUpdateOwnMetadata` (the server answers
    `NotAllowed`; the SDK alone would report success)."""


class InvalidParticipantUpdate(ParticipantUpdateError, TypeError, ValueError):
    """Raised before sending when a metadata, name or attributes value has the wrong type
    (not a `str`, or attributes that are not a mapping of `str` to `str`)."""


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


# -- video and tracks --------------------------------------------------------------------


class VideoError(LkkitError):
    """Root of the video errors."""


class VideoFrameError(VideoError, ValueError):
    """Raised before capture for a frame that is not a numpy uint8 array of the
    publisher's format and size (nothing is sent; earlier frames are unaffected)."""


class TrackError(LkkitError, RuntimeError):
    """Root of the errors about one track's state."""


class TrackNotPublished(TrackError):
    """Raised when controlling a local track that is no longer published (it was
    unpublished, or its session ended), or a publication that is not local."""


class TrackNotSubscribed(TrackError):
    """Raised when media is asked of a remote track publication this session does not
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


class ServerApiNotFound(ServerApiError, LookupError):
    """Raised when the room, participant, track or agent dispatch a server API call
    names does not exist."""


class ServerApiNotAllowed(ServerApiError, PermissionError):
    """Raised when the server refuses the call's credentials: a wrong API key or
    secret, or a key without the grants the call needs (HTTP 401 or 403)."""


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


def redact_tokens(text: str) -> str:
    """`text` with every JWT replaced by `<token>`."""
    return _JWT.sub("<token>", text)


def _connect_error(message: str) -> ConnectError:
    message = redact_tokens(message)
    if _TIMEOUT.search(message):
        return ConnectTimeout(message)
    if _REJECTED.search(message):
        return ConnectionRejected(message)
    if _UNREACHABLE.search(message):
        return ServerUnreachable(message)
    return ConnectError(message)


_UPDATE_ERROR = re.compile(r"request error: (\w+) - (.*)", re.S)


def participant_update_error(message: str) -> ParticipantUpdateError:
    """The lkkit exception for the native layer's answer to a refused self-update,
    e.g. `request error: NotAllowed - does not have permission to update own metadata`."""
    match = _UPDATE_ERROR.search(message)
    reason = match.group(1) if match else ""
    if reason == "NotAllowed":
        return ParticipantUpdateDenied(
            f"the server refused the update: {match.group(2) if match else message} "
            "(the token needs canUpdateOwnMetadata)",
            reason=reason,
        )
    return ParticipantUpdateError(f"the server refused the update: {message}", reason=reason)


def server_api_error(status: int | None, code: str | None, message: str) -> ServerApiError:
    """The typed error for a server API answer (HTTP `status`, Twirp `code`)."""
    if status in (401, 403) or code in ("unauthenticated", "permission_denied"):
        # The server's own text for these is empty or vague ("unknown: ").
        return ServerApiNotAllowed(
            f"the server refused the credentials (HTTP {status}): check the API key and "
            "secret, and that the key has the grants this call needs",
            status=status,
            code=code,
        )
    text = f"{code}: {message}"
    if status == 404 or code == "not_found":
        return ServerApiNotFound(text, status=status, code=code)
    return ServerApiError(text, status=status, code=code)


def translate(exc: BaseException) -> LkkitError | None:
    """The lkkit exception for an SDK exception, or `None` when it is not the SDK's."""
    from livekit import api, rtc

    if isinstance(exc, rtc.ConnectError):
        # Also scrubbed in the SDK's exception, kept as the `__cause__`.
        exc.message = redact_tokens(exc.message)
        exc.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in exc.args)
        return _connect_error(exc.message)
    if isinstance(exc, rtc.RpcError):
        return RemoteCallError.from_code(int(exc.code), exc.message, exc.data)
    if isinstance(exc, api.ServerError):
        return server_api_error(exc.status, exc.code, exc.message)
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
