"""Bad networks inside the loopback sandbox: a blackout (`lo` down for 2 s), a
bottleneck (`tc tbf`: 400 kbit/s with up to 150 ms of queueing) and random loss
(iptables' `statistic` match drops 10 % of UDP packets for 3 s). Reliable messages
arrive whole and in order, lossy losses are counted, audio plays on with its holes
counted. (`tc netem`, for delay and jitter, is not available: this kernel has no
sch_netem. Every sandbox packet goes over `lo`, so that is what is impaired.)"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import numpy as np
import pytest

import lkkit
from lkkit.testing import LiveKitRoom

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("tc") is None, reason="needs tc (iproute2)"),
]

IPTABLES = shutil.which("iptables")
SEND_S = 6.0
RATE = 20  # reliable and lossy messages per second each


def _ip(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@asynccontextmanager
async def blackout(seconds: float) -> AsyncIterator[None]:
    """`lo` down for `seconds` (every packet in the sandbox is lost), then up again."""
    _ip("ip", "link", "set", "lo", "down")
    try:
        await anyio.sleep(seconds)
    finally:
        _ip("ip", "link", "set", "lo", "up")
    yield


@asynccontextmanager
async def bottleneck() -> AsyncIterator[None]:
    _ip(
        "tc",
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "tbf",
        "rate",
        "400kbit",
        "burst",
        "16kbit",
        "latency",
        "150ms",
    )
    try:
        yield
    finally:
        _ip("tc", "qdisc", "del", "dev", "lo", "root")


@asynccontextmanager
async def packet_loss(percent: float) -> AsyncIterator[None]:
    """Every UDP packet in the sandbox (WebRTC media and data) dropped with this
    probability; the signalling, over TCP, is spared."""
    assert IPTABLES is not None
    rule = ["INPUT", "-p", "udp", "-m", "statistic", "--mode", "random"]
    rule += ["--probability", f"{percent / 100:.2f}", "-j", "DROP"]
    _ip(IPTABLES, "-A", *rule)
    try:
        yield
    finally:
        _ip(IPTABLES, "-D", *rule)


def _message(n: int) -> bytes:
    body = f"{n}:".encode() + bytes(range(256)) * 4
    return body + hashlib.sha256(body).digest()


async def _exchange(livekit_room: LiveKitRoom, impairment: str) -> dict[str, float]:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    peer = await bob.wait_for_participant("alice")
    reliable: list[int] = []
    corrupt = 0
    lossy = 0
    holes = 0
    blocks = 0
    sent = 0

    async with (
        alice.audio.publish("voice") as voice,
        bob.data.messages() as messages,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(voice.write, lkkit.sine_tone(440.0, 60.0, amplitude=0.3))

        async def receive() -> None:
            nonlocal corrupt, lossy
            async for message in messages:
                if message.topic == "lossy":
                    lossy += 1
                    continue
                body, digest = message.payload[:-32], message.payload[-32:]
                if hashlib.sha256(body).digest() != digest:
                    corrupt += 1
                reliable.append(int(body.split(b":")[0]))

        async def listen() -> None:
            nonlocal holes, blocks
            async with bob.audio.stream(peer, frame_ms=10) as chunks:
                async for chunk in chunks:
                    if chunk.timestamp < 1.0:
                        continue  # the start
                    blocks += 1
                    holes += int(np.abs(chunk.samples).max() <= 100)

        tg.start_soon(receive)
        tg.start_soon(listen)
        await anyio.sleep(1.5)

        async def send(until: float) -> None:
            nonlocal sent
            while time.monotonic() < until:
                await alice.data.send(_message(sent), topic="reliable")
                await alice.data.send(b"lossy" * 100, topic="lossy", reliable=False)
                sent += 1
                await anyio.sleep(1 / RATE)

        async with anyio.create_task_group() as senders:
            senders.start_soon(send, time.monotonic() + SEND_S)
            await anyio.sleep(1.0)
            if impairment == "blackout":
                async with blackout(2.0):
                    pass
            elif impairment == "loss":
                async with packet_loss(10):
                    await anyio.sleep(3.0)
            else:
                async with bottleneck():
                    await anyio.sleep(3.0)
        with anyio.fail_after(20):
            while len(reliable) < sent:
                await anyio.sleep(0.1)
        await anyio.sleep(1.0)  # the audio after the impairment
        holes_after = holes
        await anyio.sleep(1.0)
        voice.interrupt()  # the rest of the tone is not played at the block's exit
        tg.cancel_scope.cancel()

    assert reliable == list(range(sent))  # whole, in order, none missing or twice
    assert corrupt == 0
    figures: dict[str, float] = {
        "reliable sent": sent,
        "reliable received": len(reliable),
        "lossy lost": sent - lossy,
        "audio holes": holes_after,
        "audio blocks": blocks,
        "audio holes in the last second": holes - holes_after,
    }
    print(f"\n{impairment}: {figures}")
    assert holes - holes_after <= 5, figures  # audio plays again after the impairment
    return figures


async def test_a_two_second_blackout_loses_no_reliable_message(livekit_room: LiveKitRoom) -> None:
    figures = await _exchange(livekit_room, "blackout")
    assert figures["audio holes"] >= 50  # the blackout was silence: ~200 blocks of it
    assert figures["lossy lost"] >= 1  # lossy packets of the blackout were lost, counted


async def test_a_bottleneck_delays_but_loses_no_reliable_message(livekit_room: LiveKitRoom) -> None:
    await _exchange(livekit_room, "bottleneck")


@pytest.mark.skipif(IPTABLES is None, reason="needs iptables (apt-get install iptables)")
async def test_random_packet_loss_loses_no_reliable_message(livekit_room: LiveKitRoom) -> None:
    figures = await _exchange(livekit_room, "loss")
    assert figures["lossy lost"] >= 1  # of ~60 lossy messages sent through the loss
