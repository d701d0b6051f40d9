"""Time to connect N sessions at once (N = 1, 4, 8): lkkit vs raw `rtc.Room.connect`."""

from __future__ import annotations

import asyncio
import statistics
import time

from livekit import rtc

import lkkit
from lkkit.testing import LocalLiveKitServer

from ._harness import Comparison, report, room_name, token


async def _lkkit_connect(server: LocalLiveKitServer, n: int) -> float:
    room = room_name("lk")
    sessions = [lkkit.connect(server.url, token(server, room, f"p{i}")) for i in range(n)]
    start = time.perf_counter()
    await asyncio.gather(*(s.__aenter__() for s in sessions))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(s.aclose() for s in sessions))
    return elapsed


async def _raw_connect(server: LocalLiveKitServer, n: int) -> float:
    room = room_name("raw")
    rooms = [rtc.Room() for _ in range(n)]
    start = time.perf_counter()
    await asyncio.gather(
        *(r.connect(server.url, token(server, room, f"p{i}")) for i, r in enumerate(rooms))
    )
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(r.disconnect() for r in rooms))
    return elapsed


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    repeats = 3 if quick else 15
    rows = []
    for n in (1, 4, 8):
        lk: list[float] = []
        raw: list[float] = []
        for _ in range(repeats):
            # Alternate so drift on the machine hits both sides alike.
            raw.append(await _raw_connect(server, n))
            lk.append(await _lkkit_connect(server, n))
        rows.append(
            Comparison(
                f"connect {n} session(s), median",
                "s",
                statistics.median(lk),
                statistics.median(raw),
                target="<= 1.05",
            )
        )
    report("Connect time", rows)
