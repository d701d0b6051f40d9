"""Agent workers: dispatch latency, start-up, memory per job, dropped jobs under load.

lkkit's worker runs in this process (in-process jobs). The baseline is livekit-agents
1.8.9 (a minimal agent that connects), run from its own virtualenv in
`.cache/livekit-agents-1.8.9` when `nox -s bench` installed it (it pins an older
`livekit`, so it cannot share lkkit's environment); without it, only lkkit's figures
and the server's own share are printed.

- Dispatch: from the `CreateRoom` call to the entrypoint running (lkkit: with its
  session connected) and, split: the server's wait until the worker receives the
  offer (psrpc's affinity wait, the floor for any worker), the server's answer to the
  accept, the join, and what lkkit itself adds (offer -> answer sent, assignment ->
  join started, joined -> entrypoint). 30 rooms, the first after registration included.
- Start-up: process start to registered, `lkkit agent run` in a fresh interpreter.
- Memory: PSS and RSS of the worker process with 1, 10 and 50 jobs.
- Dropped: 30 rooms created while another process keeps one core busy.
- Burst: 20 rooms created at once, until every agent has joined.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio

import lkkit
from lkkit.agents import JobContext, ProcessPoolOptions, Worker
from lkkit.testing import LocalLiveKitServer

from ._harness import Comparison, percentile, report, room_name

ROOT = Path(__file__).parent.parent
BASELINE_PYTHON = ROOT / ".cache" / "livekit-agents-1.8.9" / "bin" / "python"


class Timings:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, JobContext]] = {}

    async def entrypoint(self, ctx: JobContext) -> None:
        self.entries[ctx.job.room_name] = (time.monotonic(), ctx)


def _pss_rss_mib(pid: int) -> tuple[float, float]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            values[parts[0].rstrip(":")] = int(parts[1])
    return values["Pss"] / 1024, values["Rss"] / 1024


async def _wait(predicate: Any, seconds: float) -> bool:
    # Polls: the benchmark observes the worker from outside, as a user would.
    with anyio.move_on_after(seconds):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        return True
    return False


async def _lkkit_dispatch(server: LocalLiveKitServer, rooms: int) -> dict[str, list[float]]:
    timings = Timings()
    out: dict[str, list[float]] = {
        k: [] for k in ("entry", "server_wait", "server_answer", "join", "lkkit_added")
    }
    async with (
        Worker(timings.entrypoint, url=server.url, credentials=server.credentials),
        lkkit.RoomAdmin(server.url, server.credentials) as admin,
    ):
        for _ in range(rooms):
            name = room_name("agent")
            start = time.monotonic()
            await admin.create_room(name)
            await _wait(lambda n=name: n in timings.entries, 10)
            entered, ctx = timings.entries[name]
            out["entry"].append(entered - start)
            out["server_wait"].append(ctx.requested_at - start)
            out["server_answer"].append(ctx.assigned_at - ctx.requested_at)
            out["join"].append(ctx.connected_at - ctx.assigned_at)
            # What lkkit adds beyond the server and the join: joined -> entrypoint (the
            # offer's answer and the join's start are inside the two spans above).
            out["lkkit_added"].append(entered - ctx.connected_at)
            ctx.shutdown()
    return out


async def pool_entrypoint(ctx: JobContext) -> None:
    """The process pool's entrypoint (module level: a job process imports it)."""
    await ctx.session.local_participant.sdk.set_attributes({"entered": repr(time.time())})


async def _pool_dispatch(server: LocalLiveKitServer, rooms: int) -> list[float]:
    """CreateRoom -> the entrypoint running (session connected) in a job process."""
    out: list[float] = []
    async with (
        Worker(
            pool_entrypoint,
            url=server.url,
            credentials=server.credentials,
            processes=ProcessPoolOptions(idle_processes=2),
        ),
        lkkit.RoomAdmin(server.url, server.credentials) as admin,
    ):
        for _ in range(rooms):
            name = room_name("pool")
            start = time.time()
            await admin.create_room(name)
            entered = None
            with anyio.move_on_after(15):
                while entered is None:
                    for p in await admin.list_participants(name):
                        if "entered" in p.attributes:
                            entered = float(p.attributes["entered"])
                    await asyncio.sleep(0.02)
            if entered is not None:
                out.append(entered - start)
            await admin.delete_room(name)
    return out


_BASELINE_AGENT = textwrap.dedent(
    """
    import sys, time
    from livekit import agents

    async def entrypoint(ctx: agents.JobContext) -> None:
        entered = time.time()
        await ctx.connect()
        print(f"JOB {ctx.room.name} {entered} {time.time()}", flush=True)

    if __name__ == "__main__":
        sys.argv = [sys.argv[0], "start"]
        agents.cli.run_app(agents.WorkerOptions(entrypoint_fnc=entrypoint))
    """
)


async def _baseline_dispatch(
    server: LocalLiveKitServer, rooms: int
) -> dict[str, list[float]] | None:
    if not BASELINE_PYTHON.exists():
        return None
    script = Path(os.environ.get("TMPDIR", "/tmp")) / "lkkit_bench_minimal_agent.py"
    script.write_text(_BASELINE_AGENT)
    env = {
        **os.environ,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
    }
    process = await anyio.open_process([str(BASELINE_PYTHON), str(script)], env=env)
    lines: dict[str, tuple[float, float]] = {}
    registered = anyio.Event()

    async def read() -> None:
        assert process.stderr is not None
        assert process.stdout is not None
        async with anyio.create_task_group() as tg:

            async def stderr() -> None:
                assert process.stderr is not None
                async for chunk in process.stderr:
                    if b"registered worker" in chunk:
                        registered.set()

            tg.start_soon(stderr)
            buffer = b""
            assert process.stdout is not None
            async for chunk in process.stdout:
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                for line in done:
                    if line.startswith(b"JOB "):
                        _, name, entered, connected = line.decode().split()
                        lines[name] = (float(entered), float(connected))

    out: dict[str, list[float]] = {"entry": [], "connected": []}
    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        with anyio.move_on_after(30):
            await registered.wait()
        async with lkkit.RoomAdmin(server.url, server.credentials) as admin:
            for _ in range(rooms):
                name = room_name("lka")
                start = time.time()
                await admin.create_room(name)
                if await _wait(lambda n=name: n in lines, 15):
                    entered, connected = lines[name]
                    out["entry"].append(entered - start)
                    out["connected"].append(connected - start)
                await admin.delete_room(name)
        process.terminate()
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
        tg.cancel_scope.cancel()
    return out


def _startup_seconds(
    server: LocalLiveKitServer, argv: list[str], markers: tuple[bytes, ...]
) -> list[float]:
    """Seconds from process start to each marker's first log line, in order."""
    env = {
        **os.environ,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
    }
    start = time.monotonic()
    process = subprocess.Popen(
        argv, cwd="/tmp", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    seen: list[float] = []
    try:
        for line in process.stdout:
            if markers[len(seen)] in line:
                seen.append(time.monotonic() - start)
                if len(seen) == len(markers):
                    return seen
        raise RuntimeError(f"{argv[0]} exited before it logged {markers[len(seen)]!r}")
    finally:
        process.terminate()
        process.wait()
        process.stdout.close()


def _startup(server: LocalLiveKitServer, repeats: int) -> tuple[float, float, float | None]:
    """Median seconds: lkkit to registered, lkkit to ready (SDK loaded), and
    livekit-agents to registered (None without its virtualenv)."""
    (Path("/tmp") / "lkkit_bench_noop.py").write_text("async def entrypoint(ctx):\n    pass\n")
    lkkit_argv = [sys.executable, "-m", "lkkit", "agent", "run", "lkkit_bench_noop:entrypoint"]
    runs = [_startup_seconds(server, lkkit_argv, (b"registered", b"ready")) for _ in range(repeats)]
    baseline = None
    if BASELINE_PYTHON.exists():
        script = Path("/tmp") / "lkkit_bench_minimal_agent.py"
        script.write_text(_BASELINE_AGENT)
        argv = [str(BASELINE_PYTHON), str(script)]
        baseline = statistics.median(
            _startup_seconds(server, argv, (b"registered worker",))[0] for _ in range(repeats)
        )
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        baseline,
    )


async def _memory(server: LocalLiveKitServer) -> dict[int, tuple[float, float]]:
    timings = Timings()
    out: dict[int, tuple[float, float]] = {}
    async with (
        Worker(timings.entrypoint, url=server.url, credentials=server.credentials),
        lkkit.RoomAdmin(server.url, server.credentials) as admin,
    ):
        for target in (1, 10, 50):
            while (count := len(timings.entries)) < target:
                await admin.create_room(room_name("mem"))
                await _wait(lambda n=count + 1: len(timings.entries) >= n, 10)
            await anyio.sleep(1.0)
            out[target] = _pss_rss_mib(os.getpid())
        for _, ctx in timings.entries.values():
            ctx.shutdown()
    return out


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def _dropped_under_load(server: LocalLiveKitServer, rooms: int) -> tuple[int, float]:
    """Jobs that never started of `rooms` created while a core is busy; and the time
    until every agent of a burst of 20 rooms had joined."""
    timings = Timings()
    busy = multiprocessing.get_context("spawn").Process(target=_spin, args=(60.0,))
    busy.start()
    try:
        async with (
            Worker(timings.entrypoint, url=server.url, credentials=server.credentials),
            lkkit.RoomAdmin(server.url, server.credentials) as admin,
        ):
            names = [room_name("load") for _ in range(rooms)]
            for name in names:
                await admin.create_room(name)
            await _wait(lambda: all(n in timings.entries for n in names), 15)
            dropped = sum(1 for n in names if n not in timings.entries)
            burst = [room_name("burst") for _ in range(20)]
            start = time.monotonic()
            await asyncio.gather(*(admin.create_room(n) for n in burst))
            await _wait(lambda: all(n in timings.entries for n in burst), 30)
            burst_s = time.monotonic() - start
            for _, ctx in timings.entries.values():
                ctx.shutdown()
    finally:
        busy.kill()
        busy.join()
    return dropped, burst_s


def _p(samples: list[float], q: float) -> float:
    return percentile(samples, q) if samples else float("nan")


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    rooms = 10 if quick else 30
    lk = await _lkkit_dispatch(server, rooms)
    pool = await _pool_dispatch(server, rooms)
    base = await _baseline_dispatch(server, rooms)
    ms = 1000.0
    rows = []
    for q, label in ((50, "p50"), (99, "p99"), (100, "max")):
        value = max(lk["entry"]) if q == 100 else _p(lk["entry"], q)
        if base and base["entry"]:
            baseline = max(base["connected"]) if q == 100 else _p(base["connected"], q)
            name = "livekit-agents 1.8.9, ctx.connect() returned"
        else:
            baseline = max(lk["server_wait"]) if q == 100 else _p(lk["server_wait"], q)
            name = "the server's wait before the offer (no livekit-agents venv)"
        rows.append(
            Comparison(
                f"CreateRoom -> connected entrypoint {label}",
                "ms",
                value * ms,
                baseline * ms,
                name,
                "<= 1.0 vs livekit-agents",
            )
        )
    report("Agents: dispatch latency, in-process jobs", rows)
    print(
        f"  first room after registration: {lk['entry'][0] * ms:.0f} ms "
        f"(median of the rest {statistics.median(lk['entry'][1:]) * ms:.0f} ms)"
    )
    for key, label in (
        ("server_wait", "server: CreateRoom -> offer received"),
        ("server_answer", "server: offer -> assignment (incl. lkkit's answer)"),
        ("join", "join: assignment -> session connected"),
        ("lkkit_added", "lkkit: connected -> entrypoint running"),
    ):
        values = [v * ms for v in lk[key]]
        print(f"  {label:52} p50 {_p(values, 50):7.1f} ms  p99 {_p(values, 99):7.1f} ms")
    if pool:
        print(
            f"  lkkit process pool: CreateRoom -> connected entrypoint p50 "
            f"{_p(pool, 50) * ms:.0f} ms, p99 {_p(pool, 99) * ms:.0f} ms, "
            f"first {pool[0] * ms:.0f} ms"
        )
    if base and base["entry"]:
        print(
            "  livekit-agents: CreateRoom -> entrypoint p50 "
            f"{_p(base['entry'], 50) * ms:.0f} ms, first {base['entry'][0] * ms:.0f} ms; "
            f"{rooms - len(base['entry'])} of {rooms} rooms got no agent"
        )

    startup, ready, baseline_startup = _startup(server, 3 if quick else 5)
    memory = await _memory(server)
    per_job_pss = (memory[50][0] - memory[1][0]) / 49
    per_job_rss = (memory[50][1] - memory[1][1]) / 49
    dropped, burst = await _dropped_under_load(server, rooms)
    report(
        "Agents: start-up, memory, load",
        [
            Comparison("process start -> registered", "s", startup, 0.5, "goal", "<= 1.0"),
            *(
                [
                    Comparison(
                        "process start -> registered",
                        "s",
                        startup,
                        baseline_startup,
                        "livekit-agents 1.8.9",
                        "<= 1.0",
                    )
                ]
                if baseline_startup is not None
                else []
            ),
            Comparison(
                "PSS per extra in-process job", "MiB", per_job_pss, 8.0, "goal 8 MiB", "<= 1.0"
            ),
            Comparison("jobs dropped, one core busy", "jobs", dropped, rooms, "rooms created", "0"),
        ],
    )
    print(
        f"  process start -> ready (SDK and native library loaded, in a thread while "
        f"registering): {ready:.2f} s"
    )
    print(
        f"  memory (PSS / RSS MiB): 1 job {memory[1][0]:.0f} / {memory[1][1]:.0f}, "
        f"10 jobs {memory[10][0]:.0f} / {memory[10][1]:.0f}, "
        f"50 jobs {memory[50][0]:.0f} / {memory[50][1]:.0f}; per extra job "
        f"{per_job_pss:.1f} / {per_job_rss:.1f}"
    )
    print(f"  20 rooms at once, one core busy: every agent joined after {burst:.2f} s")
