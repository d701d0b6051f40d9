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
   A subscription or async handler is lkkit's one
   [`Subscription`][lkkit.Subscription] primitive, a bounded buffer filled without
   waiting: the SDK's dispatch never waits for a subscriber. A sync handler is called
   right there, in the SDK's dispatch.

**When a buffer is full** the subscription's
[`OverflowPolicy`][lkkit.OverflowPolicy] decides: `DROP_OLDEST` (the default)
discards the oldest buffered event, counts it in `dropped` and logs a warning the first
time; `FAIL` ends that subscription: its iteration yields what was buffered, then
raises [`SubscriptionOverflow`][lkkit.SubscriptionOverflow]. Either way no other
subscriber is affected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, TypeAlias, TypeVar

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
from ._exceptions import ConfigurationError, SessionStateError
from ._participants import Participant, RemoteParticipant, TrackPublication
from ._sdk_compat import retrieve_participant, room_was_connected, tap_room_events
from ._subscription import DEFAULT_BUFFER, OverflowPolicy, Subscription, check_buffer
from ._types import ConnectionState, DisconnectReason, connection_state_from_sdk

__all__ = [
    "DEFAULT_BUFFER",
    "EventBus",
    "EventHandler",
    "EventSnapshot",
    "EventSubscription",
    "HandlerResult",
]

logger = logging.getLogger("lkkit")

E_co = TypeVar("E_co", covariant=True)
_ES = TypeVar("_ES", bound="EventSubscription[Any]")

HandlerResult: TypeAlias = Awaitable[object] | object
"""What a handler returns: anything (sync) or an awaitable (async)."""

Listener: TypeAlias = Callable[[Event], None]


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
    types: tuple[type[Event], ...], identity: str | None
) -> frozenset[type[Event]] | None:
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


class _Filter:
    """Which events a subscriber wants: some types (or all), one participant (or all)."""

    __slots__ = ("identity", "types")

    def __init__(self, types: frozenset[type[Event]] | None, identity: str | None) -> None:
        self.types = types
        self.identity = identity

    def matches(self, event: Event) -> bool:
        if self.types is not None and type(event) not in self.types:
            return False
        if self.identity is None:
            return True
        participant = participant_of(event)
        return participant is not None and participant.identity == self.identity


class EventSubscription(Subscription[E_co]):
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
    block unsubscribes. A [`Subscription`][lkkit.Subscription]: bounded, with an
    overflow policy.
    """

    def __init__(
        self,
        bus: EventBus,
        event_filter: _Filter,
        *,
        buffer: int,
        overflow: OverflowPolicy,
        what: str = "event subscription",
    ) -> None:
        super().__init__(
            buffer=buffer,
            overflow=overflow,
            on_open=bus._attach,
            on_close=bus._detach,
            what=what,
        )
        self._bus = bus
        self._filter = event_filter
        self._snapshot: EventSnapshot | None = None

    @property
    def snapshot(self) -> EventSnapshot:
        """The room when the subscription started; see [`EventSnapshot`][lkkit.EventSnapshot].

        Raises:
            SessionStateError: the subscription has not been entered yet.
        """
        if self._snapshot is None:
            raise SessionStateError("enter the subscription (async with) first")
        return self._snapshot

    async def __aenter__(self: _ES) -> _ES:
        # Snapshot and registration happen in one synchronous step: no event between.
        self._snapshot = self._bus._snapshot(self._filter.identity)
        self._open()
        return self


class EventHandler:
    """A handler registered with [`Session.on`][lkkit.Session.on].

    It runs until the session ends or [`aclose`][lkkit.EventHandler.aclose]; it is
    also an `async with` block that removes it on exit.
    """

    __slots__ = ("_bus", "_callback", "_filter", "_subscription", "errors")

    def __init__(
        self,
        bus: EventBus,
        event_filter: _Filter,
        callback: Callable[[Any], HandlerResult],
        subscription: EventSubscription[Event] | None,
    ) -> None:
        self._bus = bus
        self._filter = event_filter
        self._callback = callback
        self._subscription = subscription
        self.errors = 0
        """How many times the handler raised (each was logged with its event)."""

    @property
    def dropped(self) -> int:
        """Events an async handler missed because its buffer was full."""
        return self._subscription.dropped if self._subscription is not None else 0

    @property
    def active(self) -> bool:
        """Whether the handler still receives events."""
        if self._subscription is not None:
            return not self._subscription.ended
        return self in self._bus._handlers

    async def aclose(self) -> None:
        """Stop calling the handler; events buffered for it are discarded. Idempotent.

        Called from the handler's own task (an async handler closing itself), it
        returns at once and the handler ends after the current event.
        """
        self._bus._remove_handler(self)
        if self._subscription is not None:
            await self._subscription.aclose()

    async def __aenter__(self) -> EventHandler:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        kind = "async" if self._subscription is not None else "sync"
        return f"<EventHandler {kind} {self._callback!r} active={self.active}>"


class EventBus:
    """Fans the SDK's room events out, typed, to lkkit's listeners and subscribers."""

    def __init__(self) -> None:
        self._room: rtc.Room | None = None
        self._callbacks: list[tuple[str, Callable[..., None]]] = []
        self._listeners: list[Listener] = []
        # Subscriptions and sync handlers, in registration order.
        self._sinks: list[EventSubscription[Any] | EventHandler] = []
        self._handlers: set[EventHandler] = set()
        self._speaking: dict[str, Participant] = {}
        self._previous: dict[tuple[type[Event], str], str] = {}
        self._untap: Callable[[], None] = lambda: None
        self._disconnected = False
        self._closed = False
        self.spawn: Callable[..., asyncio.Task[Any]] | None = None
        """Starts an async handler's task; the session core sets it to its own spawn."""
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
        # The SDK applies a `participants_updated` event (new metadata and name) before
        # it reports `participant_metadata_changed` / `_name_changed`, whose "old" value
        # is then the new one. Note the values the update is about to overwrite.
        self._untap = tap_room_events(room, self._on_raw_room_event)
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

    def _on_raw_room_event(self, event: Any) -> None:
        room = self._room
        if room is not None and event.WhichOneof("message") == "participants_updated":
            self._note_previous(room, event.participants_updated.participants)

    def _note_previous(self, room: rtc.Room, infos: Iterable[Any]) -> None:
        for info in infos:
            current = retrieve_participant(room, info.identity)
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
        """End every subscription and handler; called when the session ends. Idempotent.

        Subscriptions yield what they buffered (the `Disconnected` event, say), then
        end; async handlers finish their buffered events (the session waits for them,
        bounded by its shutdown timeout).

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
            and room_was_connected(room)
            and not room.isconnected()
        ):
            self._disconnected = True
            self.publish(Disconnected(reason))
        self._closed = True
        self._untap()
        if self._room is not None:
            for name, callback in self._callbacks:
                self._room.off(name, callback)  # type: ignore[arg-type]
        self._callbacks.clear()
        self._listeners.clear()
        sinks, self._sinks = self._sinks, []
        self._handlers.clear()
        for sink in sinks:
            if isinstance(sink, EventSubscription):
                sink._end()

    def _on_sdk_event(self, name: str, args: tuple[Any, ...]) -> None:
        room = self._room
        if room is None or self._closed:
            return
        event = SDK_EVENT_CONVERTERS[name](room, args)
        if event is None:
            logger.debug("lkkit skipped SDK event %r without a known participant", name)
            return
        if self._disconnected:
            # Disconnected is the session's last event. The SDK can report more after
            # it: its disconnect() emits the state change and `disconnected` again
            # after the native layer already reported the end.
            logger.debug("lkkit dropped SDK event %r after Disconnected", name)
            return
        if isinstance(event, Disconnected):
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
            if sink._filter.matches(event):
                if isinstance(sink, EventHandler):
                    self._call_sync(sink, event)
                else:
                    sink._offer(event)

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
        chosen = _check_filter(types, identity)
        buffer, policy = check_buffer(buffer, overflow)
        return EventSubscription(self, _Filter(chosen, identity), buffer=buffer, overflow=policy)

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
        if not callable(handler) or isinstance(handler, type):
            raise ConfigurationError(f"handler must be a function, got {handler!r}")
        identity = _identity(participant)
        event_filter = _Filter(_check_filter(types, identity), identity)
        buffer, _ = check_buffer(buffer, OverflowPolicy.DROP_OLDEST)
        if not _is_async(handler):
            sync_handler = EventHandler(self, event_filter, handler, None)
            self._sinks.append(sync_handler)
            self._handlers.add(sync_handler)
            return sync_handler
        if self.spawn is None:
            raise SessionStateError("async handlers need a session")
        subscription: EventSubscription[Event] = EventSubscription(
            self,
            event_filter,
            buffer=buffer,
            overflow=OverflowPolicy.DROP_OLDEST,
            what="async event handler",
        )
        async_handler = EventHandler(self, event_filter, handler, subscription)
        subscription._open()
        self.spawn(self._run_async_handler(async_handler, subscription), name="event handler")
        return async_handler

    async def _run_async_handler(
        self, handler: EventHandler, subscription: EventSubscription[Event]
    ) -> None:
        # Ends when its subscription ends (aclose() or the session's end), after the
        # events buffered for it; the session cancels it after its shutdown timeout.
        callback = handler._callback
        async for event in subscription:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._report(handler, event)

    def _call_sync(self, handler: EventHandler, event: Event) -> None:
        try:
            result = handler._callback(event)
        except Exception:
            self._report(handler, event)
            return
        if inspect.isawaitable(result):
            # A callable object with an async __call__ that was not recognised: the
            # dispatch is synchronous and cannot await it.
            if inspect.iscoroutine(result):
                result.close()
            handler.errors += 1
            self.handler_errors += 1
            logger.error(
                "lkkit event handler %r returned an awaitable from a sync call; "
                "define it with `async def`",
                handler._callback,
            )

    def _report(self, handler: EventHandler, event: Event) -> None:
        handler.errors += 1
        self.handler_errors += 1
        logger.exception("lkkit event handler %r raised on %r", handler._callback, event)

    def _check_open(self) -> None:
        if self._closed:
            raise SessionStateError("the session has ended; it delivers no more events")

    def _attach(self, subscription: Subscription[Any]) -> None:
        assert isinstance(subscription, EventSubscription)
        if self._closed:
            subscription._end()  # iteration ends at once: the session is over
            return
        self._sinks.append(subscription)

    def _detach(self, subscription: Subscription[Any]) -> None:
        if subscription in self._sinks:
            self._sinks.remove(subscription)

    def _remove_handler(self, handler: EventHandler) -> None:
        self._handlers.discard(handler)
        if handler in self._sinks:
            self._sinks.remove(handler)

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
