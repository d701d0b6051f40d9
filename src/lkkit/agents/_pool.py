"""Job processes: a pool of prewarmed child processes for workers that want jobs
isolated from each other (`Worker(processes=ProcessPoolOptions(...))`).

Each child runs its own event loop, prewarms once, then runs the jobs it is given with
the same code as in-process jobs (`_runner.run_job`). The worker keeps the connection
to the server: a child reports a job's end to the worker, which reports it to the
server and then lets the child leave the room. A child that dies mid-job (killed,
crashed) has its job reported failed, and is replaced.

Children come from a forkserver that has imported lkkit (not the native library, which
starts threads and must not be forked): children share those pages, and the worker's
own process, which does run the native library, is never forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .._exceptions import ConfigurationError, WorkerError
from ._job import Job, JobContext

if TYPE_CHECKING:
    from .._session import ConnectOptions

__all__ = ["ProcessPool", "ProcessPoolOptions"]

logger = logging.getLogger("lkkit.agents")

_ACK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ProcessPoolOptions:
    """Run jobs in child processes instead of the worker's event loop.

    Attributes:
        idle_processes: prewarmed processes kept ready for the next jobs.
        jobs_per_process: jobs one process runs at once.
    """

    idle_processes: int = 1
    jobs_per_process: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.idle_processes, int) or self.idle_processes < 0:
            raise ConfigurationError("idle_processes must be an int >= 0")
        if not isinstance(self.jobs_per_process, int) or self.jobs_per_process < 1:
            raise ConfigurationError("jobs_per_process must be an int >= 1")


@dataclass(frozen=True, slots=True)
class _ChildConfig:
    entrypoint: Callable[[JobContext], Awaitable[object]]
    prewarm: Callable[[], Any] | None
    prewarm_timeout: float
    shutdown_timeout: float
    connect_options: ConnectOptions | None


class _Process:
    """One child process, seen from the worker."""

    def __init__(self, process: Any, connection: multiprocessing.connection.Connection) -> None:
        self.process = process
        self.connection = connection
        self.jobs: dict[str, asyncio.Future[str]] = {}
        self.ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.dead = False


class ProcessPool:
    """The worker's side of its job processes."""

    def __init__(self, options: ProcessPoolOptions, config: _ChildConfig) -> None:
        self._closing = False
        self._options = options
        self._config = config
        context = multiprocessing.get_context("forkserver")
        # lkkit's session and the SDK's Python modules, imported once in the forkserver
        # (the worker itself imports them lazily); the native library starts per child.
        context.set_forkserver_preload(["lkkit._session", "lkkit.agents._pool"])
        self._context = context
        self._processes: list[_Process] = []

    @property
    def pids(self) -> list[int]:
        """The job processes alive now."""
        return [p.process.pid for p in self._processes if not p.dead]

    async def start(self) -> None:
        """Start the idle processes and wait for their prewarm.

        Raises:
            WorkerError: a process failed to prewarm (or took longer than its timeout).
        """
        started = [self._spawn() for _ in range(self._options.idle_processes)]
        for process in started:
            await self._wait_ready(process)

    def _spawn(self) -> _Process:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_child_main, args=(child, self._config), name="lkkit job process", daemon=True
        )
        process.start()
        child.close()
        entry = _Process(process, parent)
        self._processes.append(entry)
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_readable, entry)
        return entry

    async def _wait_ready(self, process: _Process) -> None:
        with anyio.move_on_after(self._config.prewarm_timeout + 30):
            error = await asyncio.shield(process.ready)
            if error:
                raise WorkerError(f"a job process failed to start: {error}")
            return
        raise WorkerError("a job process did not become ready")

    async def run(
        self, job: Job, url: str, token: str, report_end: Callable[[str], Awaitable[None]]
    ) -> str:
        """Run `job` in a process with room for it; its error text ("" for success)."""
        process = next(
            (
                p
                for p in self._processes
                if not p.dead and len(p.jobs) < self._options.jobs_per_process
            ),
            None,
        )
        if process is None:
            process = self._spawn()
            await self._wait_ready(process)
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        process.jobs[job.id] = done
        process.connection.send(("job", job, url, token))
        self._top_up()
        error = await asyncio.shield(done)
        await report_end(error)
        if not process.dead:
            with contextlib.suppress(OSError):
                process.connection.send(("reported", job.id))
        if not process.jobs and len(self._idle()) > self._options.idle_processes:
            self._retire(process)
        return error

    def shutdown(self, job_id: str, reason: str) -> None:
        for process in self._processes:
            if job_id in process.jobs and not process.dead:
                with contextlib.suppress(OSError):
                    process.connection.send(("shutdown", job_id, reason))

    def _idle(self) -> list[_Process]:
        return [p for p in self._processes if not p.dead and not p.jobs]

    def _top_up(self) -> None:
        # Keep `idle_processes` ready for the next jobs.
        for _ in range(self._options.idle_processes - len(self._idle())):
            self._spawn()

    def _on_readable(self, process: _Process) -> None:
        try:
            message = process.connection.recv()
        except (EOFError, OSError):
            self._on_death(process)
            return
        kind = message[0]
        if kind == "ready":
            if not process.ready.done():
                process.ready.set_result(message[1])
        elif kind == "ended":
            _, job_id, error = message
            future = process.jobs.pop(job_id, None)
            if future is not None and not future.done():
                future.set_result(error)

    def _on_death(self, process: _Process) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(process.connection.fileno())
        process.dead = True
        process.process.join(timeout=1)
        code = process.process.exitcode
        if not process.ready.done():
            process.ready.set_result(f"it exited with code {code}")
        for job_id, future in process.jobs.items():
            if not future.done():
                future.set_result(f"the job process died (exit code {code})")
                logger.error(
                    "job %s: its process %s died (exit code %s)",
                    job_id,
                    process.process.pid,
                    code,
                )
        process.jobs.clear()
        self._processes.remove(process)
        process.connection.close()
        if not self._closing:
            self._top_up()

    def _retire(self, process: _Process) -> None:
        with contextlib.suppress(OSError):
            process.connection.send(("exit",))

    async def aclose(self) -> None:
        """Stop every process (their jobs have ended or are ended by the worker)."""
        self._closing = True
        for process in list(self._processes):
            self._retire(process)
        for process in list(self._processes):
            await anyio.to_thread.run_sync(process.process.join, 5.0)
            if process.process.is_alive():
                process.process.kill()
            if not process.dead:
                self._on_death(process)


# -- the child's side ------------------------------------------------------------------


def _child_main(connection: multiprocessing.connection.Connection, config: _ChildConfig) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_child(connection, config))


async def _child(connection: multiprocessing.connection.Connection, config: _ChildConfig) -> None:
    from .._sdk_compat import warm_up_ffi
    from .._tasks import TaskOwner
    from ._runner import run_job, run_prewarm

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()

    def readable() -> None:
        try:
            inbox.put_nowait(connection.recv())
        except (EOFError, OSError):
            loop.remove_reader(connection.fileno())
            inbox.put_nowait(None)

    loop.add_reader(connection.fileno(), readable)
    # The native library's start-up, paid before the process is ready, not by its job.
    warm_up_ffi()
    try:
        userdata = await run_prewarm(config.prewarm, config.prewarm_timeout)
    except WorkerError as exc:
        connection.send(("ready", str(exc)))
        return
    connection.send(("ready", ""))
    tasks = TaskOwner("job process")
    contexts: dict[str, JobContext] = {}
    acks: dict[str, asyncio.Event] = {}

    async def one(job: Job, url: str, token: str) -> None:
        async def started(context: JobContext) -> None:
            contexts[job.id] = context

        async def report_end(error: str) -> None:
            acks[job.id] = asyncio.Event()
            connection.send(("ended", job.id, error))
            with anyio.move_on_after(_ACK_TIMEOUT_S):
                await acks[job.id].wait()  # the worker told the server: now leave

        try:
            now = loop.time()
            await run_job(
                job,
                url,
                token,
                entrypoint=config.entrypoint,
                userdata=userdata,
                connect_options=config.connect_options,
                shutdown_timeout=config.shutdown_timeout,
                spawn=tasks.spawn,
                requested_at=now,
                assigned_at=now,
                on_started=started,
                report_end=report_end,
            )
        finally:
            contexts.pop(job.id, None)
            acks.pop(job.id, None)

    while (message := await inbox.get()) is not None:
        kind = message[0]
        if kind == "job":
            _, job, url, token = message
            tasks.spawn(one(job, url, token), name=f"job {job.id}")
        elif kind == "shutdown":
            context = contexts.get(message[1])
            if context is not None:
                context._end(message[2])
        elif kind == "reported":
            event = acks.get(message[1])
            if event is not None:
                event.set()
        elif kind == "exit":
            break
    for context in contexts.values():
        context._end("the job process is closing")
    await tasks.wait(config.shutdown_timeout * 2 + _ACK_TIMEOUT_S)
    await tasks.aclose()
