"""Sessions: one connection of one participant to one room.

```python
async with lkkit.connect(url, token) as session:
    print(session.room_name, [p.identity for p in session.remote_participants.values()])
```

However the block ends (normal exit, exception, cancellation) the session tells the
server it leaves, so others see the leave at once instead of after the ~15 s the
server waits for a vanished client. Sessions still open when the interpreter exits
are disconnected by an `atexit` hook.
"""

from __future__ import annotations

import asyncio
import atexit
import enum
import inspect
import logging
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
from livekit import rtc
from livekit.rtc._ffi_client import FfiClient
from livekit.rtc._proto import ffi_pb2 as proto_ffi

from ._event_bus import (
    DEFAULT_BUFFER,
    EventBus,
    EventHandler,
    EventSubscription,
    HandlerResult,
    OverflowPolicy,
)
from ._events import Disconnected, Event
from ._exceptions import (
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    NotConnected,
    SessionStateError,
    map_sdk_exceptions,
)
from ._participants import LocalParticipant, Participant, RemoteParticipant
from ._types import (
    ConnectionState,
    DisconnectReason,
    connection_state_from_sdk,
)

if TYPE_CHECKING:
    from ._audio import SessionAudio
    from ._data import DataChannel

__all__ = ["ConnectOptions", "Session", "ShutdownCallback", "connect"]

logger = logging.getLogger("lkkit")

ShutdownCallback = Callable[[], "Awaitable[object] | object"]
"""A callable run once when a session ends; it may be sync or async."""

_DISCONNECT_TIMEOUT_S = 5.0
_E = TypeVar("_E", bound=Event)
_ATEXIT_GRACE_S = 0.5


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How a session connects. Immutable; build a new one with `dataclasses.replace`.

    Attributes:
        auto_subscribe: subscribe to every track in the room (LiveKit's default).
        dynacast: pause video layers nobody watches.
        connect_timeout: seconds the whole join may take before
            [`ConnectTimeout`][lkkit.ConnectTimeout]; bounded so a dead server
            never hangs the caller.
        disconnect_timeout: seconds leaving may take before lkkit gives up waiting.
        e2ee_key: a shared key for end-to-end encryption of media (AES-GCM, keys
            derived by the SDK); every participant must use the same key. `None`
            (the default) sends media encrypted only in transport (DTLS-SRTP).
    """

    auto_subscribe: bool = True
    dynacast: bool = False
    connect_timeout: float = 15.0
    disconnect_timeout: float = _DISCONNECT_TIMEOUT_S
    e2ee_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.connect_timeout > 0:
            raise ConfigurationError(f"connect_timeout must be > 0, got {self.connect_timeout}")
        if not self.disconnect_timeout > 0:
            raise ConfigurationError(
                f"disconnect_timeout must be > 0, got {self.disconnect_timeout}"
            )
        if self.e2ee_key is not None and (
            not isinstance(self.e2ee_key, bytes) or not self.e2ee_key
        ):
            raise ConfigurationError("e2ee_key must be non-empty bytes (or None)")

    def _to_sdk(self) -> rtc.RoomOptions:
        encryption = None
        if self.e2ee_key is not None:
            encryption = rtc.E2EEOptions(
                key_provider_options=rtc.KeyProviderOptions(shared_key=self.e2ee_key)
            )
        return rtc.RoomOptions(
            auto_subscribe=self.auto_subscribe,
            dynacast=self.dynacast,
            encryption=encryption,
            # Each signal attempt gets the whole budget; lkkit bounds the total itself.
            connect_timeout=self.connect_timeout,
        )


class _State(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


def _check_url(url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.hostname:
        raise ConfigurationError(
            f"server URL must look like ws://host:port or wss://host, got {url!r}"
        )


# Sessions whose room lkkit owns and that are still connected, for the atexit hook.
_open_sessions: weakref.WeakSet[Session] = weakref.WeakSet()


class Session:
    """A connected participant in a room.

    Create one with [`lkkit.connect`][lkkit.connect] (lkkit owns the connection) or
    [`Session.attach`][lkkit.Session.attach] (someone else does). Use it as an
    `async with` block; [`aclose`][lkkit.Session.aclose] ends it explicitly.
    Only the asyncio backend is supported: the SDK is bound to asyncio.
    """

    def __init__(
        self,
        url: str,
        token: str,
        options: ConnectOptions | None = None,
        *,
        _room: rtc.Room | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._options = options or ConnectOptions()
        self._room: rtc.Room | None = _room
        self._owns_room = _room is None
        self._state = _State.NEW
        self._room_sid = ""
        self._shutdown_callbacks: list[ShutdownCallback] = []
        self._shutdown_done = False
        self._disconnect_reason: DisconnectReason | None = None
        self._ended = asyncio.Event()
        self._close_hooks: list[Callable[[], None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._stop_watching: Callable[[], None] = lambda: None
        # Bound to the room before connect, so events of the join itself are not lost.
        self._bus = EventBus()
        # Subscriptions end when the session ends, after its Disconnected event.
        self._on_close(lambda: self._bus.close(self._disconnect_reason))
        self._data: DataChannel | None = None
        self._audio: SessionAudio | None = None

    # -- construction --------------------------------------------------------------------

    @classmethod
    def attach(cls, room: rtc.Room, options: ConnectOptions | None = None) -> Session:
        """Wrap an `rtc.Room` that is already connected, without owning it.

        Leaving the `async with` block (or `aclose`) runs the shutdown callbacks and
        ends lkkit's subscriptions, but leaves the room connected: whoever connected
        it (an agent framework, say) disconnects it.

        Raises:
            NotConnected: the room is not connected.
        """
        if not room.isconnected():
            raise NotConnected("Session.attach needs a connected rtc.Room")
        return cls("", "", options, _room=room)

    # -- state ---------------------------------------------------------------------------

    @property
    def room(self) -> rtc.Room:
        """The SDK room behind this session, for what lkkit does not wrap.

        Raises:
            NotConnected: the session has not connected yet.
        """
        if self._room is None:
            raise NotConnected("the session has not connected yet")
        return self._room

    @property
    def is_connected(self) -> bool:
        """Whether the session is connected (or reconnecting) right now."""
        return (
            self._state is _State.CONNECTED
            and self._room is not None
            and self.connection_state is not ConnectionState.DISCONNECTED
        )

    @property
    def connection_state(self) -> ConnectionState:
        if self._room is None or (self._state is _State.CLOSED and self._owns_room):
            return ConnectionState.DISCONNECTED
        return connection_state_from_sdk(self._room.connection_state)

    @property
    def disconnect_reason(self) -> DisconnectReason | None:
        """Why the session was disconnected; `None` while it is connected."""
        return self._disconnect_reason

    @property
    def room_name(self) -> str:
        return self.room.name

    @property
    def room_sid(self) -> str:
        """The room's server id (`RM_...`), known once the session is connected."""
        return self._room_sid or self.room._info.sid

    @property
    def room_metadata(self) -> str:
        return self.room.metadata

    @property
    def local_participant(self) -> LocalParticipant:
        return LocalParticipant(self.room.local_participant)

    @property
    def remote_participants(self) -> Mapping[str, RemoteParticipant]:
        """The other participants by identity (hidden participants are not listed)."""
        return MappingProxyType(
            {
                identity: RemoteParticipant(p)
                for identity, p in self.room.remote_participants.items()
            }
        )

    def require_connected(self) -> rtc.Room:
        """The SDK room, or [`NotConnected`][lkkit.NotConnected] when not connected."""
        if not self.is_connected:
            raise NotConnected(
                f"the session is {self.connection_state.value}"
                + (f" ({self._disconnect_reason.value})" if self._disconnect_reason else "")
            )
        return self.room

    # -- capabilities ------------------------------------------------------------------

    @property
    def data(self) -> DataChannel:
        """Data messages: send any size, receive by topic (see the data page)."""
        if self._data is None:
            from ._data import DataChannel

            self._data = DataChannel(self)
        return self._data

    @property
    def audio(self) -> SessionAudio:
        """Audio: publish fixed frames through a 50 ms buffer, receive as numpy."""
        if self._audio is None:
            from ._audio import SessionAudio

            self._audio = SessionAudio(self)
        return self._audio

    # -- events --------------------------------------------------------------------------

    @overload
    def events(
        self,
        *,
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> EventSubscription[Event]: ...

    @overload
    def events(
        self,
        event_type: type[_E],
        /,
        *,
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> EventSubscription[_E]: ...

    @overload
    def events(
        self,
        event_type: type[Event],
        /,
        *more_types: type[Event],
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> EventSubscription[Event]: ...

    def events(
        self,
        *types: type[Any],
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> EventSubscription[Any]:
        """Subscribe to this session's events: all of them, some types, or one participant's.

        ```python
        async with session.events(lkkit.TrackPublished, participant="bob") as events:
            async for event in events:
                print(event.publication.source)
        ```

        Enter the subscription with `async with`; it ends (iteration stops) when the
        session ends, after the session's [`Disconnected`][lkkit.Disconnected] event.
        `events.snapshot` holds the participants and tracks already there when it
        started. It may also be entered before the session connects.

        Args:
            *types: event classes to receive; none means every event.
            participant: an identity (or participant view): only events that belong
                to that participant (the participant-scoped event types).
            buffer: events buffered for a slow reader before `overflow` applies.
            overflow: what to do when the buffer is full; see
                [`OverflowPolicy`][lkkit.OverflowPolicy].

        Raises:
            ConfigurationError: an unknown event type, `buffer < 1`, or a participant
                filter together with room-only event types.
            SessionStateError: the session has already ended.
        """
        return self._bus.subscribe(tuple(types), participant, buffer=buffer, overflow=overflow)

    @overload
    def on(
        self,
        handler: Callable[[Event], HandlerResult],
        /,
        *,
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> EventHandler: ...

    @overload
    def on(
        self,
        handler: Callable[[_E], HandlerResult],
        event_type: type[_E],
        /,
        *more_types: type[_E],
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> EventHandler: ...

    def on(
        self,
        handler: Callable[[Any], HandlerResult],
        /,
        *types: type[Any],
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> EventHandler:
        """Call `handler(event)` for each event of `types` (all when none are given).

        ```python
        handler = session.on(on_join, lkkit.ParticipantConnected)
        ...
        handler.remove()
        ```

        A sync handler runs inside the SDK's event dispatch, so keep it short. An
        `async def` handler runs in a task owned by the session, one event at a time
        in order, fed from its own buffer of `buffer` events (the oldest is dropped
        and counted in `handler.dropped` when it falls behind); it finishes its
        buffered events when the session ends, and is cancelled if it takes longer
        than `options.disconnect_timeout`. A handler that raises is logged with the
        event and counted (`handler.errors`); the others go on.

        Raises:
            ConfigurationError: `handler` is not callable, an unknown event type,
                `buffer < 1`, or a participant filter with room-only event types.
            SessionStateError: the session has already ended.
        """
        return self._bus.add_handler(handler, tuple(types), participant, buffer=buffer)

    # -- shutdown callbacks --------------------------------------------------------------

    def add_shutdown_callback(self, callback: ShutdownCallback) -> None:
        """Run `callback` once when the session ends, whichever way it ends.

        It may be sync or async. Callbacks run in the order they were added; one
        that raises is logged and does not stop the others.
        """
        if self._shutdown_done:
            raise SessionStateError("the session has already ended")
        self._shutdown_callbacks.append(callback)

    def _on_close(self, hook: Callable[[], None]) -> None:
        # Internal: parts of lkkit (event subscriptions, data, audio) end with the session.
        self._close_hooks.append(hook)

    async def _run_shutdown_callbacks(self) -> None:
        if self._shutdown_done:
            return
        self._shutdown_done = True
        for hook in self._close_hooks:
            try:
                hook()
            except Exception:
                logger.exception("lkkit close hook %r failed", hook)
        for callback in self._shutdown_callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("shutdown callback %r raised", callback)

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _open(self) -> None:
        if self._state is not _State.NEW:
            raise SessionStateError(f"a session can be opened once; it is {self._state.value}")
        self._state = _State.CONNECTING
        try:
            if self._owns_room:
                await self._connect()
            else:
                self._bus.bind(self.room)
            room = self.room
            self._stop_watching = self._bus.add_listener(self._watch_for_disconnect)
            self._room_sid = await self._wait_for_sid(room)
        except BaseException:
            self._state = _State.CLOSED
            raise
        self._state = _State.CONNECTED
        if self._owns_room:
            _open_sessions.add(self)

    async def _connect(self) -> None:
        _check_url(self._url)
        room = rtc.Room()
        self._room = room
        self._bus.bind(room)
        deadline = self._options.connect_timeout
        try:
            with map_sdk_exceptions():
                await asyncio.wait_for(
                    room.connect(self._url, self._token, self._options._to_sdk()),
                    timeout=deadline,
                )
        except asyncio.TimeoutError as exc:
            await self._disconnect_room(room)
            raise ConnectTimeout(f"joining {self._url} took longer than {deadline:g} s") from exc
        except ConnectError:
            await self._disconnect_room(room)
            raise
        except BaseException:
            # Cancelled: the SDK cannot cancel an in-flight connect, but a connect
            # that already finished must still be left.
            await self._disconnect_room(room)
            raise

    async def _wait_for_sid(self, room: rtc.Room) -> str:
        try:
            with anyio.fail_after(self._options.connect_timeout):
                return await room.sid
        except (TimeoutError, RuntimeError):
            return ""

    def _watch_for_disconnect(self, event: Event) -> None:
        # A bus listener (sync, in SDK dispatch order): the server ended the session
        # (removed, room deleted) or it failed beyond recovery.
        if not isinstance(event, Disconnected):
            return
        if self._disconnect_reason is None:
            self._disconnect_reason = event.reason
        _open_sessions.discard(self)
        self._ended.set()
        if self._state is _State.CONNECTED and not self._shutdown_done:
            task = asyncio.get_running_loop().create_task(self._run_shutdown_callbacks())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _disconnect_room(self, room: rtc.Room) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._options.disconnect_timeout):
            try:
                await room.disconnect()
            except Exception:
                logger.exception("disconnecting from the room failed")

    async def aclose(self) -> None:
        """Leave the room (when lkkit owns it) and run the shutdown callbacks. Idempotent.

        Runs to completion even when the calling task is being cancelled.
        """
        if self._state is _State.CLOSED:
            return
        was_connected = self._state is _State.CONNECTED
        self._state = _State.CLOSED
        _open_sessions.discard(self)
        with anyio.CancelScope(shield=True):
            if self._room is not None:
                self._stop_watching()
                if self._owns_room and was_connected:
                    await self._disconnect_room(self._room)
                    if self._disconnect_reason is None:
                        self._disconnect_reason = DisconnectReason.CLIENT_INITIATED
            for task in list(self._background):
                await task
            # The close hooks it runs end the bus (after its Disconnected event).
            await self._run_shutdown_callbacks()
            await self._bus.wait_handlers(self._options.disconnect_timeout)
            self._ended.set()

    async def wait_closed(self) -> DisconnectReason | None:
        """Wait until the session has ended; return why it was disconnected."""
        if self._state is _State.NEW:
            raise SessionStateError("the session was never opened")
        await self._ended.wait()
        return self._disconnect_reason

    def __repr__(self) -> str:
        room = self._room.name if self._room is not None else "-"
        return f"<Session room={room!r} state={self._state.value}>"


def connect(url: str, token: str, options: ConnectOptions | None = None) -> Session:
    """A session that joins the room when entered: `async with lkkit.connect(...) as s:`.

    The room is created by the server when this is its first participant (or exists
    already, created with a `room_create` token or the server API).

    Raises (on entering):
        ConfigurationError: the URL is not a ws/wss/http/https URL.
        ServerUnreachable: nothing answered at the URL.
        ConnectionRejected: the server refused the token (malformed, expired, wrongly
            signed, or without `roomJoin`).
        ConnectTimeout: the join did not complete within `options.connect_timeout`.
    """
    return Session(url, token, options)


def _disconnect_at_exit() -> None:
    # The event loop is usually gone by now, so ask the native layer directly and give
    # it a moment to send the leave to the server.
    sent = False
    for session in list(_open_sessions):
        room = session._room
        handle = getattr(room, "_ffi_handle", None)
        if handle is None:
            continue
        req = proto_ffi.FfiRequest()
        req.disconnect.room_handle = handle.handle
        req.disconnect.reason = rtc.DisconnectReason.CLIENT_INITIATED
        try:
            FfiClient.instance.request(req)
            sent = True
        except Exception:  # the interpreter is exiting: nothing better to do
            logger.debug("disconnect at exit failed", exc_info=True)
    if sent:
        time.sleep(_ATEXIT_GRACE_S)


atexit.register(_disconnect_at_exit)
