"""The session core: the one owner of a session's room, event bus, tasks and close hooks.

A [`Session`][lkkit.Session] creates its core first and hands it to each capability
(`data`, `audio`, ...). Capabilities know the core, never the session: they read the
room through `require_connected()`, events through `bus`, start background work with
`spawn()`, and end with the session through `on_close()`.

No task outlives its owner: every task lkkit starts for a session is spawned here, and
the session's close waits for them (bounded) and cancels what is left, so once
`Session.aclose()` returns no task of that session exists.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from livekit import rtc

from ._event_bus import EventBus
from ._exceptions import NotConnected, SessionStateError
from ._tasks import TaskOwner
from ._types import ConnectionState, DisconnectReason, connection_state_from_sdk

__all__ = ["SessionCore", "SessionState", "TaskOwner"]

logger = logging.getLogger("lkkit")

T = TypeVar("T")


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
