"""RPC: call a method of another participant, and answer calls (`session.rpc`).

```python
@session.rpc.method("greet")
async def greet(call: lkkit.RpcInvocation) -> str:
    return f"hello {call.caller_identity}"

answer = await session.rpc.call("bob", "greet", '{"lang": "en"}', timeout=5)
```

Built on the SDK's `perform_rpc` / `register_rpc_method`, so any LiveKit participant
(browser, phone app, agent, another SDK) can be called or call in. lkkit adds:

- LiveKit's error codes as exception classes under
  [`RemoteCallError`][lkkit.RemoteCallError] (`.code`, `.message`, `.data`);
- checks before anything is sent: the method name, the payload (a `str`, within
  15,360 UTF-8 bytes for a recipient without data-stream RPC, as LiveKit defines it),
  the timeout;
- async handlers run in tasks owned by the session; every handler is unregistered
  when the session ends; a handler that raises anything but a `RemoteCallError`
  answers LiveKit's application error (1500) and is logged here, so its details never
  reach the caller.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from livekit import rtc

from ._core import SessionCore
from ._exceptions import (
    InvalidRpcArgument,
    RemoteCallError,
    RpcApplicationError,
    RpcConnectionTimeout,
    RpcRecipientDisconnected,
    RpcRecipientNotFound,
    RpcRequestTooLarge,
    RpcResponseTooLarge,
    SessionStateError,
    map_sdk_exceptions,
)
from ._sdk_compat import CLIENT_PROTOCOL_DATA_STREAM_RPC, client_protocol

__all__ = [
    "DEFAULT_RPC_TIMEOUT",
    "MAX_RPC_METHOD_BYTES",
    "MAX_RPC_PAYLOAD_BYTES",
    "RpcHandler",
    "RpcInvocation",
    "SessionRpc",
]

logger = logging.getLogger("lkkit")

DEFAULT_RPC_TIMEOUT = 15.0
"""Seconds a call waits for its response by default: LiveKit's default (the Rust,
Python and JavaScript SDKs)."""

MAX_RPC_PAYLOAD_BYTES = 15_360
"""The largest request or response payload, in UTF-8 bytes, that a participant without
data-stream RPC (client protocol < 1) accepts. Newer clients (livekit-client 2.x, the
Python SDK 1.2) take any size: LiveKit then sends the payload as a data stream."""

MAX_RPC_METHOD_BYTES = 256
"""lkkit's limit on a method name, in UTF-8 bytes (LiveKit has none; the name travels in
every request)."""

_MAX_ERROR_MESSAGE_BYTES = 256  # LiveKit's RpcError.MAX_MESSAGE_BYTES
_MAX_ERROR_DATA_BYTES = 15_360  # LiveKit's RpcError.MAX_DATA_BYTES
_MAX_TIMEOUT_S = (2**32 - 1) / 1000  # the wire carries milliseconds in a uint32


@dataclass(frozen=True, slots=True)
class RpcInvocation:
    """One incoming call, as a handler receives it.

    Attributes:
        method: the method called.
        caller_identity: the identity of the participant that called.
        request_id: the call's id, the same on both sides (for logs).
        payload: the request payload (often JSON).
        response_timeout: seconds the handler has to answer; after that the caller
            gets [`RpcResponseTimeout`][lkkit.RpcResponseTimeout] and the handler's
            task is cancelled.
    """

    method: str
    caller_identity: str
    request_id: str
    payload: str
    response_timeout: float


RpcHandler = Callable[[RpcInvocation], "Awaitable[str] | str"]
"""A handler: a function (sync or `async`) of an [`RpcInvocation`][lkkit.RpcInvocation]
that returns the response payload."""

_H = TypeVar("_H", bound=RpcHandler)


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidRpcArgument(f"the {what} cannot be encoded as UTF-8: {exc}") from None


def _check_method(method: object) -> str:
    if not isinstance(method, str):
        raise InvalidRpcArgument(f"an RPC method name is a str, got {type(method).__name__}")
    if not method:
        raise InvalidRpcArgument("an RPC method name cannot be empty")
    if len(_utf8(method, "method name")) > MAX_RPC_METHOD_BYTES:
        raise InvalidRpcArgument(
            f"an RPC method name is at most {MAX_RPC_METHOD_BYTES} UTF-8 bytes, got {method!r:.80}"
        )
    return method


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidRpcArgument(f"timeout is a number of seconds, got {timeout!r}")
    if not (math.isfinite(timeout) and 0 < timeout <= _MAX_TIMEOUT_S):
        raise InvalidRpcArgument(f"timeout must be > 0 seconds (and finite), got {timeout!r}")
    return float(timeout)


def _truncate(text: str, limit: int) -> str:
    data = text.encode(errors="replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore")  # never half a character


def _sdk_error(error: RemoteCallError) -> rtc.RpcError:
    """What the SDK sends back for an lkkit error raised by a handler (cut to
    LiveKit's limits, like every SDK does)."""
    data = None if error.data is None else _truncate(error.data, _MAX_ERROR_DATA_BYTES)
    return rtc.RpcError(error.code, _truncate(error.message, _MAX_ERROR_MESSAGE_BYTES), data)


def _accepts_large_payloads(participant: rtc.Participant | None) -> bool:
    return (
        participant is not None and client_protocol(participant) >= CLIENT_PROTOCOL_DATA_STREAM_RPC
    )


class SessionRpc:
    """RPC for one session: [`call`][lkkit.SessionRpc.call] other participants'
    methods, and answer calls with handlers ([`method`][lkkit.SessionRpc.method],
    [`register`][lkkit.SessionRpc.register]). Get it as `session.rpc`.

    Handlers are unregistered when the session ends; a call in progress then gets
    [`RpcRecipientDisconnected`][lkkit.RpcRecipientDisconnected].
    """

    def __init__(self, core: SessionCore) -> None:
        self._core = core
        self._handlers: dict[str, RpcHandler] = {}
        self._participant: rtc.LocalParticipant | None = None
        core.on_close(self._unregister_all)

    # -- calling -----------------------------------------------------------------------

    async def call(
        self,
        identity: str,
        method: str,
        payload: str = "",
        *,
        timeout: float = DEFAULT_RPC_TIMEOUT,
    ) -> str:
        """Call `method` of participant `identity` with `payload`; return its response.

        Args:
            identity: the participant to call.
            method: the method name its handler was registered under.
            payload: the request, a `str` (JSON, say).
            timeout: seconds to wait for the response once the recipient acknowledged
                the request (LiveKit's default, 15 s). The recipient's handler gets
                `timeout - 7 s`, at least 1 s: LiveKit keeps 7 s for the round trip.

        Raises:
            InvalidRpcArgument: a bad identity, method, payload or timeout; nothing sent.
            RpcRequestTooLarge: the payload is over 15,360 UTF-8 bytes and the recipient
                does not take larger ones; nothing sent.
            RpcUnsupportedMethod: the recipient has no handler for `method`.
            RpcRecipientNotFound: no participant `identity` answered (known after 7 s).
            RpcResponseTimeout: no response within `timeout`.
            RemoteCallError: the handler answered with an error (its code, message and
                data), or another of LiveKit's errors (see the subclasses).
            NotConnected: the session is not connected.
        """
        if not isinstance(identity, str) or not identity:
            raise InvalidRpcArgument(f"identity is a non-empty str, got {identity!r}")
        _check_method(method)
        if not isinstance(payload, str):
            raise InvalidRpcArgument(
                f"an RPC payload is a str, got {type(payload).__name__} "
                "(encode bytes as text, base64 for example)"
            )
        response_timeout = _check_timeout(timeout)
        room = self._core.require_connected()
        local = room.local_participant
        if identity == local.identity:
            raise InvalidRpcArgument("a participant cannot call its own methods over RPC")
        size = len(_utf8(payload, "payload"))
        if size > MAX_RPC_PAYLOAD_BYTES and not _accepts_large_payloads(
            room.remote_participants.get(identity)
        ):
            raise RpcRequestTooLarge(
                f"the payload is {size} UTF-8 bytes; {identity!r} takes at most "
                f"{MAX_RPC_PAYLOAD_BYTES} (its LiveKit client predates data-stream RPC)"
            )
        try:
            with map_sdk_exceptions():
                return await local.perform_rpc(
                    destination_identity=identity,
                    method=method,
                    payload=payload,
                    response_timeout=response_timeout,
                )
        except RpcConnectionTimeout as exc:
            if identity not in room.remote_participants:
                raise RpcRecipientNotFound(
                    f"no participant {identity!r} in the room answered", data=exc.data
                ) from exc
            raise

    # -- answering ---------------------------------------------------------------------

    @property
    def methods(self) -> frozenset[str]:
        """The method names this session has handlers for."""
        return frozenset(self._handlers)

    def method(self, name: str) -> Callable[[_H], _H]:
        """Register the decorated function as the handler of `name`:

        ```python
        @session.rpc.method("add")
        def add(call: lkkit.RpcInvocation) -> str:
            a, b = json.loads(call.payload)
            return json.dumps(a + b)
        ```

        The function is returned unchanged. See [`register`][lkkit.SessionRpc.register].
        """
        _check_method(name)

        def decorate(handler: _H) -> _H:
            self.register(name, handler)
            return handler

        return decorate

    def register(self, name: str, handler: RpcHandler) -> None:
        """Answer calls of `name` with `handler`.

        The handler gets an [`RpcInvocation`][lkkit.RpcInvocation] and returns the
        response payload (a `str`). An `async def` handler runs in a task owned by the
        session, cancelled when the caller's deadline passes or the session ends; a
        sync one runs on the event loop, so keep it short. To answer with an error,
        raise a [`RemoteCallError`][lkkit.RemoteCallError] (any code, message and
        data); anything else it raises is logged here and the caller gets
        [`RpcApplicationError`][lkkit.RpcApplicationError] (1500) without its details.

        Raises:
            InvalidRpcArgument: a bad name, a handler that is not callable, or a
                handler already registered for `name` (unregister it first).
            NotConnected: the session is not connected.
        """
        _check_method(name)
        if not callable(handler):
            raise InvalidRpcArgument(f"an RPC handler is callable, got {handler!r}")
        if name in self._handlers:
            raise InvalidRpcArgument(f"RPC method {name!r} already has a handler")
        participant = self._core.require_connected().local_participant
        self._participant = participant
        self._handlers[name] = handler
        participant.register_rpc_method(name, self._sdk_handler(handler))

    def unregister(self, name: str) -> None:
        """Stop answering calls of `name` (callers then get
        [`RpcUnsupportedMethod`][lkkit.RpcUnsupportedMethod]). Calls being handled finish.

        Raises:
            InvalidRpcArgument: this session has no handler for `name`.
        """
        if name not in self._handlers:
            raise InvalidRpcArgument(f"RPC method {name!r} has no handler in this session")
        del self._handlers[name]
        if self._participant is not None:
            self._participant.unregister_rpc_method(name)

    def _unregister_all(self) -> None:
        participant, self._participant = self._participant, None
        names = list(self._handlers)
        self._handlers.clear()
        if participant is None:
            return
        for name in names:
            try:
                participant.unregister_rpc_method(name)
            except Exception:  # the room is gone already: nothing left to answer
                logger.debug("unregistering RPC method %r at session end failed", name)

    def _sdk_handler(
        self, handler: RpcHandler
    ) -> Callable[[rtc.RpcInvocationData], Awaitable[str]]:
        core = self._core

        async def on_invocation(data: rtc.RpcInvocationData) -> str:
            # The SDK runs this in a task of its own and cancels it at the caller's
            # deadline (or when the room disconnects). A sync handler runs right here;
            # an async one in a task the session owns, cancelled with this one.
            invocation = RpcInvocation(
                method=data.method,
                caller_identity=data.caller_identity,
                request_id=data.request_id,
                payload=data.payload,
                response_timeout=data.response_timeout,
            )
            if core.closed:
                raise _sdk_error(RpcRecipientDisconnected())
            outcome: str | RemoteCallError
            try:
                result = handler(invocation)
            except Exception as exc:
                outcome = _failed(exc, invocation)
            else:
                if inspect.isawaitable(result):
                    outcome = await _in_session_task(core, result, invocation)
                else:
                    outcome = _checked(result, invocation)
            if isinstance(outcome, RemoteCallError):
                raise _sdk_error(outcome)
            size = len(outcome.encode())
            if size > MAX_RPC_PAYLOAD_BYTES and not _accepts_large_payloads(
                core.room.remote_participants.get(data.caller_identity)
            ):
                logger.error(
                    "RPC handler for %r answered %d UTF-8 bytes; caller %r takes at most %d",
                    data.method,
                    size,
                    data.caller_identity,
                    MAX_RPC_PAYLOAD_BYTES,
                )
                raise _sdk_error(RpcResponseTooLarge())
            return outcome

        return on_invocation


async def _in_session_task(
    core: SessionCore, awaitable: Awaitable[object], invocation: RpcInvocation
) -> str | RemoteCallError:
    """Await an async handler's result in a task the session owns: the response, or the
    error the caller gets."""

    async def settle() -> str | RemoteCallError:
        try:
            result = await awaitable
        except Exception as exc:
            return _failed(exc, invocation)
        return _checked(result, invocation)

    try:
        task = core.spawn(settle(), name=f"rpc {invocation.method}")
    except SessionStateError:  # the session is ending
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        return RpcRecipientDisconnected()
    try:
        await asyncio.wait((task,))  # never cancels the task: tells who cancelled whom
    except asyncio.CancelledError:  # the SDK cancelled the call: deadline, or room left
        task.cancel()
        raise
    if task.cancelled():  # the session ended and cancelled the handler
        return RpcRecipientDisconnected()
    return task.result()


def _failed(exc: Exception, invocation: RpcInvocation) -> RemoteCallError:
    """What the caller gets for an exception of the handler: a `RemoteCallError` as it
    is; anything else is logged here and answered as an application error."""
    if isinstance(exc, RemoteCallError):
        return exc
    logger.error(
        "RPC handler for %r raised (call %s from %r); the caller gets an application error",
        invocation.method,
        invocation.request_id,
        invocation.caller_identity,
        exc_info=exc,
    )
    return RpcApplicationError()


def _checked(result: object, invocation: RpcInvocation) -> str | RemoteCallError:
    if not isinstance(result, str):
        logger.error(
            "RPC handler for %r returned %s, not a str; the caller gets an application error",
            invocation.method,
            type(result).__name__,
        )
        return RpcApplicationError()
    try:
        result.encode()
    except UnicodeEncodeError:
        logger.error("RPC handler for %r returned a str that is not valid UTF-8", invocation.method)
        return RpcApplicationError()
    return result
