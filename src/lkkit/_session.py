"""Sessions: one connection of one participant to one room.

```python
async with lkkit.connect(url, token) as session:
    print(session.room_name, [p.identity for p in session.remote_participants.values()])
```

However the block ends (normal exit, exception, cancellation) the session tells the
server it leaves, so others see the leave at once instead of after the ~15 s the
server waits for a vanished client. Sessions still open when the interpreter exits
are left by the SDK's own `atexit` hook, which disposes of the native layer and so
closes every room (measured: lkkit adding a hook of its own changed nothing).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import urllib.parse
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeVar, overload

import anyio
from livekit import rtc

from . import _self_updates
from ._audio import SessionAudio
from ._core import SessionCore, SessionState
from ._data import DataChannel
from ._event_bus import DEFAULT_BUFFER, EventHandler, EventSubscription, HandlerResult
from ._events import (
    Disconnected,
    Event,
    ParticipantConnected,
    ParticipantDisconnected,
    TrackPublished,
    TrackSubscribed,
)
from ._exceptions import (
    ConfigurationError,
    ConnectTimeout,
    NotConnected,
    SessionStateError,
    map_sdk_exceptions,
)
from ._participants import LocalParticipant, Participant, RemoteParticipant, TrackPublication
from ._rpc import SessionRpc
from ._sdk_compat import (
    exit_after_native_teardown,
    redact_sdk_logs,
    room_sid_now,
    room_was_connected,
)
from ._subscription import OverflowPolicy
from ._types import ConnectionState, DisconnectReason, ParticipantKind, TrackKind, TrackSource
from ._video import SessionVideo

__all__ = ["ConnectOptions", "Session", "ShutdownCallback", "connect"]

logger = logging.getLogger("lkkit")

ShutdownCallback = Callable[[], "Awaitable[object] | object"]
"""A callable run once when a session ends; it may be sync or async."""

_DISCONNECT_TIMEOUT_S = 5.0
_SHUTDOWN_TIMEOUT_S = 5.0
_E = TypeVar("_E", bound=Event)


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
        shutdown_timeout: seconds the shutdown callbacks and the async event handlers
            still finishing get together when the session ends; then they are
            cancelled.
        e2ee_key: a shared key for end-to-end encryption of media (AES-GCM, keys
            derived by the SDK); every participant must use the same key. `None`
            (the default) sends media encrypted only in transport (DTLS-SRTP).
    """

    auto_subscribe: bool = True
    dynacast: bool = False
    connect_timeout: float = 15.0
    disconnect_timeout: float = _DISCONNECT_TIMEOUT_S
    shutdown_timeout: float = _SHUTDOWN_TIMEOUT_S
    e2ee_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.connect_timeout > 0:
            raise ConfigurationError(f"connect_timeout must be > 0, got {self.connect_timeout}")
        if not self.disconnect_timeout > 0:
            raise ConfigurationError(
                f"disconnect_timeout must be > 0, got {self.disconnect_timeout}"
            )
        if not self.shutdown_timeout > 0:
            raise ConfigurationError(f"shutdown_timeout must be > 0, got {self.shutdown_timeout}")
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


def _check_url(url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.hostname:
        raise ConfigurationError(
            f"server URL must look like ws://host:port or wss://host, got {url!r}"
        )


class Session:
    """A connected participant in a room.

    Create one with [`lkkit.connect`][lkkit.connect] (lkkit owns the connection) or
    [`Session.attach`][lkkit.Session.attach] (someone else does). Use it as an
    `async with` block, or `session = await lkkit.connect(...)` and
    [`aclose`][lkkit.Session.aclose] it. Only the asyncio backend is supported: the
    SDK is bound to asyncio.
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
        self._disconnect_reason: DisconnectReason | None = None
        # The core comes first: the event bus is bound to the room before connect, so
        # events of the join itself are not lost, and every capability gets the core.
        self._core = SessionCore(lambda: self._disconnect_reason)
        self._core.owns_room = _room is None
        self._given_room = _room
        self._room_sid = ""
        self._shutdown_callbacks: list[ShutdownCallback] = []
        self._callbacks_started = False
        self._ended = asyncio.Event()
        self._closer: asyncio.Task[None] | None = None
        self._closing_task: asyncio.Task[Any] | None = None
        self._joining: asyncio.Task[None] | None = None
        self._awaited = False
        self._entered = False
        self._stop_watching: Callable[[], None] = lambda: None
        self._data: DataChannel | None = None
        self._audio: SessionAudio | None = None
        self._video: SessionVideo | None = None
        self._rpc: SessionRpc | None = None

    # -- construction --------------------------------------------------------------------

    @classmethod
    def attach(cls, room: rtc.Room, options: ConnectOptions | None = None) -> Session:
        """Wrap an `rtc.Room` that is already connected, without owning it.

        Leaving the `async with` block (or `aclose`) runs the shutdown callbacks and
        ends lkkit's subscriptions, but leaves the room connected: whoever connected
        it (an agent framework, say) disconnects it. Several sessions may attach to
        one room; each ends on its own.

        Raises:
            NotConnected: the room is not connected.
        """
        if not room.isconnected():
            raise NotConnected("Session.attach needs a connected rtc.Room")
        return cls("", "", options, _room=room)

    # -- state ---------------------------------------------------------------------------

    @property
    def options(self) -> ConnectOptions:
        """The options this session was made with."""
        return self._options

    @property
    def room(self) -> rtc.Room:
        """The SDK room behind this session, for what lkkit does not wrap.

        Raises:
            NotConnected: the session has not connected yet.
        """
        return self._core.room

    @property
    def is_connected(self) -> bool:
        """Whether the session is connected (or reconnecting) right now."""
        return self._core.is_connected

    @property
    def connection_state(self) -> ConnectionState:
        return self._core.connection_state

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
        return self._room_sid or room_sid_now(self.room)

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
        return self._core.require_connected()

    # -- capabilities ------------------------------------------------------------------

    @property
    def data(self) -> DataChannel:
        """Data messages: send any size, receive by topic (see the data page)."""
        if self._data is None:
            self._data = DataChannel(self._core)
        return self._data

    @property
    def audio(self) -> SessionAudio:
        """Audio: publish fixed frames through a 50 ms buffer, receive as numpy."""
        if self._audio is None:
            self._audio = SessionAudio(self._core)
        return self._audio

    @property
    def video(self) -> SessionVideo:
        """Video: publish numpy frames paced to a frame rate, receive as numpy."""
        if self._video is None:
            self._video = SessionVideo(self._core)
        return self._video

    @property
    def rpc(self) -> SessionRpc:
        """RPC: call other participants' methods, answer calls (see the RPC page)."""
        if self._rpc is None:
            self._rpc = SessionRpc(self._core)
        return self._rpc

    # -- the local participant's own metadata, name and attributes ----------------------

    async def set_metadata(self, metadata: str) -> None:
        """Set the local participant's metadata; others get
        [`ParticipantMetadataChanged`][lkkit.ParticipantMetadataChanged].

        Returns once the server accepted it. Needs `canUpdateOwnMetadata` in the token.

        Raises:
            ParticipantUpdateDenied: the token lacks `canUpdateOwnMetadata`.
            ParticipantUpdateError: the server refused it otherwise (too large, say).
            InvalidParticipantUpdate: `metadata` is not a `str`; nothing sent.
            NotConnected: the session is not connected.
        """
        await _self_updates.set_metadata(self._core, metadata)

    async def set_name(self, name: str) -> None:
        """Set the local participant's display name; others get
        [`ParticipantNameChanged`][lkkit.ParticipantNameChanged]. Needs
        `canUpdateOwnMetadata`; raises as [`set_metadata`][lkkit.Session.set_metadata]."""
        await _self_updates.set_name(self._core, name)

    async def set_attributes(self, attributes: Mapping[str, str]) -> None:
        """Set some of the local participant's attributes; others get
        [`ParticipantAttributesChanged`][lkkit.ParticipantAttributesChanged].

        The server merges: keys not given keep their values, and a key set to `""` is
        removed. Needs `canUpdateOwnMetadata`; raises as
        [`set_metadata`][lkkit.Session.set_metadata] (a mapping that is not `str` to
        `str` is an `InvalidParticipantUpdate`).
        """
        await _self_updates.set_attributes(self._core, attributes)

    # -- who may receive the local tracks -----------------------------------------------

    def set_track_permissions(
        self,
        *,
        allow_all: bool = False,
        allow: Mapping[str, Literal["all"] | Iterable[str]] | None = None,
    ) -> None:
        """Choose who may subscribe to this session's tracks (everyone, by default).

        ```python
        session.set_track_permissions(allow={"bob": "all", "carol": [pub.publication.sid]})
        session.set_track_permissions(allow_all=True)      # everyone again
        ```

        `allow` maps participant identities to `"all"` (every track of this session)
        or to track sids. Anyone not listed loses the tracks they received: they get
        [`TrackUnsubscribed`][lkkit.TrackUnsubscribed] and
        [`TrackSubscriptionPermissionChanged`][lkkit.TrackSubscriptionPermissionChanged].
        Returns at once; the server applies it.

        Raises:
            ConfigurationError: `allow_all` together with `allow`, or an entry that is
                not an identity with `"all"` or track sids.
            NotConnected: the session is not connected.
        """
        entries = _track_permissions(allow_all, allow)
        room = self._core.require_connected()
        room.local_participant.set_track_subscription_permissions(
            allow_all_participants=allow_all, participant_permissions=entries
        )

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
        return self._core.bus.subscribe(tuple(types), participant, buffer=buffer, overflow=overflow)

    @overload
    def on(
        self,
        *types: type[_E],
        handler: Callable[[_E], HandlerResult],
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> EventHandler: ...

    @overload
    def on(
        self,
        *types: type[_E],
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> Callable[[Callable[[_E], HandlerResult]], EventHandler]: ...

    def on(
        self,
        *types: type[Any],
        handler: Callable[[Any], HandlerResult] | None = None,
        participant: str | Participant | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> EventHandler | Callable[[Callable[[Any], HandlerResult]], EventHandler]:
        """Call a handler for each event of `types` (all when none are given).

        The event types come first, as in [`events`][lkkit.Session.events]. As a
        decorator, it returns the [`EventHandler`][lkkit.EventHandler]:

        ```python
        @session.on(lkkit.ParticipantConnected)
        async def greet(event: lkkit.ParticipantConnected) -> None:
            await session.data.send(f"hi {event.participant.identity}")

        ...
        await greet.aclose()  # or let it end with the session
        ```

        or with `handler=`: `session.on(lkkit.TrackMuted, handler=on_mute)`.

        A sync handler runs inside the SDK's event dispatch, so keep it short. An
        `async def` handler runs in a task owned by the session, one event at a time
        in order, fed from its own buffer of `buffer` events (the oldest is dropped
        and counted in `handler.dropped` when it falls behind); it finishes its
        buffered events when the session ends, and is cancelled if that takes longer
        than `options.shutdown_timeout`. A handler that raises is logged with the
        event and counted (`handler.errors`); the others go on.

        Raises:
            ConfigurationError: `handler` is not a function, an unknown event type,
                `buffer < 1`, or a participant filter with room-only event types.
            SessionStateError: the session has already ended.
        """
        bus = self._core.bus
        # Check the filter now, not when the decorator is applied.
        bus._check_open()
        if any(not isinstance(t, type) for t in types):
            raise ConfigurationError(
                "session.on takes event types first; pass the handler as handler=... "
                "or use it as a decorator"
            )
        if handler is not None:
            return bus.add_handler(handler, tuple(types), participant, buffer=buffer)

        def register(function: Callable[[Any], HandlerResult]) -> EventHandler:
            return bus.add_handler(function, tuple(types), participant, buffer=buffer)

        return register

    async def wait_for_participant(
        self, identity: str | None = None, *, kind: ParticipantKind | None = None
    ) -> RemoteParticipant:
        """The first remote participant (with `identity`, of `kind`) in the room: one
        already there, or the next to join.

        Raises:
            NotConnected: the session ended before one came.
        """
        if kind is not None and not isinstance(kind, ParticipantKind):
            raise ConfigurationError(f"kind must be a ParticipantKind, got {kind!r}")

        def wanted(participant: RemoteParticipant) -> bool:
            return (identity is None or participant.identity == identity) and (
                kind is None or participant.kind is kind
            )

        async with self.events(ParticipantConnected) as joins:
            for participant in joins.snapshot.participants.values():
                if wanted(participant):
                    return participant
            async for event in joins:
                if wanted(event.participant):
                    return event.participant
        raise NotConnected("the session ended before the participant joined")

    async def wait_for_track(
        self,
        participant: str | Participant,
        *,
        kind: TrackKind | None = None,
        source: TrackSource | None = None,
        subscribed: bool = True,
    ) -> TrackPublication:
        """A track of `participant` (of `kind`, from `source`): one it has, or the next
        it publishes. With `subscribed` (the default) wait until this session
        receives it too (needs auto-subscribe, or a manual subscription).

        Raises:
            NotConnected: the session ended, or the participant left, before that.
        """
        identity = participant if isinstance(participant, str) else participant.identity
        if kind is not None and not isinstance(kind, TrackKind):
            raise ConfigurationError(f"kind must be a TrackKind, got {kind!r}")
        if source is not None and not isinstance(source, TrackSource):
            raise ConfigurationError(f"source must be a TrackSource, got {source!r}")

        def wanted(publication: TrackPublication) -> bool:
            return (
                (kind is None or publication.kind is kind)
                and (source is None or publication.source is source)
                and (not subscribed or publication.subscribed)
            )

        async with self.events(TrackPublished, TrackSubscribed, ParticipantDisconnected) as events:
            for publication in events.snapshot.publications.get(identity, ()):
                if wanted(publication):
                    return publication
            async for event in events:
                if isinstance(event, ParticipantDisconnected):
                    if event.participant.identity == identity:
                        raise NotConnected(f"participant {identity!r} left before the track came")
                elif (
                    isinstance(event, TrackPublished | TrackSubscribed)
                    and event.participant.identity == identity
                    and wanted(event.publication)
                ):
                    return event.publication
        raise NotConnected("the session ended before the track came")

    # -- shutdown callbacks --------------------------------------------------------------

    def add_shutdown_callback(self, callback: ShutdownCallback) -> None:
        """Run `callback` once when the session ends, whichever way it ends.

        It may be sync or async. Callbacks run in the order they were added; one
        that raises is logged and does not stop the others. Together with the async
        event handlers still finishing, they get `options.shutdown_timeout` seconds,
        then are cancelled.

        Raises:
            SessionStateError: the session has already ended.
        """
        if self._callbacks_started:
            raise SessionStateError("the session has already ended")
        self._shutdown_callbacks.append(callback)

    async def _run_shutdown_callbacks(self) -> None:
        if self._callbacks_started:
            return
        self._callbacks_started = True
        for callback in self._shutdown_callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("shutdown callback %r raised", callback)

    # -- lifecycle -----------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Session]:
        """`session = await lkkit.connect(...)`: open now, close with `aclose()`."""
        return self._open_and_return().__await__()

    async def _open_and_return(self) -> Session:
        await self._open()
        self._awaited = True
        return self

    async def __aenter__(self) -> Session:
        if self._entered:
            raise SessionStateError("a session's `async with` block can be entered once")
        self._entered = True
        if not (self._awaited and self._core.state is SessionState.CONNECTED):
            await self._open()
        # else: `async with await lkkit.connect(...)`, opened by the await
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _open(self) -> None:
        core = self._core
        if core.state is not SessionState.NEW:
            raise SessionStateError(f"a session can be opened once; it is {core.state.value}")
        core.state = SessionState.CONNECTING
        try:
            if core.owns_room:
                room = await self._connect()
            else:
                assert self._given_room is not None
                room = self._given_room
                core.bind(room)
            self._stop_watching = core.bus.add_listener(self._watch_for_disconnect)
            self._room_sid = await self._wait_for_sid(room)
        except BaseException as exc:
            # Failed, timed out or cancelled: leave if the join went through, and end
            # what was made before (subscriptions, handlers), so nothing waits forever.
            with anyio.CancelScope(shield=True):
                await self._close(leave=True, wait_for_join=not isinstance(exc, ConnectTimeout))
            raise
        core.state = SessionState.CONNECTED

    async def _connect(self) -> rtc.Room:
        _check_url(self._url)
        room = rtc.Room()
        self._core.bind(room)
        # The native connect cannot be cancelled: cancelling `room.connect` only stops
        # Python from waiting, and the join completes behind our back. So it runs in
        # a task of its own, which a cancelled or timed-out open waits for (bounded)
        # before it leaves.
        joining = self._joining = self._core.spawn(self._native_connect(room), name="connect")
        deadline = self._options.connect_timeout
        with anyio.move_on_after(deadline) as scope:
            await asyncio.shield(joining)
        if scope.cancelled_caught and not joining.done():
            raise ConnectTimeout(f"joining {self._url} took longer than {deadline:g} s")
        return room

    async def _native_connect(self, room: rtc.Room) -> None:
        redact_sdk_logs()
        with map_sdk_exceptions():
            await room.connect(self._url, self._token, self._options._to_sdk())

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
        if self._core.state is SessionState.CONNECTED:
            self._core.state = SessionState.CLOSING
            self._closer = self._core.spawn(self._close(leave=False), name="close")

    async def _leave(self, *, wait_for_join: bool = True) -> None:
        core = self._core
        room = core.room_or_none
        if room is None or not core.owns_room:
            return
        with anyio.CancelScope(shield=True):
            joining = self._joining
            if joining is not None and not joining.done():
                # Cancelled or timed out mid-join. The native join cannot be cancelled:
                # it lands, or its own attempts time out. Cancelling the SDK's connect
                # would leave a landed join behind (and the native layer, never told
                # that Python is ready for the room's events, aborts the process). So
                # a cancelled open waits for the join (bounded), then leaves; after
                # lkkit's own connect timeout (the server did not answer in time) it
                # does not wait. Either way a join that lands later is left at once.
                if wait_for_join:
                    with anyio.move_on_after(self._options.disconnect_timeout):
                        await asyncio.wait([joining])
                if not joining.done():
                    core.tasks.disown(joining)
                    joining.add_done_callback(_leave_if_joined(room))
                    return
            with anyio.move_on_after(self._options.disconnect_timeout):
                # No publish or unpublish in flight at leave: the native layer would
                # go on negotiating a closing connection (docs/audio.md). The state is
                # CLOSING, so queued ones fail with NotConnected instead of starting.
                await core.drain_track_ops()
            with anyio.move_on_after(self._options.disconnect_timeout):
                # What the data channels accepted must reach the server before the
                # connection closes, or receivers lose the end of the last messages.
                await core.drain_outgoing_data()
            with anyio.move_on_after(self._options.disconnect_timeout):
                if room_was_connected(room) and room.isconnected():
                    try:
                        await room.disconnect()
                    except Exception:
                        logger.exception("disconnecting from the room failed")
                    if self._disconnect_reason is None:
                        self._disconnect_reason = DisconnectReason.CLIENT_INITIATED

    async def aclose(self) -> None:
        """End the session: leave the room (when lkkit owns it), end every
        subscription, run the shutdown callbacks. Idempotent.

        - Leaving is shielded from cancellation and bounded by
          `options.disconnect_timeout`: the server always learns that we left.
        - Shutdown callbacks and async handlers still finishing get
          `options.shutdown_timeout` seconds together, then are cancelled.
        - When aclose starts inside a cancelled scope (an `async with` block left by
          cancellation), the callbacks still run, bounded as above. A cancellation
          that arrives *while* aclose waits for them cuts the wait short: they are
          cancelled and the cancellation propagates.
        - Called from a shutdown callback or an async event handler of this session
          (an agent that leaves when the user leaves), it starts the close and
          returns without waiting for its own task.

        Once it returns, no task of this session is left.
        """
        core = self._core
        current = asyncio.current_task()
        if core.state is SessionState.CLOSED:
            return
        if core.state is SessionState.CLOSING:
            if core.tasks.owns(current) or current is self._closing_task:
                return  # a callback or handler of the close in progress
            closer = self._closer
            if closer is not None and closer is not current:
                await asyncio.shield(closer)
            else:
                await self._ended.wait()
            return
        if core.state is SessionState.NEW:
            core.state = SessionState.CLOSED
            core.run_close_hooks()
            self._ended.set()
            return
        if core.tasks.owns(current):
            # From a handler or callback of ours: close in a task of its own, so the
            # close never waits for the task that asked for it.
            core.state = SessionState.CLOSING
            self._closer = core.spawn(self._close(leave=True), name="close")
            return
        await self._close(leave=True)

    async def _close(self, *, leave: bool, wait_for_join: bool = True) -> None:
        core = self._core
        core.state = SessionState.CLOSING
        self._closing_task = asyncio.current_task()
        already_cancelled = anyio.current_effective_deadline() == -math.inf
        try:
            self._stop_watching()
            if leave:
                await self._leave(wait_for_join=wait_for_join)
            # Ends every subscription (after the final Disconnected) and every part.
            core.run_close_hooks()
            with (
                anyio.CancelScope(shield=already_cancelled),
                anyio.move_on_after(self._options.shutdown_timeout) as scope,
            ):
                await self._run_shutdown_callbacks()
                await core.tasks.wait(timeout=math.inf)
            if scope.cancelled_caught:
                logger.warning(
                    "lkkit session: shutdown callbacks or event handlers still running at "
                    "session end after %g s; cancelling them",
                    self._options.shutdown_timeout,
                )
        finally:
            with anyio.CancelScope(shield=True):
                core.run_close_hooks()
                await core.tasks.aclose()
                if self._joining is not None:
                    # However the room was left, and also when the join failed: the
                    # native layer tears a refused or timed-out join down too.
                    exit_after_native_teardown()
                core.state = SessionState.CLOSED
                self._ended.set()

    async def wait_closed(self) -> DisconnectReason | None:
        """Wait until the session has ended; return why it was disconnected."""
        if self._core.state is SessionState.NEW:
            raise SessionStateError("the session was never opened")
        await self._ended.wait()
        return self._disconnect_reason

    def __repr__(self) -> str:
        room = self._core.room_or_none
        name = room.name if room is not None else "-"
        return f"<Session room={name!r} state={self._core.state.value}>"


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


def _leave_if_joined(room: rtc.Room) -> Callable[[asyncio.Task[None]], None]:
    # For a join abandoned before it landed (Session._leave): when it lands, leave. The
    # session is over by then, so this one short task has no session to belong to.
    def leave(joining: asyncio.Task[None]) -> None:
        if not joining.cancelled() and joining.exception() is None and room.isconnected():
            _late_leaves.add(task := asyncio.get_running_loop().create_task(room.disconnect()))
            task.add_done_callback(_late_leaves.discard)

    return leave


_late_leaves: set[asyncio.Task[None]] = set()


def _track_permissions(
    allow_all: object, allow: Mapping[str, Literal["all"] | Iterable[str]] | None
) -> list[rtc.ParticipantTrackPermission]:
    """`set_track_permissions`' arguments as the SDK's entries, checked."""
    if not isinstance(allow_all, bool):
        raise ConfigurationError(f"allow_all must be a bool, got {allow_all!r}")
    if allow is None:
        return []
    if allow_all:
        raise ConfigurationError("give allow_all=True or allow=, not both")
    if not isinstance(allow, Mapping):
        raise ConfigurationError(f"allow maps identities to 'all' or track sids, got {allow!r}")
    entries = []
    for identity, tracks in allow.items():
        if not isinstance(identity, str) or not identity:
            raise ConfigurationError(f"allow's keys are participant identities, got {identity!r}")
        if tracks == "all":
            entries.append(
                rtc.ParticipantTrackPermission(participant_identity=identity, allow_all=True)
            )
            continue
        if isinstance(tracks, str | bytes) or not isinstance(tracks, Iterable):
            raise ConfigurationError(
                f"allow[{identity!r}] is 'all' or a list of track sids, got {tracks!r}"
            )
        sids = list(tracks)
        if not all(isinstance(sid, str) and sid for sid in sids):
            raise ConfigurationError(f"allow[{identity!r}] has a track sid that is not a str")
        entries.append(
            rtc.ParticipantTrackPermission(
                participant_identity=identity, allow_all=False, allowed_track_sids=sids
            )
        )
    return entries
