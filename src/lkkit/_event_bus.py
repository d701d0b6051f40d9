"""The session's event bus: one registry of the SDK's room events for all of lkkit.

The bus is bound to the SDK room before `connect`, so no event the SDK emits is lost
between joining and subscribing; every other part of lkkit (data messages, audio)
reads room events from this one registry through `add_listener`.

Each SDK callback becomes one typed event (plus derived
[`IsSpeakingChanged`][lkkit.IsSpeakingChanged] events after an
[`ActiveSpeakersChanged`][lkkit.ActiveSpeakersChanged]), delivered in the SDK's
dispatch order:

1. to lkkit's internal listeners (synchronous, in registration order);
2. to every subscription and handler whose filter matches, in registration order.
   A subscription or async handler has its own bounded buffer, filled with
   `send_nowait`: the SDK's dispatch never waits for a subscriber. A sync handler is
   called right there, in the SDK's dispatch.

**When a buffer is full** the subscription's
[`OverflowPolicy`][lkkit.OverflowPolicy] decides: `DROP_OLDEST` (the default)
discards the oldest buffered event, counts it in `dropped` and logs a warning the first
time; `FAIL` ends that subscription: its iteration yields what was buffered, then
raises [`EventOverflow`][lkkit.EventOverflow]. Either way no other subscriber is
affected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Generic, TypeAlias, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from livekit import rtc

from ._events import (
    EVENT_TYPES,
    PARTICIPANT_SCOPED,
    SDK_EVENT_CONVERTERS,
    ActiveSpeakersChanged,
    Disconnected,
    Event,
    IsSpeakingChanged,
    ParticipantMetadataChanged,
    ParticipantNameChanged,
    participant_of,
)
from ._exceptions import ConfigurationError, EventOverflow, SessionStateError
from ._participants import Participant, RemoteParticipant, TrackPublication
from ._types import ConnectionState, DisconnectReason, connection_state_from_sdk

__all__ = [
    "EventBus",
    "EventHandler",
    "EventSnapshot",
    "EventSubscription",
    "OverflowPolicy",
]

logger = logging.getLogger("lkkit")

E_co = TypeVar("E_co", covariant=True)

DEFAULT_BUFFER = 256
"""Events a subscription buffers before its overflow policy applies."""

HandlerResult: TypeAlias = Awaitable[object] | object
"""What a handler returns: anything (sync) or an awaitable (async)."""

Listener: TypeAlias = Callable[[Event], None]


class OverflowPolicy(str, enum.Enum):
    """What happens to a subscription whose buffer is full when an event arrives."""

    DROP_OLDEST = "drop_oldest"
    """Discard the oldest buffered event and count it in `dropped` (the default)."""
    FAIL = "fail"
    """End the subscription: iteration yields the buffered events, then raises
    [`EventOverflow`][lkkit.EventOverflow]."""


@dataclass(frozen=True, slots=True)
class EventSnapshot:
    """The room as it was when a subscription started: events cover what follows.

    Taken in the same step as the subscription is registered, so nothing falls in
    between: a participant in `participants` joined before, a later one arrives as
    [`ParticipantConnected`][lkkit.ParticipantConnected]. The views read through to
    the live SDK objects; `publications` freezes which tracks each participant had.
    For a participant-filtered subscription only that participant is listed.
    """

    connection_state: ConnectionState
    room_metadata: str
    participants: Mapping[str, RemoteParticipant]
    publications: Mapping[str, tuple[TrackPublication, ...]]


def _identity(participant: str | Participant | None) -> str | None:
    if participant is None or isinstance(participant, str):
        return participant
    return participant.identity


def _check_filter(
    types: tuple[type[Event], ...], identity: str | None, buffer: int
) -> frozenset[type[Event]] | None:
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ConfigurationError(f"buffer must be an int >= 1, got {buffer!r}")
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise ConfigurationError(f"not lkkit event types: {unknown!r}")
    if identity is not None:
        if not identity:
            raise ConfigurationError("participant identity must not be empty")
        room_only = [t.__name__ for t in types if t not in PARTICIPANT_SCOPED]
        if room_only:
            raise ConfigurationError(
                f"{', '.join(room_only)} are room events and never match a participant filter"
            )
        return frozenset(types) if types else PARTICIPANT_SCOPED
    return frozenset(types) if types else None


class _Sink:
    """One subscriber's filter and delivery: a bounded stream, or a sync callback."""

    __slots__ = (
        "_receive",
        "_send",
        "callback",
        "dropped",
        "errors",
        "identity",
        "overflowed",
        "policy",
        "types",
        "warned",
    )

    def __init__(
        self,
        types: frozenset[type[Event]] | None,
        identity: str | None,
        *,
        buffer: int = DEFAULT_BUFFER,
        policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        callback: Callable[[Event], object] | None = None,
    ) -> None:
        self.types = types
        self.identity = identity
        self.policy = policy
        self.callback = callback
        self.dropped = 0
        self.errors = 0
        self.overflowed = False
        self.warned = False
        self._send: MemoryObjectSendStream[Event] | None = None
        self._receive: MemoryObjectReceiveStream[Event] | None = None
        if callback is None:
            self._send, self._receive = anyio.create_memory_object_stream[Event](buffer)

    def matches(self, event: Event) -> bool:
        if self.types is not None and type(event) not in self.types:
            return False
        if self.identity is None:
            return True
        participant = participant_of(event)
        return participant is not None and participant.identity == self.identity

    def offer(self, event: Event, bus: EventBus) -> None:
        if self.callback is not None:
            bus._call_sync(self, self.callback, event)
            return
        send = self._send
        if send is None:
            return
        try:
            send.send_nowait(event)
        except anyio.WouldBlock:
            self._overflow(event, send, bus)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            bus._remove_sink(self)
            self.close()

    def _overflow(self, event: Event, send: MemoryObjectSendStream[Event], bus: EventBus) -> None:
        if self.policy is OverflowPolicy.FAIL:
            self.overflowed = True
            logger.warning("lkkit event subscription overflowed; ending it at %r", event)
            bus._remove_sink(self)
            self.close()
            return
        assert self._receive is not None
        self._receive.receive_nowait()  # the buffer is full: there is an oldest one
        self.dropped += 1
        if not self.warned:
            self.warned = True
            logger.warning("lkkit event subscriber is full; dropping its oldest events")
        send.send_nowait(event)

    async def receive(self) -> Event:
        assert self._receive is not None
        try:
            # What is buffered is taken without a trip through the event loop (as
            # asyncio.Queue.get does); anyio's receive() would yield once per event.
            try:
                return self._receive.receive_nowait()
            except anyio.WouldBlock:
                return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self.overflowed:
                raise EventOverflow(
                    "this event subscription fell behind by more than its buffer "
                    "(OverflowPolicy.FAIL)"
                ) from None
            raise StopAsyncIteration from None

    def clear(self) -> None:
        """Discard what is buffered (the subscriber went away)."""
        if self._receive is not None:
            while True:
                try:
                    self._receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    return

    def close(self) -> None:
        """End delivery: the receiver gets what is buffered, then the end."""
        if self._send is not None:
            self._send.close()
            self._send = None

    def close_receiver(self) -> None:
        self.close()
        if self._receive is not None:
            self._receive.close()


class EventSubscription(Generic[E_co]):
    """Typed events of one session, read with `async for`; use it as `async with`.

    ```python
    async with session.events(lkkit.TrackSubscribed) as events:
        for participant in events.snapshot.participants.values():
            ...  # already there when we subscribed
        async for event in events:
            print(event.publication.sid)
    ```

    Iteration ends when the session ends (after its
    [`Disconnected`][lkkit.Disconnected], when there is one). Leaving the `async with`
    block unsubscribes.
    """

    def __init__(self, bus: EventBus, sink: _Sink) -> None:
        self._bus = bus
        self._sink = sink
        self._snapshot: EventSnapshot | None = None
        self._entered = False

    @property
    def dropped(self) -> int:
        """Events discarded because this subscription's buffer was full."""
        return self._sink.dropped

    @property
    def snapshot(self) -> EventSnapshot:
        """The room when the subscription started; see [`EventSnapshot`][lkkit.EventSnapshot].

        Raises:
            SessionStateError: the subscription has not been entered yet.
        """
        if self._snapshot is None:
            raise SessionStateError("enter the subscription (async with) first")
        return self._snapshot

    async def __aenter__(self) -> EventSubscription[E_co]:
        if self._entered:
            raise SessionStateError("an event subscription can be entered once")
        self._entered = True
        # Snapshot and registration happen in one synchronous step: no event between.
        self._snapshot = self._bus._snapshot(self._sink.identity)
        self._bus._add_sink(self._sink)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unsubscribe; buffered events are discarded. Idempotent."""
        self._bus._remove_sink(self._sink)
        self._sink.close_receiver()

    def __aiter__(self) -> AsyncIterator[E_co]:
        return self

    async def __anext__(self) -> E_co:
        if not self._entered:
            raise SessionStateError("enter the subscription (async with) before iterating")
        event: Any = await self._sink.receive()
        return event  # type: ignore[no-any-return]


class EventHandler:
    """A handler registered with [`Session.on`][lkkit.Session.on]; `remove()` it."""

    __slots__ = ("_bus", "_sink", "_task")

    def __init__(self, bus: EventBus, sink: _Sink, task: asyncio.Task[None] | None) -> None:
        self._bus = bus
        self._sink = sink
        self._task = task

    @property
    def errors(self) -> int:
        """How many times the handler raised (each was logged with its event)."""
        return self._sink.errors

    @property
    def dropped(self) -> int:
        """Events an async handler missed because its buffer was full."""
        return self._sink.dropped

    @property
    def active(self) -> bool:
        """Whether the handler still receives events."""
        return self._sink in self._bus._sinks

    def remove(self) -> None:
        """Stop calling the handler; events buffered for it are discarded. Idempotent."""
        self._bus._remove_sink(self._sink)
        self._sink.clear()
        self._sink.close()

    def __call__(self) -> None:
        self.remove()


class EventBus:
    """Fans the SDK's room events out, typed, to lkkit's listeners and subscribers."""

    def __init__(self) -> None:
        self._room: rtc.Room | None = None
        self._callbacks: list[tuple[str, Callable[..., None]]] = []
        self._listeners: list[Listener] = []
        self._sinks: list[_Sink] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._speaking: dict[str, Participant] = {}
        self._previous: dict[tuple[type[Event], str], str] = {}
        self._unwrap: Callable[[], object] = lambda: None
        self._disconnected = False
        self._closed = False
        self.listener_errors = 0
        """Exceptions raised by internal listeners (each was logged)."""
        self.handler_errors = 0
        """Exceptions raised by handlers of [`Session.on`][lkkit.Session.on] (logged)."""

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the SDK side --------------------------------------------------------------------

    def bind(self, room: rtc.Room) -> None:
        """Listen to `room`; called by the session before it connects (or on attach)."""
        if self._room is not None:
            raise SessionStateError("the event bus is already bound to a room")
        self._room = room
        self._wrap_room_events(room)
        for name in SDK_EVENT_CONVERTERS:
            callback = self._sdk_callback(name)
            room.on(name, callback)  # type: ignore[arg-type]
            self._callbacks.append((name, callback))

    def _sdk_callback(self, name: str) -> Callable[..., None]:
        # A plain function: the SDK's emitter inspects each callback's signature on
        # every event, which is cheapest for functions.
        def callback(*args: Any) -> None:
            # The emitter re-raises TypeError from callbacks into the SDK's dispatch
            # loop: nothing may escape from here.
            try:
                self._on_sdk_event(name, args)
            except Exception:
                logger.exception("lkkit could not convert SDK event %r %r", name, args)

        return callback

    def _wrap_room_events(self, room: rtc.Room) -> None:
        # The SDK applies a `participants_updated` event (new metadata and name) before
        # it reports `participant_metadata_changed` / `_name_changed`, whose "old" value
        # is then the new one. Note the values the update is about to overwrite.
        original = room._on_room_event

        def on_room_event(event: Any) -> None:
            if event.WhichOneof("message") == "participants_updated":
                self._note_previous(room, event.participants_updated.participants)
            original(event)

        room._on_room_event = on_room_event  # type: ignore[method-assign]
        self._unwrap = lambda: vars(room).pop("_on_room_event", None)

    def _note_previous(self, room: rtc.Room, infos: Iterable[Any]) -> None:
        for info in infos:
            current = room._retrieve_participant(info.identity)
            if current is None:
                continue
            if info.metadata != current.metadata:
                self._previous[ParticipantMetadataChanged, info.identity] = current.metadata
            if info.name != current.name:
                self._previous[ParticipantNameChanged, info.identity] = current.name

    def _with_previous(self, event: Event) -> Event:
        if isinstance(event, ParticipantMetadataChanged):
            old = self._previous.pop((type(event), event.participant.identity), None)
            return event if old is None else dataclasses.replace(event, old_metadata=old)
        if isinstance(event, ParticipantNameChanged):
            old = self._previous.pop((type(event), event.participant.identity), None)
            return event if old is None else dataclasses.replace(event, old_name=old)
        return event

    def close(self, reason: DisconnectReason | None = None) -> None:
        """End every subscription; called when the session ends. Idempotent.

        Subscriptions yield what they buffered (the `Disconnected` event, say), then
        end; async handlers finish their buffered events (await `wait_handlers`).

        `reason` is why the session's room was disconnected. On a client-initiated
        leave the SDK sometimes reports only the state change and skips its
        `"disconnected"` callback (when its event task applied the state first); then
        the room is disconnected without a `Disconnected` event, and lkkit delivers
        it here with that reason, so it is always the session's last event.
        """
        if self._closed:
            return
        room = self._room
        if (
            reason is not None
            and room is not None
            and not self._disconnected
            and room._ffi_handle is not None  # it was connected...
            and not room.isconnected()  # ...and is no longer
        ):
            self._disconnected = True
            self.publish(Disconnected(reason))
        self._closed = True
        self._unwrap()
        if self._room is not None:
            for name, callback in self._callbacks:
                self._room.off(name, callback)  # type: ignore[arg-type]
        self._callbacks.clear()
        self._listeners.clear()
        sinks, self._sinks = self._sinks, []
        for sink in sinks:
            sink.close()

    async def wait_handlers(self, grace: float) -> None:
        """Wait for async handlers to finish their buffered events; cancel them after
        `grace` seconds. Called by the session after `close`."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            logger.warning("lkkit event handler still running at session end; cancelling it")
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _on_sdk_event(self, name: str, args: tuple[Any, ...]) -> None:
        room = self._room
        if room is None or self._closed:
            return
        event = SDK_EVENT_CONVERTERS[name](room, args)
        if event is None:
            logger.debug("lkkit skipped SDK event %r without a known participant", name)
            return
        if isinstance(event, Disconnected):
            # Terminal: the SDK can report it twice (its event, then its disconnect()).
            if self._disconnected:
                return
            self._disconnected = True
        event = self._with_previous(event)
        self.publish(event)
        if isinstance(event, ActiveSpeakersChanged):
            for derived in self._speaking_changes(event):
                self.publish(derived)

    def _speaking_changes(self, event: ActiveSpeakersChanged) -> list[IsSpeakingChanged]:
        now = {p.identity: p for p in event.speakers}
        changes = [
            IsSpeakingChanged(p, speaking=False)
            for identity, p in self._speaking.items()
            if identity not in now
        ]
        changes += [
            IsSpeakingChanged(p, speaking=True)
            for identity, p in now.items()
            if identity not in self._speaking
        ]
        self._speaking = now
        return changes

    def publish(self, event: Event) -> None:
        """Deliver `event` to listeners, then to matching subscribers (internal)."""
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                self.listener_errors += 1
                logger.exception("lkkit event listener %r raised on %r", listener, event)
        for sink in tuple(self._sinks):
            if sink.matches(event):
                sink.offer(event, self)

    # -- the lkkit side ------------------------------------------------------------------

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call `callback(event)` synchronously for every event, in the SDK's dispatch
        order and before subscribers see it (internal API for lkkit's own modules).

        A listener that raises is logged and counted in `listener_errors`. Returns a
        function that removes the listener (idempotent).
        """
        self._check_open()
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def subscribe(
        self,
        types: tuple[type[Event], ...],
        participant: str | Participant | None = None,
        *,
        buffer: int = DEFAULT_BUFFER,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> EventSubscription[Any]:
        """A subscription (enter it with `async with`); see `Session.events`."""
        self._check_open()
        identity = _identity(participant)
        chosen = _check_filter(types, identity, buffer)
        try:
            policy = OverflowPolicy(overflow)
        except ValueError:
            raise ConfigurationError(
                f"overflow must be an OverflowPolicy, got {overflow!r}"
            ) from None
        return EventSubscription(self, _Sink(chosen, identity, buffer=buffer, policy=policy))

    def add_handler(
        self,
        handler: Callable[[Any], HandlerResult],
        types: tuple[type[Event], ...],
        participant: str | Participant | None = None,
        *,
        buffer: int = DEFAULT_BUFFER,
    ) -> EventHandler:
        """Register a sync or async handler; see `Session.on`."""
        self._check_open()
        if not callable(handler):
            raise ConfigurationError(f"handler must be callable, got {handler!r}")
        identity = _identity(participant)
        chosen = _check_filter(types, identity, buffer)
        if not _is_async(handler):
            sink = _Sink(chosen, identity, callback=handler)
            self._add_sink(sink)
            return EventHandler(self, sink, None)
        sink = _Sink(chosen, identity, buffer=buffer)
        self._add_sink(sink)
        # Owned by the bus: it ends when the sink is closed (remove() or session end)
        # and `wait_handlers` awaits or cancels it at session end.
        task = asyncio.get_running_loop().create_task(self._run_async_handler(handler, sink))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return EventHandler(self, sink, task)

    async def _run_async_handler(
        self, handler: Callable[[Any], HandlerResult], sink: _Sink
    ) -> None:
        try:
            while True:
                try:
                    event = await sink.receive()
                except StopAsyncIteration:
                    return
                try:
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    self._report(sink, handler, event)
        finally:
            sink.close_receiver()

    def _call_sync(self, sink: _Sink, handler: Callable[[Event], object], event: Event) -> None:
        try:
            result = handler(event)
        except Exception:
            self._report(sink, handler, event)
            return
        if inspect.isawaitable(result):
            # A callable object with an async __call__ that was not recognised: the
            # dispatch is synchronous and cannot await it.
            if inspect.iscoroutine(result):
                result.close()
            sink.errors += 1
            self.handler_errors += 1
            logger.error(
                "lkkit event handler %r returned an awaitable from a sync call; "
                "define it with `async def`",
                handler,
            )

    def _report(self, sink: _Sink, handler: object, event: Event) -> None:
        sink.errors += 1
        self.handler_errors += 1
        logger.exception("lkkit event handler %r raised on %r", handler, event)

    def _check_open(self) -> None:
        if self._closed:
            raise SessionStateError("the session has ended; it delivers no more events")

    def _add_sink(self, sink: _Sink) -> None:
        if self._closed:
            sink.close()  # iteration ends at once: the session is over
            return
        self._sinks.append(sink)

    def _remove_sink(self, sink: _Sink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def _snapshot(self, identity: str | None) -> EventSnapshot:
        room = self._room
        remotes: Iterable[tuple[str, rtc.RemoteParticipant]] = (
            room.remote_participants.items() if room is not None else ()
        )
        chosen = {i: p for i, p in remotes if identity is None or i == identity}
        return EventSnapshot(
            connection_state=(
                connection_state_from_sdk(room.connection_state)
                if room is not None and not self._closed
                else ConnectionState.DISCONNECTED
            ),
            room_metadata=room.metadata if room is not None else "",
            participants=MappingProxyType({i: RemoteParticipant(p) for i, p in chosen.items()}),
            publications=MappingProxyType(
                {
                    i: tuple(TrackPublication(t) for t in p.track_publications.values())
                    for i, p in chosen.items()
                }
            ),
        )


def _is_async(handler: Callable[..., object]) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with async __call__
    )
