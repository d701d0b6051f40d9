"""`TaskOwner`: the one owner of lkkit's background tasks (a session's, a worker's).

Standard library only: the agent worker uses it before the SDK is imported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._exceptions import SessionStateError

__all__ = ["TaskOwner"]

logger = logging.getLogger("lkkit")

T = TypeVar("T")


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
