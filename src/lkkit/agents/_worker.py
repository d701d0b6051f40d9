"""`Worker`: lkkit's agent worker on LiveKit's agent protocol, running jobs in-process.

```python
async def entrypoint(ctx: lkkit.agents.JobContext) -> None:
    await ctx.session.data.send("hello", topic="chat")

async with lkkit.agents.Worker(entrypoint) as worker:  # LIVEKIT_URL, _API_KEY, _SECRET
    await worker.wait_closed()
```

One WebSocket to the server's `/agent` endpoint; the server offers jobs
(`AvailabilityRequest`), the request handler accepts or rejects each within
`request_timeout`, and an accepted job arrives as a `JobAssignment` with a token: the
worker joins the job's room with an lkkit `Session` and runs the entrypoint in a task
of its own, in this process's event loop. See docs/agents.md.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from livekit.protocol import agent as proto_agent

from .._exceptions import ConfigurationError, LkkitError, SessionStateError, WorkerError
from .._tasks import TaskOwner
from . import _protocol as wire
from . import _websocket as websocket
from ._job import Job, JobContext, JobRequest, JobType, _Acceptance, job_type_to_proto
from ._pool import ProcessPool, ProcessPoolOptions, _ChildConfig
from ._runner import run_job, run_prewarm

if TYPE_CHECKING:
    from .._credentials import Credentials
    from .._session import ConnectOptions

__all__ = ["Worker"]

logger = logging.getLogger("lkkit.agents")

Entrypoint = Callable[[JobContext], Awaitable[object]]
RequestHandler = Callable[[JobRequest], "Awaitable[object] | object"]
Prewarm = Callable[[], "Awaitable[Any] | Any"]

_REGISTER_TIMEOUT_S = 10.0
_BACKOFF_MAX_S = 5.0


class _RunningJob:
    __slots__ = ("context", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.context: JobContext | None = None


class Worker:
    """An agent worker: registers with the server and runs the jobs it accepts.

    Args:
        entrypoint: `async def entrypoint(ctx: JobContext)`, run for each job.
        url: the server (`ws://` or `http://`); default `LIVEKIT_URL`.
        credentials: API key and secret; default from `LIVEKIT_API_KEY` and
            `LIVEKIT_API_SECRET`.
        request_handler: decides on each offered job (`JobRequest.accept` /
            `reject`), sync or async; default: accept every job. It must answer
            within `request_timeout` (the server's whole dispatch round runs under
            a ~3 s deadline); a slow or raising handler refuses the job.
        prewarm: run once before registering (load models); its result is each
            job's `ctx.userdata`. Sync prewarm runs in a thread; both are bounded by
            `prewarm_timeout`.
        job_type: [`JobType`][lkkit.agents.JobType].
        agent_name: `""` gets automatic dispatch; a name gets only explicit
            dispatches for that name.
        max_jobs: jobs run at once; the worker reports itself full at that count.
            `None`: no limit.
        target_load: the server offers jobs only while a worker's load is below
            its `agents.target_load` (0.7 by default). The worker reports
            `target_load * running / max_jobs`, its own jobs, never machine CPU.
        request_timeout: seconds the request handler gets.
        shutdown_timeout: seconds a job's entrypoint and shutdown callbacks get to
            finish once the job ends; then they are cancelled.
        drain_timeout: seconds `aclose()` lets running jobs finish before ending them.
        connect_options: how job sessions connect (auto-subscribe, ...).
        health_port: serve `GET /` on `health_host:health_port` (200 while
            registered, 503 otherwise; JSON body); `None`: no endpoint; 0: any port.
        health_host: the health endpoint's address (loopback by default).
        reconnect: reconnect with backoff when the server goes away.
        processes: run jobs in prewarmed child processes
            ([`ProcessPoolOptions`][lkkit.agents.ProcessPoolOptions]) instead of the
            worker's event loop; prewarm then runs once in each process. The
            entrypoint, request handler and prewarm must be importable module-level
            functions.
    """

    def __init__(
        self,
        entrypoint: Entrypoint,
        *,
        url: str | None = None,
        credentials: Credentials | None = None,
        request_handler: RequestHandler | None = None,
        prewarm: Prewarm | None = None,
        job_type: JobType = JobType.ROOM,
        agent_name: str = "",
        max_jobs: int | None = None,
        target_load: float = 0.7,
        request_timeout: float = 1.0,
        prewarm_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        drain_timeout: float = 60.0,
        status_interval: float = 2.5,
        connect_options: ConnectOptions | None = None,
        health_port: int | None = None,
        health_host: str = "127.0.0.1",
        reconnect: bool = True,
        version: str = "",
        processes: ProcessPoolOptions | None = None,
    ) -> None:
        if not callable(entrypoint):
            raise ConfigurationError("entrypoint must be an async function")
        if max_jobs is not None and (not isinstance(max_jobs, int) or max_jobs < 1):
            raise ConfigurationError(f"max_jobs must be an int >= 1 or None, got {max_jobs!r}")
        if not 0 < target_load <= 1:
            raise ConfigurationError(f"target_load must be in (0, 1], got {target_load}")
        for name, value in (
            ("request_timeout", request_timeout),
            ("prewarm_timeout", prewarm_timeout),
            ("shutdown_timeout", shutdown_timeout),
            ("drain_timeout", drain_timeout),
            ("status_interval", status_interval),
        ):
            if not value > 0:
                raise ConfigurationError(f"{name} must be > 0, got {value}")
        url = url if url is not None else os.environ.get("LIVEKIT_URL", "")
        if not url:
            raise WorkerError("no server URL: pass url= or set LIVEKIT_URL")
        self._url = url
        self._credentials = credentials if credentials is not None else _credentials_from_env()
        self._entrypoint = entrypoint
        self._request_handler = request_handler
        self._prewarm = prewarm
        self._job_type = JobType(job_type)
        self._agent_name = agent_name
        self._max_jobs = max_jobs
        self._target_load = target_load
        self._request_timeout = request_timeout
        self._prewarm_timeout = prewarm_timeout
        self._shutdown_timeout = shutdown_timeout
        self._drain_timeout = drain_timeout
        self._status_interval = status_interval
        self._connect_options = connect_options
        self._health_port = health_port
        self._health_host = health_host
        self._reconnect = reconnect
        self._version = version
        self._processes = processes
        self._pool: ProcessPool | None = None
        self._tasks = TaskOwner("worker")
        self._jobs: dict[str, _RunningJob] = {}
        self._reserved: set[str] = set()  # accepted, assignment not yet received
        self._requested_at: dict[str, float] = {}  # job id -> when the offer arrived
        self._userdata: Any = None
        self._worker_id = ""
        self._registered = asyncio.Event()
        self._closed = asyncio.Event()
        self._started = False
        self._draining = False
        self._ws: websocket.WebSocket | None = None
        self._sdk_loaded: asyncio.Task[None] | None = None
        self._health: asyncio.Server | None = None
        self._health_address: tuple[str, int] | None = None
        self._register_error: BaseException | None = None
        self.jobs_started = 0
        """Jobs whose entrypoint started, since the worker started."""
        self.jobs_failed = 0
        """Jobs that ended failed (the entrypoint raised, or the join failed)."""
        self.registrations = 0
        """Successful registrations (1 + reconnections)."""

    # -- state ---------------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        """The id the server gave this connection (a new one after a reconnect)."""
        return self._worker_id

    @property
    def registered(self) -> bool:
        return self._registered.is_set()

    @property
    def running_jobs(self) -> dict[str, JobContext]:
        """The jobs running now, by job id (those whose session is connected)."""
        return {i: j.context for i, j in self._jobs.items() if j.context is not None}

    @property
    def job_count(self) -> int:
        """Jobs assigned and not ended (in-process or in job processes)."""
        return len(self._jobs)

    @property
    def job_pids(self) -> list[int]:
        """The job processes alive now (empty without `processes`)."""
        return self._pool.pids if self._pool is not None else []

    @property
    def load(self) -> float:
        """What the worker reports to the server (see `target_load`)."""
        if self._max_jobs is None:
            return 0.0
        running = len(self._jobs) + len(self._reserved)
        return min(1.0, running / self._max_jobs) * self._target_load

    @property
    def full(self) -> bool:
        running = len(self._jobs) + len(self._reserved)
        return self._draining or (self._max_jobs is not None and running >= self._max_jobs)

    @property
    def health_address(self) -> tuple[str, int] | None:
        """Where the health endpoint listens, once started."""
        return self._health_address

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Prewarm, start the health endpoint, connect and wait for the registration.

        Raises:
            WorkerError: prewarm failed or timed out, or no registration within 10 s.
            SessionStateError: started twice.
        """
        if self._started:
            raise SessionStateError("a worker can be started once")
        self._started = True
        if self._processes is not None:
            self._pool = ProcessPool(
                self._processes,
                _ChildConfig(
                    self._entrypoint,
                    self._prewarm,
                    self._prewarm_timeout,
                    self._shutdown_timeout,
                    self._connect_options,
                ),
            )
            await self._pool.start()
        else:
            # The SDK and its native library load in a thread while the worker
            # registers (they take about a second), so neither the registration nor
            # the first job waits for them in turn.
            self._sdk_loaded = self._tasks.spawn(
                anyio.to_thread.run_sync(_load_sdk), name="worker SDK load"
            )
            self._userdata = await run_prewarm(self._prewarm, self._prewarm_timeout)
        if self._health_port is not None:
            await self._start_health()
        self._tasks.spawn(self._serve(), name="worker connection")
        with anyio.move_on_after(_REGISTER_TIMEOUT_S):
            await self._registered.wait()
        if not self._registered.is_set():
            error = self._register_error
            await self.aclose()
            raise WorkerError(f"the worker could not register with {self._url}: {error}")
        if self._sdk_loaded is not None:
            await self._sdk_loaded
            logger.info("worker %s ready", self._worker_id)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Start, serve until SIGTERM / SIGINT (or `aclose()`), then drain."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(signum, self._on_signal)
                    installed.append(signum)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread, or no signals here
        try:
            await self._closed.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await self.aclose()

    def _on_signal(self) -> None:
        logger.info("worker: signal received; draining")
        self._tasks.spawn(self.aclose(), name="worker drain")

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def aclose(self) -> None:
        """Drain: report full, take no new job, let running jobs finish (up to
        `drain_timeout`), end the rest, then disconnect. Idempotent."""
        if self._closed.is_set() or self._draining:
            await self._closed.wait()
            return
        self._draining = True
        try:
            await self._send_status()
            with anyio.move_on_after(self._drain_timeout):
                while tasks := self._job_tasks():
                    await asyncio.wait(tasks)
            for job_id in list(self._jobs):
                self._end_job(job_id, "the worker is closing")
            if tasks := self._job_tasks():
                await asyncio.wait(tasks)
        finally:
            with anyio.CancelScope(shield=True):
                ws = self._ws
                if ws is not None:
                    await ws.close()
                await self._tasks.aclose()
                if self._pool is not None:
                    await self._pool.aclose()
                if self._health is not None:
                    self._health.close()
                    await self._health.wait_closed()
                self._registered.clear()
                self._closed.set()

    def _job_tasks(self) -> list[asyncio.Task[None]]:
        return [j.task for j in self._jobs.values() if j.task is not None]

    # -- prewarm and health --------------------------------------------------------------

    async def _start_health(self) -> None:
        self._health = await asyncio.start_server(
            self._answer_health, self._health_host, self._health_port
        )
        host, port = self._health.sockets[0].getsockname()[:2]
        self._health_address = (host, port)

    async def _answer_health(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Any request gets the status: one JSON object, 200 while registered, else 503.
        try:
            with anyio.move_on_after(5.0):
                await reader.readuntil(b"\r\n\r\n")
            body = json.dumps(
                {
                    "registered": self.registered,
                    "worker_id": self._worker_id,
                    "jobs": len(self._jobs),
                    "draining": self._draining,
                    "load": self.load,
                }
            ).encode()
            status = "200 OK" if self.registered else "503 Service Unavailable"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    # -- the connection ------------------------------------------------------------------

    async def _serve(self) -> None:
        delay = 0.1
        while not self._draining:
            try:
                await self._connect_once()
                delay = 0.1
            except (OSError, TimeoutError, wire.ProtocolError) as exc:
                self._register_error = exc
                logger.warning("worker: connection to %s failed: %s", self._url, exc)
            self._ws = None
            self._registered.clear()
            self._worker_id = ""
            if self._draining or not self._reconnect:
                break
            logger.info("worker: reconnecting in %.1f s", delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)
        if not self._reconnect and not self._draining:
            self._closed.set()

    async def _connect_once(self) -> None:
        token = wire.registration_token(self._credentials.api_key, self._credentials.api_secret)
        with anyio.fail_after(_REGISTER_TIMEOUT_S):
            ws = await websocket.connect(
                wire.agent_url(self._url), {"Authorization": f"Bearer {token}"}
            )
        try:
            self._ws = ws
            await self._send(
                wire.register(
                    job_type_to_proto(self._job_type),
                    self._agent_name,
                    self._version,
                    int(self._status_interval),
                )
            )
            first: bytes | str | None = None
            with anyio.move_on_after(_REGISTER_TIMEOUT_S):
                first = await ws.receive()
            if not isinstance(first, bytes):
                raise wire.ProtocolError(f"expected the registration, got {first!r}")
            message = wire.decode_server_message(first)
            if message.WhichOneof("message") != "register":
                raise wire.ProtocolError(f"expected the registration, got {message}")
            self._worker_id = message.register.worker_id
            self.registrations += 1
            logger.info(
                "worker %s registered (%s, agent name %r)",
                self._worker_id,
                self._job_type.value,
                self._agent_name,
            )
            self._registered.set()
            reporter = self._tasks.spawn(self._report_status(), name="worker status")
            try:
                while (frame := await ws.receive()) is not None:
                    if isinstance(frame, bytes):
                        self._on_server_message(wire.decode_server_message(frame))
            finally:
                reporter.cancel()
        finally:
            await ws.close()
        if not self._draining:
            logger.warning("worker %s: the server closed the connection", self._worker_id)

    async def _send(self, frame: bytes) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send(frame)
        except ConnectionError as exc:
            logger.debug("worker: send failed: %s", exc)

    async def _report_status(self) -> None:
        while True:
            await self._send_status()
            await self._send(wire.ping(int(time.time() * 1000)))
            await anyio.sleep(self._status_interval)

    async def _send_status(self) -> None:
        await self._send(
            wire.worker_status(full=self.full, load=self.load, job_count=len(self._jobs))
        )

    def _on_server_message(self, message: proto_agent.ServerMessage) -> None:
        which = message.WhichOneof("message")
        if which == "availability":
            self._requested_at[message.availability.job.id] = time.monotonic()
            self._tasks.spawn(self._answer(message.availability), name="job request")
        elif which == "assignment":
            self._assign(message.assignment)
        elif which == "termination":
            self._end_job(message.termination.job_id, "terminated by the server")
        # pong, register and others need nothing

    # -- jobs ----------------------------------------------------------------------------

    def _end_job(self, job_id: str, reason: str) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        if job.context is not None:
            job.context._end(reason)
        elif self._pool is not None:
            self._pool.shutdown(job_id, reason)

    async def _answer(self, request: proto_agent.AvailabilityRequest) -> None:
        job = Job._from_proto(request.job)
        if self.full:
            await self._send(wire.availability(job.id, available=False))
            return
        offer = JobRequest(job)
        handler = self._request_handler
        if handler is None:
            offer.accept()
        else:
            try:
                with anyio.fail_after(self._request_timeout):
                    result = handler(offer)
                    if inspect.isawaitable(result):
                        await result
            except TimeoutError:
                logger.warning(
                    "job %s: the request handler took longer than %g s; refused",
                    job.id,
                    self._request_timeout,
                )
                offer._answer = False
            except Exception:
                logger.exception("job %s: the request handler raised; refused", job.id)
                offer._answer = False
        answer = offer._answer
        if isinstance(answer, _Acceptance) and not self.full:
            self._reserved.add(job.id)
            await self._send(
                wire.availability(
                    job.id,
                    available=True,
                    identity=answer.identity,
                    name=answer.name,
                    metadata=answer.metadata,
                    attributes=answer.attributes,
                )
            )
            await self._send_status()
        else:
            self._requested_at.pop(job.id, None)
            await self._send(wire.availability(job.id, available=False))

    def _assign(self, assignment: proto_agent.JobAssignment) -> None:
        job = Job._from_proto(assignment.job)
        self._reserved.discard(job.id)
        url = assignment.url or self._url  # the open-source server leaves it empty
        running = _RunningJob()
        run = (
            self._run_job(job, url, assignment.token, running, time.monotonic())
            if self._pool is None
            else self._run_in_process(job, url, assignment.token)
        )
        running.task = self._tasks.spawn(run, name=f"job {job.id}")
        self._jobs[job.id] = running

    async def _run_job(
        self, job: Job, url: str, token: str, running: _RunningJob, assigned_at: float
    ) -> None:
        requested_at = self._requested_at.pop(job.id, assigned_at)
        if self._sdk_loaded is not None and not self._sdk_loaded.done():
            await self._sdk_loaded  # only a job assigned within the worker's first second

        async def started(context: JobContext) -> None:
            running.context = context
            self.jobs_started += 1
            await self._send_status()

        try:
            error = await run_job(
                job,
                url,
                token,
                entrypoint=self._entrypoint,
                userdata=self._userdata,
                connect_options=self._connect_options,
                shutdown_timeout=self._shutdown_timeout,
                spawn=self._tasks.spawn,
                requested_at=requested_at,
                assigned_at=assigned_at,
                on_started=started,
                report_end=lambda error: self._report_end(job, error),
            )
            if error:
                self.jobs_failed += 1
        finally:
            self._jobs.pop(job.id, None)
            await self._send_status()

    async def _run_in_process(self, job: Job, url: str, token: str) -> None:
        assert self._pool is not None
        self._requested_at.pop(job.id, None)
        self.jobs_started += 1
        try:
            error = await self._pool.run(
                job, url, token, report_end=lambda error: self._report_end(job, error)
            )
            if error:
                self.jobs_failed += 1
        finally:
            self._jobs.pop(job.id, None)
            await self._send_status()

    async def _report_end(self, job: Job, error: str) -> None:
        status = proto_agent.JobStatus.JS_FAILED if error else proto_agent.JobStatus.JS_SUCCESS
        await self._send(wire.job_status(job.id, status, error))

    def __repr__(self) -> str:
        return (
            f"<Worker {self._worker_id or '-'} {self._job_type.value} "
            f"agent_name={self._agent_name!r} jobs={len(self._jobs)}>"
        )


def _load_sdk() -> None:
    # Everything a job's session needs: lkkit's session, the SDK, its native library.
    from .. import _session  # noqa: F401
    from .._sdk_compat import warm_up_ffi

    warm_up_ffi()


def _credentials_from_env() -> Credentials:
    from .._credentials import Credentials

    try:
        return Credentials.from_env()
    except LkkitError as exc:
        raise WorkerError(
            "no credentials: pass credentials= or set LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
        ) from exc
