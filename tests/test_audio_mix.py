"""Several sources mixed onto one published track with per-source gains, checked in the
spectrum a real peer receives."""

from __future__ import annotations

import asyncio

import anyio
import numpy as np
import pytest

import lkkit
from lkkit._audio._sources import sine_tone
from lkkit.testing import LiveKitRoom
from test_audio import Collector, band_power, sounding, subscribed_publication

pytestmark = pytest.mark.anyio


async def _mixed(
    livekit_room: LiveKitRoom, speech_gain: float, music_gain: float, speech_s: float
) -> np.ndarray:
    """Publish a 440 Hz "speech" source for `speech_s` and a 1 kHz "music" source for
    1.2 s through one mix; the audio a peer received."""
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with anyio.create_task_group() as tg:
        async with alice.audio.publish("agent") as pub:
            peer, _ = await subscribed_publication(bob, "alice")
            collector = Collector(bob.audio.stream(peer, frame_ms=10))
            tg.start_soon(collector.run)
            mix = pub.mix()
            assert pub.mix() is mix
            speech = mix.source(gain=speech_gain)
            music = mix.source(gain=music_gain)

            # The speech source stays open and idle once said (as between sentences):
            # the music must not wait for it.
            with anyio.fail_after(15):
                await asyncio.gather(
                    speech.play(sine_tone(440.0, speech_s, amplitude=0.4)),
                    music.play(sine_tone(1000.0, 1.2, amplitude=0.4)),
                )
            with anyio.fail_after(10):
                while music.pending_samples:  # mixed while speech sits idle
                    await asyncio.sleep(0.02)
            speech.close()
            music.close()
            await pub.flush()
            await pub.wait_for_playout()
            await anyio.sleep(0.3)
        with anyio.fail_after(10):
            await collector.ended.wait()
    return sounding(collector)


async def test_two_sources_are_heard_together_at_their_gains(livekit_room: LiveKitRoom) -> None:
    audio = await _mixed(livekit_room, 1.0, 0.25, 1.2)
    ratio = band_power(audio, 440.0) / band_power(audio, 1000.0)
    assert 2.5 < ratio < 6.0, ratio  # 4 sent (gains 1.0 and 0.25)


async def test_an_idle_source_leaves_the_other_playing(livekit_room: LiveKitRoom) -> None:
    audio = await _mixed(livekit_room, 1.0, 1.0, 0.3)
    # Over a second of sound: the music went on alone after the speech ended.
    assert len(audio) / 48_000 > 0.75  # the inner 80 % of about 1.2 s
    tail = audio[-len(audio) // 3 :]
    assert band_power(tail, 1000.0) > 20 * band_power(tail, 440.0)


async def test_gains_are_checked_before_use(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.audio.publish("agent") as pub:
        for bad in (-0.1, 17, float("nan"), True, "1"):
            with pytest.raises(lkkit.ConfigurationError):
                pub.mix().source(gain=bad)  # type: ignore[arg-type]
        source = pub.mix().source()
        with pytest.raises(lkkit.ConfigurationError):
            source.gain = 20
        source.gain = 0.0
        assert source.gain == 0.0
    with pytest.raises(lkkit.NotConnected):
        pub.mix()
