"""Agent workers against the real server: every job type, accept and reject, explicit
dispatch, prewarm, the job's end, failures, reconnection, drain and many jobs at once.
The worker always registers before the room exists (a room created with no worker
registered gets no job: the server does not queue it)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import lkkit
from lkkit.agents import Job, JobContext, JobRequest, JobType, Worker
from lkkit.testing import LiveKitRoom, LocalLiveKitServer

pytestmark = pytest.mark.anyio

WAIT_S = 10.0
# The server announces a non-publisher's join and leave in batches every 3 s.
BATCH_S = 3.0


def room_name() -> str:
    return f"agents-{secrets.token_hex(4)}"


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class Recorder:
    """An entrypoint that records its jobs and keeps them running until told."""

    def __init__(self) -> None:
        self.contexts: list[JobContext] = []
        self.ended: list[str] = []

    async def __call__(self, ctx: JobContext) -> None:
        self.contexts.append(ctx)
        ctx.add_shutdown_callback(lambda: self.ended.append(ctx.job.id))

    @property
    def jobs(self) -> list[Job]:
        return [c.job for c in self.contexts]


@asynccontextmanager
async def worker(
    server: LocalLiveKitServer, entrypoint: Any, **options: Any
) -> AsyncIterator[Worker]:
    options.setdefault("drain_timeout", 2.0)
    options.setdefault("shutdown_timeout", 2.0)
    async with Worker(
        entrypoint, url=server.url, credentials=server.credentials, **options
    ) as running:
        yield running


@asynccontextmanager
async def admin(server: LocalLiveKitServer) -> AsyncIterator[lkkit.RoomAdmin]:
    async with lkkit.RoomAdmin(server.url, server.credentials) as room_admin:
        yield room_admin


async def test_a_room_job_runs_its_entrypoint_with_a_session_in_the_room(
    livekit_server: LocalLiveKitServer,
) -> None:
    recorder = Recorder()
    async with worker(livekit_server, recorder) as running, admin(livekit_server) as api:
        assert running.registered
        assert running.worker_id.startswith("AW_")
        name = room_name()
        await api.create_room(name)
        await wait_until(lambda: len(recorder.contexts) == 1)
        ctx = recorder.contexts[0]
        assert ctx.job.type is JobType.ROOM
        assert ctx.job.room_name == name
        assert ctx.job.participant_identity is None
        assert ctx.session.is_connected
        assert ctx.session.room_name == name
        assert ctx.session.local_participant.kind is lkkit.ParticipantKind.AGENT
        assert ctx.session.local_participant.identity == f"agent-{ctx.job.id}"
        assert ctx.job.id in running.running_jobs
        identities = {p.identity for p in await api.list_participants(name)}
        assert f"agent-{ctx.job.id}" in identities
        ctx.shutdown("done")
        await wait_until(lambda: not running.running_jobs)
        assert recorder.ended == [ctx.job.id]
        assert not ctx.session.is_connected


async def test_publisher_jobs_one_per_publishing_participant_none_for_agents(
    livekit_room: LiveKitRoom,
) -> None:
    async def publish_back(ctx: JobContext) -> None:
        # An agent that publishes must not get a job of its own.
        async with ctx.session.audio.publish("agent-voice") as voice:
            await voice.write(lkkit.sine_tone(440, 0.2))
        recorder.contexts.append(ctx)

    recorder = Recorder()
    server = livekit_room.server
    async with worker(server, publish_back, job_type=JobType.PUBLISHER) as running:
        alice = await livekit_room.join("alice")
        bob = await livekit_room.join("bob")
        await anyio.sleep(0.5)
        assert running.jobs_started == 0  # joining is not publishing
        for session in (alice, bob):
            async with session.audio.publish("mic") as mic:
                await mic.write(lkkit.sine_tone(440, 0.1))
        await wait_until(lambda: len(recorder.contexts) == 2)
        await anyio.sleep(1.0)  # the agents published too: still two jobs
        assert running.jobs_started == 2
        assert {j.participant_identity for j in recorder.jobs} == {"alice", "bob"}
        assert all(j.type is JobType.PUBLISHER for j in recorder.jobs)
        user = await recorder.contexts[0].wait_for_participant()
        assert user.identity == recorder.jobs[0].participant_identity


async def test_participant_jobs_start_when_someone_joins(livekit_room: LiveKitRoom) -> None:
    recorder = Recorder()
    async with worker(livekit_room.server, recorder, job_type=JobType.PARTICIPANT):
        await livekit_room.join("carol")
        await wait_until(lambda: len(recorder.contexts) == 1)
    assert recorder.jobs[0].participant_identity == "carol"
    assert recorder.jobs[0].type is JobType.PARTICIPANT


async def test_a_rejected_job_lands_on_the_accepting_worker(
    livekit_server: LocalLiveKitServer,
) -> None:
    offered: list[str] = []

    def reject(request: JobRequest) -> None:
        offered.append(request.job.id)
        request.reject()

    refuser, taker = Recorder(), Recorder()
    async with (
        worker(livekit_server, refuser, request_handler=reject) as refusing,
        worker(livekit_server, taker) as accepting,
        admin(livekit_server) as api,
    ):
        for _ in range(3):
            await api.create_room(room_name())
        await wait_until(lambda: len(taker.contexts) == 3)
        assert refusing.jobs_started == 0
        assert accepting.jobs_started == 3
    assert refuser.contexts == []


async def test_a_slow_request_handler_counts_as_a_refusal(
    livekit_server: LocalLiveKitServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow(request: JobRequest) -> None:
        await anyio.sleep(2.0)
        request.accept()

    slow_recorder, taker = Recorder(), Recorder()
    async with (
        worker(livekit_server, slow_recorder, request_handler=slow, request_timeout=0.2),
        worker(livekit_server, taker),
        admin(livekit_server) as api,
    ):
        for _ in range(3):
            await api.create_room(room_name())
        await wait_until(lambda: len(taker.contexts) == 3)
    assert slow_recorder.contexts == []
    if "took longer than 0.2 s; refused" not in caplog.text:
        # The server picks workers at random: the slow one may never have been asked.
        assert all(r.levelname != "ERROR" for r in caplog.records if r.name == "lkkit.agents")


async def test_accept_sets_the_agents_identity_name_metadata_and_attributes(
    livekit_server: LocalLiveKitServer,
) -> None:
    def accept(request: JobRequest) -> None:
        request.accept(identity="helper", name="Helper", metadata="m", attributes={"a": "1"})

    recorder = Recorder()
    async with (
        worker(livekit_server, recorder, request_handler=accept),
        admin(livekit_server) as api,
    ):
        await api.create_room(room_name())
        await wait_until(lambda: len(recorder.contexts) == 1)
        me = recorder.contexts[0].session.local_participant
        assert (me.identity, me.name, me.metadata) == ("helper", "Helper", "m")
        assert me.attributes["a"] == "1"


async def test_a_named_worker_gets_jobs_only_by_explicit_dispatch(
    livekit_server: LocalLiveKitServer,
) -> None:
    recorder = Recorder()
    async with worker(livekit_server, recorder, agent_name="helper"), admin(livekit_server) as api:
        plain = room_name()
        await api.create_room(plain)
        await anyio.sleep(1.0)
        assert recorder.contexts == []  # automatic dispatch reaches unnamed workers only
        dispatch = await api.create_dispatch(plain, "helper", metadata='{"task": 1}')
        await wait_until(lambda: len(recorder.contexts) == 1)
        job = recorder.jobs[0]
        assert (job.agent_name, job.metadata, job.dispatch_id) == (
            "helper",
            '{"task": 1}',
            dispatch.id,
        )
        # The room's own default dispatch (agent name "") is listed too.
        listed = {d.id: d for d in await api.list_dispatches(plain)}
        assert listed[dispatch.id] == dispatch
        await api.delete_dispatch(plain, dispatch.id)
        await wait_until(lambda: recorder.ended == [job.id])  # terminated by the server
        assert dispatch.id not in {d.id for d in await api.list_dispatches(plain)}
        # A room created with the agent, and a token that creates a room with it.
        with_agent = room_name()
        await api.create_room(with_agent, agents=[lkkit.RoomAgent("helper", "from the room")])
        await wait_until(lambda: len(recorder.contexts) == 2)
        assert recorder.jobs[1].metadata == "from the room"
        by_token = room_name()
        token = lkkit.Token(
            identity="user",
            grants=lkkit.Grants(room_join=True, room=by_token),
            room_agents=(lkkit.RoomAgent("helper", "from the token"),),
        ).sign(livekit_server.credentials)
        async with lkkit.connect(livekit_server.url, token):
            await wait_until(lambda: len(recorder.contexts) == 3)
        assert recorder.jobs[2].metadata == "from the token"


async def test_prewarm_runs_once_and_its_result_is_every_jobs_userdata(
    livekit_server: LocalLiveKitServer,
) -> None:
    calls: list[int] = []

    def prewarm() -> dict[str, str]:
        calls.append(1)
        return {"model": "loaded"}

    recorder = Recorder()
    async with worker(livekit_server, recorder, prewarm=prewarm), admin(livekit_server) as api:
        for _ in range(2):
            await api.create_room(room_name())
        await wait_until(lambda: len(recorder.contexts) == 2)
    assert calls == [1]
    assert [c.userdata for c in recorder.contexts] == [{"model": "loaded"}] * 2


async def test_a_failing_prewarm_stops_the_worker_from_starting(
    livekit_server: LocalLiveKitServer,
) -> None:
    def broken() -> None:
        raise RuntimeError("no model")

    with pytest.raises(lkkit.agents.WorkerError, match="no model"):
        async with worker(livekit_server, Recorder(), prewarm=broken):
            pass
    with pytest.raises(lkkit.agents.WorkerError, match="longer than"):
        async with worker(
            livekit_server, Recorder(), prewarm=anyio.sleep_forever, prewarm_timeout=0.2
        ):
            pass


async def test_the_job_ends_when_the_user_leaves_and_the_room_closes(
    livekit_server: LocalLiveKitServer,
) -> None:
    recorder = Recorder()
    async with worker(livekit_server, recorder) as running, admin(livekit_server) as api:
        name = room_name()
        # The user has 30 s to join (a loaded machine took over 1 s); the room goes 1 s
        # after the user leaves.
        await api.create_room(name, departure_timeout=1, empty_timeout=30)
        await wait_until(lambda: len(recorder.contexts) == 1)
        ctx = recorder.contexts[0]
        token = lkkit.Token(identity="user", grants=lkkit.Grants(room_join=True, room=name)).sign(
            livekit_server.credentials
        )
        async with lkkit.connect(livekit_server.url, token):
            user = await ctx.wait_for_participant()
            assert user.identity == "user"
        # The server closes the room once its last user left; the agent is removed.
        await wait_until(lambda: recorder.ended == [ctx.job.id], timeout=BATCH_S + 10)
        assert not running.running_jobs
        assert ctx.ended


async def test_a_raising_entrypoint_fails_its_job_and_the_worker_serves_the_next(
    livekit_server: LocalLiveKitServer,
) -> None:
    seen: list[str] = []

    async def entrypoint(ctx: JobContext) -> None:
        seen.append(ctx.job.room_name)
        if len(seen) == 1:
            raise ValueError("the first job breaks")

    async with worker(livekit_server, entrypoint) as running, admin(livekit_server) as api:
        first = room_name()
        await api.create_room(first)
        await wait_until(lambda: running.jobs_failed == 1 and not running.running_jobs)
        # The failed agent left the room.
        assert not [
            p for p in await api.list_participants(first) if p.identity.startswith("agent-")
        ]
        await api.create_room(room_name())
        await wait_until(lambda: len(seen) == 2)
        assert running.registered


async def test_a_hanging_entrypoint_is_cancelled_after_the_shutdown_timeout(
    livekit_server: LocalLiveKitServer,
) -> None:
    cancelled = anyio.Event()
    contexts: list[JobContext] = []

    async def entrypoint(ctx: JobContext) -> None:
        contexts.append(ctx)
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with (
        worker(livekit_server, entrypoint, shutdown_timeout=0.3) as running,
        admin(livekit_server) as api,
    ):
        await api.create_room(room_name())
        await wait_until(lambda: len(contexts) == 1)
        contexts[0].shutdown()
        with anyio.fail_after(5):
            await cancelled.wait()
        await wait_until(lambda: not running.running_jobs)
        assert running.jobs_failed == 1  # reported failed: it hung past its timeout


async def test_the_worker_reconnects_after_a_server_restart(
    livekit_server: LocalLiveKitServer,
) -> None:
    # A server of its own: the shared one must not restart under other tests.
    async with LocalLiveKitServer() as server:
        recorder = Recorder()
        async with worker(server, recorder) as running, admin(server) as api:
            first_id = running.worker_id
            await anyio.to_thread.run_sync(server.restart)
            await wait_until(lambda: running.registrations == 2, timeout=20)
            assert running.worker_id != first_id
            await api.create_room(room_name())
            await wait_until(lambda: len(recorder.contexts) == 1)
    del livekit_server


async def test_drain_lets_the_running_job_finish_and_takes_no_new_one(
    livekit_server: LocalLiveKitServer,
) -> None:
    recorder = Recorder()
    async with admin(livekit_server) as api:
        running = Worker(
            recorder,
            url=livekit_server.url,
            credentials=livekit_server.credentials,
            drain_timeout=1.0,
        )
        await running.start()
        await api.create_room(room_name())
        await wait_until(lambda: len(recorder.contexts) == 1)
        ctx = recorder.contexts[0]
        started = time.monotonic()
        draining = asyncio.get_running_loop().create_task(running.aclose())
        await wait_until(lambda: running.full)
        assert not ctx.ended  # the running job goes on while the worker drains
        await draining
        assert 0.9 < time.monotonic() - started < 5
        assert recorder.ended == [ctx.job.id]
        assert not running.registered


async def test_the_health_endpoint(livekit_server: LocalLiveKitServer) -> None:
    async with worker(livekit_server, Recorder(), health_port=0) as running:
        assert running.health_address is not None
        host, port = running.health_address
        assert host == "127.0.0.1"

        def get() -> tuple[int, dict[str, Any]]:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as response:
                return response.status, json.loads(response.read())

        status, body = await anyio.to_thread.run_sync(get)
        assert status == 200
        assert body["registered"] is True
        assert body["worker_id"] == running.worker_id


async def test_fifty_concurrent_jobs_in_one_worker(livekit_server: LocalLiveKitServer) -> None:
    recorder = Recorder()
    count = 50
    async with (
        worker(livekit_server, recorder, max_jobs=100) as running,
        admin(livekit_server) as api,
    ):
        await asyncio.gather(*(api.create_room(room_name()) for _ in range(count)))
        await wait_until(lambda: len(recorder.contexts) == count, timeout=60)
        assert len(running.running_jobs) == count
        assert all(c.session.is_connected for c in recorder.contexts)
        assert running.load == pytest.approx(0.7 * count / 100)
    assert len(recorder.ended) == count


async def test_bad_options_are_refused(livekit_server: LocalLiveKitServer) -> None:
    credentials = livekit_server.credentials
    for bad in (
        {"max_jobs": 0},
        {"target_load": 1.5},
        {"request_timeout": 0},
    ):
        with pytest.raises(lkkit.ConfigurationError):
            Worker(Recorder(), url=livekit_server.url, credentials=credentials, **bad)
    with pytest.raises(lkkit.agents.WorkerError, match="LIVEKIT_URL"):
        Worker(Recorder(), url="", credentials=credentials)
    request = JobRequest(Job("AJ_1", JobType.ROOM, "r", "RM_1", None, "", "", ""))
    request.accept()
    with pytest.raises(lkkit.SessionStateError):
        request.reject()
    with pytest.raises(lkkit.ConfigurationError):
        JobRequest(request.job).accept(identity="")


# -- job processes ---------------------------------------------------------------------


async def agent_attributes(api: lkkit.RoomAdmin, room: str) -> dict[str, str]:
    """The attributes the agent in `room` set (empty until it did)."""
    for participant in await api.list_participants(room):
        if participant.kind is lkkit.ParticipantKind.AGENT and "pid" in participant.attributes:
            return dict(participant.attributes)
    return {}


async def test_job_processes_prewarm_once_each_and_a_killed_one_fails_only_its_job(
    livekit_server: LocalLiveKitServer,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "prewarm.log"
    monkeypatch.setenv("LKKIT_TEST_PREWARM_LOG", str(log))
    import agent_entrypoints

    monkeypatch.setattr(agent_entrypoints, "PREWARM_LOG", log)
    async with (
        worker(
            livekit_server,
            agent_entrypoints.report_pid,
            prewarm=agent_entrypoints.prewarm,
            processes=lkkit.agents.ProcessPoolOptions(idle_processes=2),
        ) as running,
        admin(livekit_server) as api,
    ):
        assert len(running.job_pids) == 2
        first, second = room_name(), room_name()
        for name in (first, second):
            await api.create_room(name)
        attributes: dict[str, dict[str, str]] = {}
        with anyio.fail_after(20):
            while len(attributes) < 2:
                for name in (first, second):
                    if found := await agent_attributes(api, name):
                        attributes[name] = found
                await anyio.sleep(0.1)
        pids = {int(a["pid"]) for a in attributes.values()}
        assert len(pids) == 2  # one job per process
        assert os.getpid() not in pids
        assert all(a["userdata"] == a["pid"] for a in attributes.values())  # its own prewarm
        prewarmed = [int(line) for line in log.read_text().split()]
        assert len(prewarmed) == len(set(prewarmed))  # once per process
        assert pids <= set(prewarmed)
        # Kill the first job's process: that job fails, the other goes on.
        killed = int(attributes[first]["pid"])
        os.kill(killed, signal.SIGKILL)
        await wait_until(lambda: running.jobs_failed == 1)
        assert running.job_count == 1
        await wait_until(lambda: killed not in running.job_pids)
        # The worker serves the next job, in a fresh process.
        third = room_name()
        await api.create_room(third)
        with anyio.fail_after(20):
            while not (found := await agent_attributes(api, third)):
                await anyio.sleep(0.1)
        assert int(found["pid"]) != killed
        assert running.jobs_started == 3
