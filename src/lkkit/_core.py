"""The session core: the one owner of a session's room, event bus, tasks and close hooks.

A [`Session`][lkkit.Session] creates its core first and hands it to each capability
(`data`, `audio`, ...). Capabilities know the core, never the session: they read the
room through `require_connected()`, events through `bus`, start background work with
`spawn()`, and end with the session through `on_close()`.

Track operations are serialised here: `publish_track` and `unpublish_track` run one
at a time per session, each to completion even when its caller is cancelled, and the
session's leave waits for the one in flight (`drain_track_ops`). The SDK's native
layer renegotiates the publisher connection for every (un)publish; overlapping
operations and a leave during one make it negotiate a connection that is closing
("failed to negotiate the publisher: InvalidState ... Called in wrong state: closed"),
and leave publish calls that never complete (see docs/audio.md).

No task outlives its owner: every task lkkit starts for a session is spawned here, and
the session's close waits for them (bounded) and cancels what is left, so once
`Session.aclose()` returns no task of that session exists.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from livekit import rtc

from ._event_bus import EventBus
from ._exceptions import (
    NotConnected,
    PublishError,
    PublishNotAllowed,
    SessionStateError,
    map_sdk_exceptions,
)
from ._tasks import TaskOwner
from ._types import ConnectionState, DisconnectReason, connection_state_from_sdk

__all__ = ["SessionCore", "SessionState", "TaskOwner"]

logger = logging.getLogger("lkkit")

T = TypeVar("T")

_RECONNECT_RECHECK_S = 1.0

TRACK_OP_TIMEOUT_S = 10.0
"""How long one publish or unpublish may take before lkkit stops waiting for it."""


class SessionState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


class SessionCore:
    """What every capability of a session shares (internal API)."""

    def __init__(self, disconnect_reason: Callable[[], DisconnectReason | None]) -> None:
        self.state = SessionState.NEW
        self.bus = EventBus()
        self.tasks = TaskOwner()
        self.owns_room = True
        self._room: rtc.Room | None = None
        self._close_hooks: list[Callable[[], None]] = []
        self._bind_hooks: list[Callable[[rtc.Room], None]] = []
        self._closed = False
        self._disconnect_reason = disconnect_reason
        self.bus.spawn = self.spawn
        self._track_lock = asyncio.Lock()
        self._track_ops_in_flight = 0

    # -- the room ------------------------------------------------------------------------

    @property
    def room(self) -> rtc.Room:
        """The SDK room (bound before connect).

        Raises:
            NotConnected: no room is bound yet.
        """
        if self._room is None:
            raise NotConnected("the session has not connected yet")
        return self._room

    @property
    def room_or_none(self) -> rtc.Room | None:
        return self._room

    def bind(self, room: rtc.Room) -> None:
        """Bind `room` (before its connect, or on attach); run the bind hooks."""
        if self._room is not None:
            raise SessionStateError("the session is already bound to a room")
        self._room = room
        self.bus.bind(room)
        hooks, self._bind_hooks = self._bind_hooks, []
        for hook in hooks:
            self._run_hook(hook, room)

    def on_bind(self, hook: Callable[[rtc.Room], None]) -> None:
        """Run `hook(room)` once the room is bound (at once if it is)."""
        if self._room is not None:
            hook(self._room)
        elif not self._closed:
            self._bind_hooks.append(hook)

    @property
    def connection_state(self) -> ConnectionState:
        room = self._room
        if room is None or (self.state is SessionState.CLOSED and self.owns_room):
            return ConnectionState.DISCONNECTED
        return connection_state_from_sdk(room.connection_state)

    @property
    def is_connected(self) -> bool:
        return (
            self.state is SessionState.CONNECTED
            and self._room is not None
            and self.connection_state is not ConnectionState.DISCONNECTED
        )

    def require_connected(self) -> rtc.Room:
        """The SDK room, or [`NotConnected`][lkkit.NotConnected] when not connected."""
        if not self.is_connected:
            reason = self._disconnect_reason()
            raise NotConnected(
                f"the session is {self.connection_state.value}"
                + (f" ({reason.value})" if reason is not None else "")
            )
        return self.room

    async def wait_until_sendable(self) -> rtc.Room:
        """The SDK room once the session is connected: while it is reconnecting, wait
        for the outcome (the SDK's attempts are bounded, about 20 s).

        The SDK's own sends wait too, but fail with a generic "engine is closed" when
        the reconnection fails; waiting here first makes that `NotConnected`, with the
        session's disconnect reason.

        Raises:
            NotConnected: the session is not connected, or the reconnection failed.
        """
        room = self.require_connected()
        while self.connection_state is ConnectionState.RECONNECTING:
            changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def on_event(event: object, changed: asyncio.Future[None] = changed) -> None:
                if not changed.done():
                    changed.set_result(None)

            remove = self.bus.add_listener(on_event) if not self.bus.closed else None
            try:
                # Re-checked every second too: the bus may close under the wait.
                with anyio.move_on_after(_RECONNECT_RECHECK_S):
                    await asyncio.shield(changed)
            finally:
                if remove is not None:
                    remove()
            room = self.require_connected()
        return room

    # -- track operations (serialised) -----------------------------------------------------

    async def publish_track(
        self, track: rtc.LocalTrack, options: rtc.TrackPublishOptions
    ) -> rtc.LocalTrackPublication:
        """Publish `track`: one track operation at a time, run to completion.

        A caller cancelled while the publish is in flight gets its cancellation; the
        publish still completes, and the track it published is unpublished again.

        Raises:
            PublishNotAllowed: the grants do not allow the track's source, known before
                publishing, or after the server ignored the request for that reason.
            NotConnected: the session is not connected (or left while waiting).
            PublishError: the SDK refused.
            TimeoutError: the SDK did not answer within `TRACK_OP_TIMEOUT_S`.
        """
        refusal = _grants_refusal(self.require_connected(), options.source)
        if refusal is not None:
            raise refusal

        async def publish(room: rtc.Room) -> rtc.LocalTrackPublication:
            return await room.local_participant.publish_track(track, options)

        task = self._start_track_op(publish, name=f"publish {track.name!r}")
        try:
            return await _finished(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._unpublish_abandoned)
            raise
        except (PublishError, TimeoutError) as exc:
            # The server answers a source it does not allow with a NOT_ALLOWED response
            # the SDK ignores: its publish times out. The grants may have changed
            # since the check above; they say why.
            room = self.room_or_none
            refusal = _grants_refusal(room, options.source) if room is not None else None
            if refusal is not None:
                raise refusal from exc
            raise

    async def unpublish_track(self, sid: str) -> None:
        """Unpublish the local track `sid`: one track operation at a time, run to
        completion even when the caller is cancelled.

        Raises:
            NotConnected: the session is not connected (or left while waiting).
            PublishError: the SDK refused (an unknown sid, say).
            TimeoutError: the SDK did not answer within `TRACK_OP_TIMEOUT_S`.
        """
        self.require_connected()

        async def unpublish(room: rtc.Room) -> None:
            await room.local_participant.unpublish_track(sid)

        task = self._start_track_op(unpublish, name=f"unpublish {sid}")
        await _finished(task)

    @property
    def track_ops_in_flight(self) -> int:
        """Track operations started and not finished (at most one runs at a time)."""
        return self._track_ops_in_flight

    async def drain_outgoing_data(self) -> None:
        """Wait until the data this session's data channels accepted is on the wire
        (the caller bounds the wait). Called by the session's leave, before it
        disconnects."""
        room = self.room_or_none
        if room is not None and room.isconnected():
            await wait_until_data_is_on_the_wire(room)

    async def drain_track_ops(self) -> None:
        """Wait until no track operation is in flight (the caller bounds the wait).
        Called by the session's leave once the state is CLOSING: queued operations
        then fail with `NotConnected` instead of starting."""
        async with self._track_lock:
            pass

    def _start_track_op(
        self, op: Callable[[rtc.Room], Coroutine[Any, Any, T]], *, name: str
    ) -> asyncio.Task[_Outcome[T]]:
        async def run() -> _Outcome[T]:
            self._track_ops_in_flight += 1
            try:
                async with self._track_lock:
                    room = self.require_connected()
                    with anyio.fail_after(TRACK_OP_TIMEOUT_S):
                        with map_sdk_exceptions():
                            return _Outcome(await op(room), None)
            except Exception as exc:  # handed to the caller, not logged by the owner
                return _Outcome(None, exc)
            finally:
                self._track_ops_in_flight -= 1

        return self.spawn(run(), name=f"track op: {name}")

    def _unpublish_abandoned(self, task: asyncio.Task[_Outcome[rtc.LocalTrackPublication]]) -> None:
        if task.cancelled() or self._closed or not self.is_connected:
            return
        publication = task.result().value
        if publication is not None:
            sid = publication.sid

            async def unpublish(room: rtc.Room) -> None:
                await room.local_participant.unpublish_track(sid)

            self._start_track_op(unpublish, name=f"unpublish abandoned {sid}")

    # -- tasks and the end -----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run `coro` in a task the session owns (see `TaskOwner.spawn`)."""
        return self.tasks.spawn(coro, name=name)

    @property
    def closed(self) -> bool:
        """Whether the close hooks have run (the session's parts have ended)."""
        return self._closed

    def on_close(self, hook: Callable[[], None]) -> None:
        """Run `hook()` when the session ends (at once if it has). Hooks are synchronous
        and run in the order added; one that raises is logged."""
        if self._closed:
            self._run_hook(hook)
        else:
            self._close_hooks.append(hook)

    def run_close_hooks(self) -> None:
        """End every part of the session: the event bus (whose last event is the
        session's `Disconnected`), then the hooks. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._bind_hooks.clear()
        # The bus first: its listeners (data, audio) see the final `Disconnected`.
        self.bus.close(self._disconnect_reason())
        hooks, self._close_hooks = self._close_hooks, []
        for hook in hooks:
            self._run_hook(hook)

    @staticmethod
    def _run_hook(hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("lkkit session hook %r failed", hook)


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[T]):
    """A track operation's result or error, returned by its task (so the task owner
    does not log an error the caller handles)."""

    value: T | None
    error: Exception | None


def _grants_refusal(room: rtc.Room, source: int) -> PublishNotAllowed | None:
    """The error for publishing a track of `source`, when the local participant's
    grants (as the server last sent them) do not allow it."""
    permissions = room.local_participant.permissions
    allowed = list(permissions.can_publish_sources)
    if permissions.can_publish and (not allowed or source in allowed):
        return None
    what = rtc.TrackSource.Name(source).removeprefix("SOURCE_").lower()  # type: ignore[arg-type]
    return PublishNotAllowed(
        f"this session's grants do not allow publishing a {what} track "
        "(canPublish / canPublishSources)"
    )


async def _finished(task: asyncio.Task[_Outcome[T]]) -> T:
    # asyncio.wait, unlike awaiting the task, leaves it running when the caller is
    # cancelled: the operation completes, and the next one waits for it.
    await asyncio.wait([task])
    if task.cancelled():  # the session ended (its tasks were cancelled) under it
        raise NotConnected("the session ended during a track operation")
    outcome = task.result()
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]


# libwebrtc caches its stats for 50 ms: polls closer together see the same numbers.
_STATS_POLL_S = 0.07


async def _publisher_bytes(room: rtc.Room) -> tuple[int, int]:
    """(bytes the publisher's data channels accepted, bytes its transport sent)."""
    stats = await room.get_rtc_stats()
    accepted = wire = 0
    for entry in stats.publisher_stats:
        kind = entry.WhichOneof("stats")
        if kind == "data_channel":
            accepted += entry.data_channel.dc.bytes_sent
        elif kind == "transport":
            wire += entry.transport.transport.bytes_sent
    return accepted, wire


async def wait_until_data_is_on_the_wire(room: rtc.Room) -> None:
    """Return once the bytes the data channels accepted have left on the transport.

    A send returns when the native layer has handed its packets to the data channel's
    SCTP queue, and leaving closes the connection with what is still queued: a 2 MB
    message sent just before leaving lost most of its bytes (the wire carries about
    2-3 MB/s here). The stats say how far the wire is: wait until the transport has
    sent at least as many bytes as the data channels accepted (necessary, as the
    transport carries them and more), then, without media on the transport, until
    it stops growing (sufficient: nothing is left to send).
    """
    try:
        accepted, wire = await _publisher_bytes(room)
        if accepted == 0:
            return
        carries_media = bool(room.local_participant.track_publications)
        while True:
            if wire >= accepted and carries_media:
                return
            await anyio.sleep(_STATS_POLL_S)
            accepted, now = await _publisher_bytes(room)
            if now >= accepted and now == wire:
                return
            wire = now
    except Exception:  # stats of a connection going away: nothing more to wait for
        logger.debug("no data channel stats at leave", exc_info=True)
