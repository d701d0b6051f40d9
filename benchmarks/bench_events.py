"""In-process event fan-out: lkkit's bus vs raw `room.on` callbacks, 1/10/100 receivers.

Both sides get the same events through the same SDK path: `rtc.Room.emit`, which the
SDK's listen task calls for every room event. Each event is a `data_received` packet
(the most frequent event in practice). The network is left out on purpose: it would
add the same cost to both and hide the fan-out.

- throughput: N events emitted back to back; lkkit's time runs until every
  subscriber has *read* every event (`async for`), raw's until every callback ran.
- latency: one event at a time; from `emit` until the last receiver has it
  (for raw callbacks that is inside `emit`; for lkkit a reader task must be woken).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from livekit import rtc

from lkkit._event_bus import EventBus, EventSubscription
from lkkit._events import DataReceived
from lkkit.testing import LocalLiveKitServer

from ._harness import Comparison, percentile, report


def _packet(i: int) -> rtc.DataPacket:
    return rtc.DataPacket(
        data=i.to_bytes(4, "big"), kind=rtc.DataPacketKind.KIND_RELIABLE, participant=None
    )


async def _raw_throughput(receivers: int, events: int) -> float:
    room = rtc.Room()
    counts = [0] * receivers

    def make(k: int) -> Any:
        def callback(packet: rtc.DataPacket) -> None:
            counts[k] += 1

        return callback

    for k in range(receivers):
        room.on("data_received", make(k))
    packets = [_packet(i) for i in range(events)]
    start = time.perf_counter()
    for packet in packets:
        room.emit("data_received", packet)
    elapsed = time.perf_counter() - start
    assert counts == [events] * receivers
    return events / elapsed


async def _lkkit_throughput(receivers: int, events: int) -> float:
    room = rtc.Room()
    bus = EventBus()
    bus.bind(room)
    subscriptions: list[EventSubscription[Any]] = [
        bus.subscribe((DataReceived,), buffer=events) for _ in range(receivers)
    ]
    got = [0] * receivers

    async def read(k: int, sub: EventSubscription[Any]) -> None:
        async for _ in sub:
            got[k] += 1
            if got[k] == events:
                return

    packets = [_packet(i) for i in range(events)]
    for sub in subscriptions:
        await sub.__aenter__()
    readers = [asyncio.create_task(read(k, s)) for k, s in enumerate(subscriptions)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for packet in packets:
        room.emit("data_received", packet)
    await asyncio.gather(*readers)
    elapsed = time.perf_counter() - start
    for sub in subscriptions:
        await sub.aclose()
    bus.close()
    assert got == [events] * receivers
    assert all(s.dropped == 0 for s in subscriptions)
    return events / elapsed


async def _raw_latency(receivers: int, samples: int) -> list[float]:
    room = rtc.Room()
    last = [0.0]

    def callback(packet: rtc.DataPacket) -> None:
        last[0] = time.perf_counter()

    for _ in range(receivers):
        room.on("data_received", lambda p, cb=callback: cb(p))
    out = []
    for i in range(samples):
        start = time.perf_counter()
        room.emit("data_received", _packet(i))
        out.append(last[0] - start)
    return out


async def _lkkit_latency(receivers: int, samples: int) -> list[float]:
    room = rtc.Room()
    bus = EventBus()
    bus.bind(room)
    subscriptions = [bus.subscribe((DataReceived,)) for _ in range(receivers)]
    for sub in subscriptions:
        await sub.__aenter__()
    out = []
    for i in range(samples):
        start = time.perf_counter()
        room.emit("data_received", _packet(i))
        # Every subscriber reads its event (the last read marks delivery complete).
        for sub in subscriptions:
            await sub.__anext__()
        out.append(time.perf_counter() - start)
    for sub in subscriptions:
        await sub.aclose()
    bus.close()
    return out


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    del server  # in-process: no network involved
    events = 2_000 if quick else 20_000
    samples = 200 if quick else 2_000
    rows = []
    for receivers in (1, 10, 100):
        n = max(200, events // receivers)
        raw_rate = await _raw_throughput(receivers, n)
        lk_rate = await _lkkit_throughput(receivers, n)
        rows.append(
            Comparison(
                f"events/s to {receivers} receiver(s)",
                "ev/s",
                lk_rate,
                raw_rate,
                baseline_name="raw room.on callbacks",
                target=">= 0.5 (higher is better)",
                lower_is_better=False,
            )
        )
        m = max(50, samples // receivers)
        raw_lat = await _raw_latency(receivers, m)
        lk_lat = await _lkkit_latency(receivers, m)
        rows.append(
            Comparison(
                f"delivery latency p50, {receivers} receiver(s)",
                "us",
                statistics.median(lk_lat) * 1e6,
                statistics.median(raw_lat) * 1e6,
                baseline_name="raw room.on callbacks",
            )
        )
        rows.append(
            Comparison(
                f"delivery latency p99, {receivers} receiver(s)",
                "us",
                percentile(lk_lat, 99) * 1e6,
                percentile(raw_lat, 99) * 1e6,
                baseline_name="raw room.on callbacks",
            )
        )
    report("Event fan-out (in-process)", rows)
