"""Load and soak against the real server: ten participants exchanging reliable messages
at a sustained rate lose none and hold their memory flat; connect / leave cycles leak
no task, thread, native handle, socket or file descriptor.

The default run is short (10 s, 20 cycles); `nox -s soak` runs 5 minutes and 200
cycles (`LKKIT_SOAK_SECONDS`, `LKKIT_SOAK_CYCLES`). Each test prints its figures.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import anyio
import numpy as np
import pytest

import lkkit
from lkkit._sdk_compat import live_ffi_handles
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

SECONDS = float(os.environ.get("LKKIT_SOAK_SECONDS", "10"))
CYCLES = int(os.environ.get("LKKIT_SOAK_CYCLES", "20"))
PARTICIPANTS = 10
RATE = 5.0  # messages per second per participant, each to everyone: 450 deliveries/s


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def test_ten_participants_exchange_reliable_messages_without_loss(
    livekit_room: LiveKitRoom,
) -> None:
    sessions = [await livekit_room.join(f"p{i}") for i in range(PARTICIPANTS)]
    for session in sessions:
        with anyio.fail_after(20):
            while len(session.remote_participants) < PARTICIPANTS - 1:
                await anyio.sleep(0.05)
    # received[receiver][sender] = the sequence numbers that arrived, in order
    received: list[list[list[int]]] = [
        [[] for _ in range(PARTICIPANTS)] for _ in range(PARTICIPANTS)
    ]
    sent = [0] * PARTICIPANTS
    samples: list[tuple[float, float]] = []

    async def receive(index: int, messages: lkkit.DataSubscription[lkkit.DataMessage]) -> None:
        async for message in messages:
            sender, number = message.payload.decode().split(":")[:2]
            received[index][int(sender[1:])].append(int(number))

    async def send(index: int, until: float) -> None:
        session = sessions[index]
        padding = "." * 200
        while time.monotonic() < until:
            await session.data.send(f"p{index}:{sent[index]}:{padding}", topic="soak")
            sent[index] += 1
            await anyio.sleep(1 / RATE)

    async def sample(until: float) -> None:
        started = time.monotonic()
        while time.monotonic() < until:
            samples.append((time.monotonic() - started, rss_mib()))
            await anyio.sleep(1.0)

    async with anyio.create_task_group() as readers:
        for index, session in enumerate(sessions):
            messages = session.data.messages("soak", buffer=10_000)
            await messages.__aenter__()
            readers.start_soon(receive, index, messages)
        until = time.monotonic() + SECONDS
        async with anyio.create_task_group() as senders:
            senders.start_soon(sample, until)
            for index in range(PARTICIPANTS):
                senders.start_soon(send, index, until)
        with anyio.fail_after(30):  # everything in flight arrives
            while any(
                len(received[r][s]) < sent[s]
                for r in range(PARTICIPANTS)
                for s in range(PARTICIPANTS)
                if r != s
            ):
                await anyio.sleep(0.1)
        readers.cancel_scope.cancel()

    for r in range(PARTICIPANTS):
        for s in range(PARTICIPANTS):
            if r != s:
                assert received[r][s] == list(range(sent[s])), (r, s)  # none lost, in order
    times, rss = np.array(samples).T
    half = len(times) // 2
    slope = float(np.polyfit(times[half:], rss[half:], 1)[0]) * 60  # MiB per minute
    deliveries = sum(sent) * (PARTICIPANTS - 1)
    print(
        f"\nsoak: {PARTICIPANTS} participants, {SECONDS:g} s, {sum(sent)} messages sent, "
        f"{deliveries} delivered, 0 lost; RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB, "
        f"slope over the second half {slope:+.2f} MiB/min"
    )
    # Flat: a leak of one message per delivery (~250 B) would be ~6 MiB/min here.
    assert slope < 5.0 or rss[-1] - rss[half] < 2.0, samples


def _resources() -> dict[str, int]:
    fds = os.listdir("/proc/self/fd")
    sockets = sum(
        os.readlink(f"/proc/self/fd/{fd}").startswith("socket:") for fd in fds if _exists(fd)
    )
    return {
        "tasks": len(asyncio.all_tasks()),
        "python threads": sum(not t.name.startswith("Dummy-") for t in threading.enumerate()),
        "native threads": len(os.listdir("/proc/self/task")),
        "ffi handles": live_ffi_handles(),
        "fds": len(fds),
        "sockets": sockets,
    }


def _exists(fd: str) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True


async def test_connect_leave_cycles_leak_nothing(livekit_room: LiveKitRoom) -> None:
    async def cycle(i: int) -> None:
        async with lkkit.connect(livekit_room.url, livekit_room.token(f"c{i}")) as session:
            await session.data.send(b"hello", topic="cycle")

    for i in range(3):  # warm up: the SDK's runtime and pools start once
        await cycle(i)
    await anyio.sleep(1.0)
    before = _resources()
    started = time.monotonic()
    for i in range(CYCLES):
        await cycle(3 + i)
    elapsed = time.monotonic() - started
    with anyio.fail_after(10):  # what the last leave still tears down
        while True:
            after = _resources()
            if all(after[k] <= before[k] for k in before if k != "native threads"):
                break
            await anyio.sleep(0.2)
    print(f"\n{CYCLES} connect/leave cycles in {elapsed:.1f} s; before {before}, after {after}")
    for key in ("tasks", "python threads", "ffi handles", "fds", "sockets"):
        assert after[key] <= before[key], (key, before, after)
    # The native runtime's thread pools may still grow to their size, never per cycle.
    assert after["native threads"] <= before["native threads"] + 8, (before, after)
