"""RPC round trip: lkkit vs the raw SDK, in the same run and the same rooms.

Alice calls Bob's echo method with a 1 KiB payload and waits for the response:
`session.rpc.call` to a handler registered with `session.rpc.register` (lkkit on both
sides: argument checks, the handler in a session-owned task, error translation)
against `perform_rpc` to a handler registered with `register_rpc_method` (the raw SDK
on both sides). Both use the same two connected rooms. The two take turns in blocks
(order alternating) so drift hits both; p50 and p99 per block, medians over the
blocks. Target ratio <= 1.10.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import anyio
from livekit import rtc

import lkkit
from lkkit.testing import LocalLiveKitServer

from ._harness import Comparison, percentile, report, room_name, token

PAYLOAD = "x" * 1024
WAIT = 60.0

Call = Callable[[], Awaitable[str]]


async def _measure(call: Call, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        response = await call()
        samples.append(time.perf_counter() - start)
        assert response == PAYLOAD
    return samples


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    room = room_name("rpc")
    async with (
        lkkit.connect(server.url, token(server, room, "alice")) as alice,
        lkkit.connect(server.url, token(server, room, "bob")) as bob,
    ):
        with anyio.fail_after(WAIT):
            await alice.wait_for_participant("bob")
            await bob.wait_for_participant("alice")

        # Async handlers on both sides (an lkkit one runs in a task the session owns).
        async def lkkit_echo(call: lkkit.RpcInvocation) -> str:
            return call.payload

        async def raw_echo(data: rtc.RpcInvocationData) -> str:
            return data.payload

        bob.rpc.register("echo-lkkit", lkkit_echo)

        bob.room.local_participant.register_rpc_method("echo-raw", raw_echo)
        local = alice.room.local_participant

        async def lkkit_call() -> str:
            return await alice.rpc.call("bob", "echo-lkkit", PAYLOAD)

        async def raw_call() -> str:
            return await local.perform_rpc(
                destination_identity="bob", method="echo-raw", payload=PAYLOAD
            )

        blocks, per_block = (4, 100) if quick else (10, 300)
        await _measure(lkkit_call, 20)  # warm up both paths
        await _measure(raw_call, 20)
        lk_p50: list[float] = []
        lk_p99: list[float] = []
        raw_p50: list[float] = []
        raw_p99: list[float] = []
        for block in range(blocks):
            order = [(lkkit_call, lk_p50, lk_p99), (raw_call, raw_p50, raw_p99)]
            if block % 2:
                order.reverse()
            for call, p50s, p99s in order:
                samples = await _measure(call, per_block)
                p50s.append(percentile(samples, 50))
                p99s.append(percentile(samples, 99))

    ms = 1000.0
    median = statistics.median
    report(
        f"RPC: round trip of a 1 KiB call and response ({blocks} blocks of {per_block}, medians)",
        [
            Comparison("RTT p50", "ms", median(lk_p50) * ms, median(raw_p50) * ms,
                       "raw perform_rpc", "<= 1.10"),
            Comparison("RTT p99", "ms", median(lk_p99) * ms, median(raw_p99) * ms,
                       "raw perform_rpc", "<= 1.10"),
        ],
    )  # fmt: skip
