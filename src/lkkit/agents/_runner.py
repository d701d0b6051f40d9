"""One job's run, wherever it runs (in the worker's event loop, or in a job process):
join, run the entrypoint until the job ends, run the shutdown callbacks, report the end
(before leaving: the server marks a job whose agent left first as failed), leave."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .._exceptions import LkkitError, WorkerError
from ._job import Job, JobContext

if TYPE_CHECKING:
    from .._session import ConnectOptions, Session

__all__ = ["run_job", "run_prewarm"]

logger = logging.getLogger("lkkit.agents")

Spawn = Callable[..., "asyncio.Task[Any]"]


async def run_prewarm(prewarm: Callable[[], Any] | None, seconds: float) -> Any:
    """Run `prewarm` (sync in a thread, or async) within `seconds`; its result.

    Raises:
        WorkerError: it raised or took longer than `seconds`.
    """
    if prewarm is None:
        return None
    try:
        with anyio.fail_after(seconds):
            if inspect.iscoroutinefunction(prewarm):
                return await prewarm()
            result = await anyio.to_thread.run_sync(prewarm, abandon_on_cancel=True)
            return await result if inspect.isawaitable(result) else result
    except TimeoutError as exc:
        raise WorkerError(f"prewarm took longer than {seconds:g} s") from exc
    except Exception as exc:
        raise WorkerError(f"prewarm failed: {exc!r}") from exc


async def run_job(
    job: Job,
    url: str,
    token: str,
    *,
    entrypoint: Callable[[JobContext], Awaitable[object]],
    userdata: Any,
    connect_options: ConnectOptions | None,
    shutdown_timeout: float,
    spawn: Spawn,
    requested_at: float,
    assigned_at: float,
    on_started: Callable[[JobContext], Awaitable[None]],
    report_end: Callable[[str], Awaitable[None]],
) -> str:
    """Run `job`; the error text ("" for success). `report_end` is awaited once."""
    # The SDK is imported here, not with the worker, which registers before paying
    # for it (and warms it up right after).
    from .._session import ConnectOptions, Session

    try:
        session = await Session(url, token, connect_options or ConnectOptions())
    except LkkitError as exc:
        error = f"the agent could not join {job.room_name!r}: {exc}"
        logger.error("job %s: %s", job.id, error)
        await report_end(error)
        return error
    context = JobContext(
        job,
        session,
        userdata,
        requested_at=requested_at,
        assigned_at=assigned_at,
        connected_at=time.monotonic(),
    )
    logger.info("job %s started in room %r", job.id, job.room_name)
    try:
        await on_started(context)
        error = await _until_the_end(context, session, entrypoint, shutdown_timeout, spawn)
        await report_end(error)
    finally:
        await session.aclose()
    logger.info(
        "job %s ended: %s%s", job.id, context._ending.reason, f" ({error})" if error else ""
    )
    return error


async def _until_the_end(
    context: JobContext,
    session: Session,
    entrypoint: Callable[[JobContext], Awaitable[object]],
    shutdown_timeout: float,
    spawn: Spawn,
) -> str:
    entry = spawn(_entry(entrypoint, context), name=f"entrypoint {context.job.id}")
    closed = spawn(_on_session_end(session, context), name="job session watch")
    try:
        await context._ending.event.wait()
    finally:
        closed.cancel()
    with anyio.CancelScope(shield=True):
        if not entry.done():
            with anyio.move_on_after(shutdown_timeout):
                await asyncio.wait([entry])
            if not entry.done():
                logger.warning(
                    "job %s: the entrypoint still runs %g s after the job ended; cancelling it",
                    context.job.id,
                    shutdown_timeout,
                )
                entry.cancel()
                await asyncio.wait([entry])
                if not context._ending.error:
                    context._ending.error = (
                        f"the entrypoint did not finish within {shutdown_timeout:g} s "
                        "of the job's end"
                    )
        with anyio.move_on_after(shutdown_timeout):
            await context._run_callbacks()
    return context._ending.error


async def _entry(
    entrypoint: Callable[[JobContext], Awaitable[object]], context: JobContext
) -> None:
    try:
        await entrypoint(context)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.exception("job %s: the entrypoint raised", context.job.id)
        context._end("the entrypoint raised", error=f"{type(exc).__name__}: {exc}")


async def _on_session_end(session: Session, context: JobContext) -> None:
    reason = await session.wait_closed()
    context._end(f"the session ended ({reason.value if reason else 'unknown'})")
