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


class TaskOwner:
    """The background tasks of one session (anyio's task group, without the scope:
    a session opened with `await lkkit.connect(...)` has no block to scope them).

    A task that raises is logged; the others go on.
    """

    def __init__(self, name: str = "session") -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run `coro` in a task owned here.

        Raises:
            SessionStateError: the owner has closed (the session ended).
        """
        if self._closed:
            coro.close()
            raise SessionStateError(f"the {self._name} has ended; it starts no more tasks")
        task = asyncio.get_running_loop().create_task(coro, name=f"lkkit {name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def owns(self, task: asyncio.Task[Any] | None) -> bool:
        return task is not None and task in self._tasks

    def disown(self, task: asyncio.Task[Any]) -> None:
        """Stop owning `task`: it is neither awaited nor cancelled by `aclose`."""
        self._tasks.discard(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("lkkit task %r failed", task.get_name(), exc_info=task.exception())

    def _others(self) -> list[asyncio.Task[Any]]:
        current = asyncio.current_task()
        return [task for task in self._tasks if task is not current]

    async def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every task but the caller's own to finish;
        whether they all did."""
        others = self._others()
        if not others:
            return True
        _, pending = await asyncio.wait(others, timeout=timeout)
        return not pending

    async def aclose(self) -> None:
        """Cancel every task but the caller's own and wait for them; no new task
        starts after this. Idempotent."""
        self._closed = True
        while others := self._others():
            for task in others:
                task.cancel()
            await asyncio.wait(others)


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
