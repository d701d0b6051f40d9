"""Received audio is bounded, against the real server: a reader slower than real time
loses the oldest chunks and is told (one warning, `dropped`, `dropped_duration`, the
gap in `timestamp`); a reader that keeps up loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import pytest

import lkkit
from lkkit._audio import AudioChunk, AudioPublisher
from lkkit._audio._sources import sine_tone
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio


async def _tone_forever(pub: AudioPublisher) -> None:
    tone = sine_tone(440.0, 0.1)
    while True:
        await pub.write(tone)


async def _read(
    session: lkkit.Session, *, seconds: float, delay: float, buffer: int
) -> tuple[list[AudioChunk], lkkit.AudioStream]:
    peer = session.remote_participants["alice"]
    chunks: list[AudioChunk] = []
    stream = session.audio.stream(peer, frame_ms=10, buffer=buffer)
    async with stream:
        end = time.monotonic() + seconds
        async for chunk in stream:
            chunks.append(chunk)
            if time.monotonic() > end:
                break
            if delay:
                await asyncio.sleep(delay)  # 10 ms of audio takes `delay` s to handle
    return chunks, stream


async def test_slow_reader_is_bounded_and_told_fast_reader_loses_nothing(
    livekit_room: LiveKitRoom, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    with anyio.fail_after(10):
        while "alice" not in bob.remote_participants:
            await asyncio.sleep(0.01)
    async with alice.audio.publish("voice") as pub, anyio.create_task_group() as tg:
        tg.start_soon(_tone_forever, pub)

        # Keeps up: 10 ms chunks read at once.
        with caplog.at_level(logging.WARNING, logger="lkkit"):
            chunks, fast = await _read(bob, seconds=1.5, delay=0.0, buffer=10)
        assert len(chunks) >= 100
        assert fast.dropped == 0
        assert fast.dropped_duration == 0.0
        assert not [r for r in caplog.records if "slower than real time" in r.message]

        # Half real time: 10 ms chunks that take 20 ms each, buffer of 100 ms.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lkkit"):
            chunks, slow = await _read(bob, seconds=2.0, delay=0.02, buffer=10)
        tg.cancel_scope.cancel()

    assert slow.dropped > 0
    # About half of what arrived was lost (reading at half speed for 2 s).
    assert 0.5 <= slow.dropped_duration <= 1.5, slow.dropped_duration
    assert slow.dropped_duration == pytest.approx(slow.dropped * 0.01)
    warnings = [r for r in caplog.records if "slower than real time" in r.message]
    assert len(warnings) == 1, [r.message for r in caplog.records]
    assert "'alice'" in warnings[0].message
    # The gaps show in the timestamps: what was read spans more audio than it holds.
    span = chunks[-1].timestamp + chunks[-1].duration - chunks[0].timestamp
    read = sum(c.duration for c in chunks)
    assert span - read == pytest.approx(slow.dropped_duration, abs=0.15)
    # And the reader was never more than its buffer (100 ms) behind.
    assert slow.buffered_duration <= 0.1
