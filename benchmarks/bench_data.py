"""Data messages: lkkit vs the raw SDK, in the same run.

1. Round trip of 1 KiB reliable messages, the peer echoing: p50 and p99 of
   `session.data.send` + `messages()` against raw `publish_data` + `data_received`.
   Target ratio <= 1.10.
2. Throughput of 1 MiB messages, from the first send to the last byte received
   (checked byte for byte): lkkit's default (a native byte stream) and lkkit's own
   chunks vs the SDK's native `send_bytes` (its defaults) vs raw 15 KiB `publish_data`
   packets sent back to back (the ceiling: no framing, no reassembly). Targets:
   lkkit >= native `send_bytes`, and >= 70% of the ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import anyio
from livekit import rtc

import lkkit
from lkkit.testing import LocalLiveKitServer

from ._harness import Comparison, percentile, report, room_name, token

KIB = 1024
MIB = 1024 * 1024
PACKET = 15_360
WAIT = 60.0

Transfer = Callable[[bytes], Awaitable[bytes]]
"""Sends a payload, returns what came back (an echo, or the payload received)."""
Close = Callable[[], Awaitable[None]]


def _all_known(rooms: list[rtc.Room]) -> bool:
    identities = {r.local_participant.identity for r in rooms}
    return all(
        set(r.remote_participants) == identities - {r.local_participant.identity} for r in rooms
    )


async def _wait_known(rooms: list[rtc.Room]) -> None:
    """Until every room knows every other participant (data then carries identities)."""
    with anyio.fail_after(WAIT):
        while not _all_known(rooms):  # noqa: ASYNC110 (SDK state, no event to await)
            await anyio.sleep(0.05)


async def _warm_raw(sender: rtc.Room, receiver: rtc.Room) -> None:
    got = asyncio.Event()

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == "_warm":
            got.set()

    receiver.on("data_received", on_data)
    with anyio.fail_after(WAIT):
        while not got.is_set():
            await sender.local_participant.publish_data(b"warm", topic="_warm")
            with anyio.move_on_after(0.3):
                await got.wait()
    receiver.off("data_received", on_data)


# -- round trip ------------------------------------------------------------------------


async def _raw_echo(server: LocalLiveKitServer) -> tuple[Transfer, Close]:
    room = room_name("rtt-raw")
    a, b = rtc.Room(), rtc.Room()
    await a.connect(server.url, token(server, room, "a"))
    await b.connect(server.url, token(server, room, "b"))
    await _wait_known([a, b])
    await _warm_raw(a, b)
    await _warm_raw(b, a)
    echoes: set[asyncio.Task[None]] = set()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    def echo(packet: rtc.DataPacket) -> None:
        if packet.topic == "ping":
            task = asyncio.get_running_loop().create_task(
                b.local_participant.publish_data(packet.data, topic="pong")
            )
            echoes.add(task)
            task.add_done_callback(echoes.discard)

    def on_reply(packet: rtc.DataPacket) -> None:
        if packet.topic == "pong":
            replies.put_nowait(packet.data)

    b.on("data_received", echo)
    a.on("data_received", on_reply)

    async def round_trip(payload: bytes) -> bytes:
        await a.local_participant.publish_data(payload, topic="ping")
        with anyio.fail_after(WAIT):
            return await replies.get()

    async def close() -> None:
        await asyncio.gather(*echoes)
        await a.disconnect()
        await b.disconnect()

    return round_trip, close


async def _lkkit_echo(server: LocalLiveKitServer) -> tuple[Transfer, Close]:
    room = room_name("rtt-lk")
    a = lkkit.connect(server.url, token(server, room, "a"))
    b = lkkit.connect(server.url, token(server, room, "b"))
    await a.__aenter__()
    await b.__aenter__()
    await _wait_known([a.room, b.room])
    await _warm_raw(a.room, b.room)
    await _warm_raw(b.room, a.room)
    pings = b.data.messages("ping")
    replies = a.data.messages("pong")
    await pings.__aenter__()
    await replies.__aenter__()

    async def echo() -> None:
        async for ping in pings:
            await b.data.send(ping.payload, topic="pong")

    # Owned by this pair: cancelled and awaited in `close`.
    echo_task = asyncio.get_running_loop().create_task(echo())

    async def round_trip(payload: bytes) -> bytes:
        await a.data.send(payload, topic="ping")
        with anyio.fail_after(WAIT):
            return (await replies.receive()).payload

    async def close() -> None:
        echo_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await echo_task
        await pings.aclose()
        await replies.aclose()
        await a.aclose()
        await b.aclose()

    return round_trip, close


async def _take_turns(
    setups: list[Awaitable[tuple[Transfer, Close]]], count: int, size: int
) -> list[list[float]]:
    """Seconds per transfer of `size` random bytes for each setup, checked on arrival.

    The setups take turns message by message, so load on the shared machine hits
    them alike.
    """
    pairs = [await setup for setup in setups]
    samples: list[list[float]] = [[] for _ in pairs]
    try:
        for _ in range(count):
            for (transfer, _close), times in zip(pairs, samples, strict=True):
                payload = os.urandom(size)
                start = time.perf_counter()
                received = await transfer(payload)
                times.append(time.perf_counter() - start)
                assert received == payload
        return samples
    finally:
        for _transfer, close in pairs:
            await close()


# -- throughput ------------------------------------------------------------------------


async def _lkkit_setup(
    server: LocalLiveKitServer, native_stream: bool | None = None
) -> tuple[Transfer, Close]:
    room = room_name("tp-lk")
    a = lkkit.connect(server.url, token(server, room, "a"))
    b = lkkit.connect(server.url, token(server, room, "b"))
    await a.__aenter__()
    await b.__aenter__()
    await _wait_known([a.room, b.room])
    await _warm_raw(a.room, b.room)
    messages = b.data.messages("tp")
    await messages.__aenter__()

    async def transfer(payload: bytes) -> bytes:
        sender = asyncio.create_task(a.data.send(payload, topic="tp", native_stream=native_stream))
        with anyio.fail_after(WAIT):
            message = await messages.receive()
        await sender
        return message.payload

    async def close() -> None:
        await messages.aclose()
        await a.aclose()
        await b.aclose()

    return transfer, close


async def _raw_rooms(server: LocalLiveKitServer, prefix: str) -> tuple[rtc.Room, rtc.Room]:
    room = room_name(prefix)
    a, b = rtc.Room(), rtc.Room()
    await a.connect(server.url, token(server, room, "a"))
    await b.connect(server.url, token(server, room, "b"))
    await _wait_known([a, b])
    await _warm_raw(a, b)
    return a, b


async def _native_setup(server: LocalLiveKitServer) -> tuple[Transfer, Close]:
    a, b = await _raw_rooms(server, "tp-native")
    received: asyncio.Queue[bytes] = asyncio.Queue()
    readers: set[asyncio.Task[None]] = set()

    def on_stream(reader: rtc.ByteStreamReader, identity: str) -> None:
        async def read() -> None:
            received.put_nowait(b"".join([chunk async for chunk in reader]))

        task = asyncio.get_running_loop().create_task(read())
        readers.add(task)
        task.add_done_callback(readers.discard)

    b.register_byte_stream_handler("tp", on_stream)

    async def transfer(payload: bytes) -> bytes:
        # The SDK's defaults, as lkkit uses them.
        sender = asyncio.create_task(a.local_participant.send_bytes(payload, topic="tp"))
        with anyio.fail_after(WAIT):
            data = await received.get()
        await sender
        return data

    async def close() -> None:
        await a.disconnect()
        await b.disconnect()

    return transfer, close


async def _ceiling_setup(server: LocalLiveKitServer) -> tuple[Transfer, Close]:
    a, b = await _raw_rooms(server, "tp-raw")
    parts: list[bytes] = []
    done = asyncio.Event()
    expected = [0]

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == "tp":
            parts.append(packet.data)
            if sum(len(p) for p in parts) >= expected[0]:
                done.set()

    b.on("data_received", on_data)

    async def transfer(payload: bytes) -> bytes:
        parts.clear()
        done.clear()
        expected[0] = len(payload)
        for offset in range(0, len(payload), PACKET):
            await a.local_participant.publish_data(payload[offset : offset + PACKET], topic="tp")
        with anyio.fail_after(WAIT):
            await done.wait()
        return b"".join(parts)

    async def close() -> None:
        await a.disconnect()
        await b.disconnect()

    return transfer, close


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    lk, raw = await _take_turns([_lkkit_echo(server), _raw_echo(server)], 50 if quick else 300, KIB)
    ms = 1000.0
    report(
        "Data: round trip of 1 KiB reliable messages (the peer echoes)",
        [
            Comparison("RTT p50", "ms", percentile(lk, 50) * ms, percentile(raw, 50) * ms,
                       "raw publish_data", "<= 1.10"),
            Comparison("RTT p99", "ms", percentile(lk, 99) * ms, percentile(raw, 99) * ms,
                       "raw publish_data", "<= 1.10"),
        ],
    )  # fmt: skip

    count = 4 if quick else 20
    lk_tp, chunks_tp, native_tp, ceiling_tp = await _take_turns(
        [
            _lkkit_setup(server),
            _lkkit_setup(server, native_stream=False),
            _native_setup(server),
            _ceiling_setup(server),
        ],
        count,
        MIB,
    )

    def mb_s(samples: list[float]) -> float:
        return MIB / statistics.median(samples) / 1e6

    report(
        "Data: throughput of 1 MiB messages (first send to last byte, hash checked)",
        [
            Comparison("throughput vs native send_bytes", "MB/s", mb_s(lk_tp), mb_s(native_tp),
                       "native send_bytes", ">= 1.0", lower_is_better=False),
            Comparison("throughput vs raw 15 KiB packets", "MB/s", mb_s(lk_tp), mb_s(ceiling_tp),
                       "raw publish_data (ceiling)", ">= 0.70", lower_is_better=False),
            Comparison("lkkit chunks (native_stream=False)", "MB/s", mb_s(chunks_tp),
                       mb_s(native_tp), "native send_bytes", "", lower_is_better=False),
        ],
    )  # fmt: skip
