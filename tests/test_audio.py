"""Audio against the real server: tone, level, interruption, stereo, resampling,
backpressure, serialised captures, typed errors, and how received streams end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import numpy.typing as npt
import pytest
from livekit import rtc

import lkkit
from lkkit._audio import AudioChunk, AudioOptions, AudioPublisher, AudioStream
from lkkit._audio._sources import iter_chunks, sine_tone
from lkkit._events import ParticipantDisconnected, TrackUnpublished, TrackUnsubscribed
from lkkit._exceptions import TrackNotSubscribed
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

RATE = 48_000
SILENT_RMS = 30.0  # int16 RMS below which a 10 ms frame counts as silence


async def remote(session: lkkit.Session, identity: str) -> lkkit.RemoteParticipant:
    with anyio.fail_after(10):
        while identity not in session.remote_participants:
            await asyncio.sleep(0.01)
    return session.remote_participants[identity]


async def subscribed_publication(
    session: lkkit.Session, identity: str
) -> tuple[lkkit.RemoteParticipant, lkkit.TrackPublication]:
    peer = await remote(session, identity)
    with anyio.fail_after(10):
        while not any(p.subscribed for p in peer.track_publications.values()):
            await asyncio.sleep(0.01)
    (publication,) = peer.track_publications.values()
    return peer, publication


class Collector:
    """Reads an AudioStream into a list in the background (owned by a task group)."""

    def __init__(self, stream: AudioStream) -> None:
        self.stream = stream
        self.chunks: list[AudioChunk] = []
        self.ended = anyio.Event()

    async def run(self) -> None:
        async with self.stream as chunks:
            async for chunk in chunks:
                self.chunks.append(chunk)
        self.ended.set()

    def samples(self) -> npt.NDArray[np.int16]:
        return np.concatenate([c.samples for c in self.chunks])

    def rms(self) -> list[float]:
        return [float(np.sqrt(np.mean(c.samples.astype(np.float64) ** 2))) for c in self.chunks]

    async def wait_for_sound(self, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not any(r > SILENT_RMS for r in self.rms()):
                await asyncio.sleep(0.02)


def rms(chunk: AudioChunk) -> float:
    return float(np.sqrt(np.mean(chunk.samples.astype(np.float64) ** 2)))


def peak_hz(samples: npt.NDArray[np.int16], rate: int = RATE) -> float:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x, n=8 * len(x)))
    return float(np.argmax(spectrum) * rate / (8 * len(x)))


def sounding(collector: Collector) -> npt.NDArray[np.int16]:
    """The received audio from the first to the last non-silent chunk, inner 80 %."""
    rms = collector.rms()
    loud = [i for i, r in enumerate(rms) if r > SILENT_RMS]
    assert loud, "no audio arrived"
    audio = np.concatenate([c.samples for c in collector.chunks[loud[0] : loud[-1] + 1]])
    cut = len(audio) // 10
    return audio[cut:-cut]


async def test_tone_reaches_another_session_at_440_hz_and_expected_level(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    tone = sine_tone(440.0, 1.5, amplitude=0.5)
    async with anyio.create_task_group() as tg:
        async with alice.audio.publish("voice") as pub:
            peer, _ = await subscribed_publication(bob, "alice")
            stream = bob.audio.stream(peer, frame_ms=10)
            collector = Collector(stream)
            tg.start_soon(collector.run)
            await pub.write(tone)
            await pub.flush()
            await pub.wait_for_playout()
            await anyio.sleep(0.3)  # network + jitter buffer
        with anyio.fail_after(10):
            await collector.ended.wait()  # unpublishing ends the stream
    audio = sounding(collector)
    assert abs(peak_hz(audio) - 440.0) <= 5.0
    expected_rms = 0.5 * 32767 / np.sqrt(2)
    assert abs(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) - expected_rms) < 0.1 * expected_rms
    # Received chunks are 10 ms mono int16 with sample-accurate timestamps.
    assert all(c.samples.shape == (480,) and c.samples.dtype == np.int16 for c in collector.chunks)
    assert [c.timestamp for c in collector.chunks[:3]] == [0.0, 0.01, 0.02]
    assert pub.samples_captured == len(tone)


async def test_interrupt_silences_the_receiver_before_the_pending_audio(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with anyio.create_task_group() as tg:
        async with alice.audio.publish("voice") as pub:
            peer, _ = await subscribed_publication(bob, "alice")  # the tone must arrive
            collector = Collector(bob.audio.stream(peer))
            tg.start_soon(collector.run)
            await pub.write(sine_tone(440.0, 0.6))
            # The native buffer now holds 50-100 ms and the next second is pending.
            writer_done = anyio.Event()

            async def keep_writing() -> None:
                await pub.write(sine_tone(440.0, 1.0, start_sample=RATE * 6 // 10))
                writer_done.set()

            tg.start_soon(keep_writing)
            await anyio.sleep(0.2)
            interrupted_at = time.monotonic()
            pub.interrupt()
            with anyio.fail_after(5):
                await writer_done.wait()  # the blocked writer returns: its audio is gone
            assert pub.pending_samples == 0
            await anyio.sleep(0.5)
            # The pipeline's own latency under the same conditions: from a write into
            # the empty buffer to the first loud chunk at the receiver.
            resumed_at = time.monotonic()
            await pub.write(sine_tone(440.0, 0.2))
            await anyio.sleep(0.5)
        await collector.stream.aclose()
    after = [c for c in collector.chunks if interrupted_at < c.received_at < resumed_at]
    tail = [c.received_at - interrupted_at for c in after if rms(c) > SILENT_RMS]
    onset = min(
        c.received_at
        for c in collector.chunks
        if c.received_at > resumed_at and rms(c) > SILENT_RMS
    )
    latency = onset - resumed_at
    print(f"tone after interrupt: {tail[-1] * 1000:.0f} ms, latency {latency * 1000:.0f} ms")
    # What was already sent or sits in the receiver's jitter buffer still plays (the
    # pipeline latency: 50-100 ms on this loopback, measured again just after); the
    # writer's pending 800 ms must not. Typically the tail is within 60 ms of that
    # latency; on a loaded machine it was 76 ms (CI), as the jitter buffer grows
    # between the two measurements, hence the margin.
    assert tail[-1] <= latency + 0.25
    assert len(after) >= 40
    assert all(rms(c) <= SILENT_RMS for c in after[len(tail) + 3 :])


def band_power(samples: npt.NDArray[np.int16], hz: float, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    bin_ = round(hz * len(samples) / rate)
    return float(spectrum[bin_ - 3 : bin_ + 4].max())


async def test_stereo_is_published_and_received_as_two_channels(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    left = sine_tone(440.0, 1.0, amplitude=0.4)
    right = sine_tone(1000.0, 1.0, amplitude=0.4)
    async with anyio.create_task_group() as tg:
        async with alice.audio.publish("music", channels=2) as pub:
            peer, _ = await subscribed_publication(bob, "alice")
            collector = Collector(bob.audio.stream(peer, channels=2))
            tg.start_soon(collector.run)
            await pub.write(np.stack([left, right], axis=1))
            await pub.flush()
            await pub.wait_for_playout()
            await anyio.sleep(0.3)
        await collector.stream.aclose()
    assert pub.samples_captured == RATE
    assert all(c.samples.shape == (480, 2) for c in collector.chunks)
    audio = np.concatenate([c.samples for c in collector.chunks])
    loud = np.flatnonzero(np.abs(audio[:, 0]) > 1000)
    audio = audio[loud[0] + 4800 : loud[-1] - 4800]
    # Both tones arrive. The SDK (1.2.1) usually negotiates mono Opus, so the wire
    # carries the downmix and both received channels hold it (the raw SDK does the same;
    # see the audio docs page): each channel has both tones at similar strength. Once
    # in a full run the channels arrived apart instead (440 Hz left, 1000 Hz right):
    # true stereo, also correct. Anything else fails.
    ratios = [
        band_power(audio[:, channel], 440.0) / band_power(audio[:, channel], 1000.0)
        for channel in (0, 1)
    ]
    downmixed = all(0.5 < ratio < 2.0 for ratio in ratios) and (
        np.abs(audio[:, 0].astype(np.int32) - audio[:, 1]).max() < 200
    )
    apart = ratios[0] > 20 and ratios[1] < 1 / 20
    assert downmixed or apart, ratios


async def test_input_at_another_rate_is_resampled(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    tone_16k = sine_tone(440.0, 1.0, sample_rate=16_000, amplitude=0.5)
    async with anyio.create_task_group() as tg:
        async with alice.audio.publish("voice") as pub:
            peer, _ = await subscribed_publication(bob, "alice")
            collector = Collector(bob.audio.stream(peer))
            tg.start_soon(collector.run)
            # Float input from an async iterator, at 16 kHz, in 70 ms pieces.
            await pub.play(
                iter_chunks(tone_16k.astype(np.float32) / 32767, 1120), sample_rate=16_000
            )
            await pub.wait_for_playout()
            await anyio.sleep(0.3)
        await collector.stream.aclose()
    # One second at 16 kHz became one second at 48 kHz (within the resampler's delay
    # and the last frame's padding).
    assert abs(pub.samples_captured - RATE) <= 480
    audio = sounding(collector)
    assert abs(peak_hz(audio) - 440.0) <= 5.0


async def test_writing_one_second_takes_about_one_second(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.audio.publish("voice") as pub:
        start = time.monotonic()
        await pub.write(sine_tone(440.0, 1.0))
        elapsed = time.monotonic() - start
        # The buffer absorbs the first 50-100 ms; the rest goes out in real time.
        assert 0.8 <= elapsed <= 1.6
        assert pub.queued_duration <= 0.11


async def test_concurrent_and_cancelled_writers_are_serialised(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.audio.publish("voice") as pub:
        # Four writers at once: without lkkit's serialisation the native source fails
        # overlapping captures with "failed to capture frame".
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(pub.write, sine_tone(440.0, 0.1))
        assert pub.samples_captured == 4 * 4800
        # A writer cancelled while its capture is in flight leaves that capture to
        # finish; the next write waits for it instead of failing. The writer is
        # cancelled right after it handed its first batch to the native source, so
        # that capture is still in flight (only the writer clears it).
        before = pub.samples_captured
        async with anyio.create_task_group() as tg:
            tg.start_soon(pub.write, sine_tone(440.0, 1.0))
            with anyio.fail_after(10):
                while pub.samples_captured == before:
                    await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
        cancelled_at = pub.samples_captured
        assert before < cancelled_at < before + 48000  # one batch of the second, not all
        assert pub._inflight is not None
        await pub.write(sine_tone(440.0, 0.1))  # waits for it: no CaptureError
        # The cancelled write's queued rest is not dropped: the next write sends it first.
        assert pub.samples_captured == before + 48000 + 4800
        assert pub._inflight is None
        pub.interrupt()


async def test_bad_input_raises_typed_errors_and_loses_nothing(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.audio.publish("voice") as pub:
        await pub.write(sine_tone(440.0, 0.025))  # two frames captured, 5 ms carried
        assert (pub.samples_captured, pub.pending_samples) == (960, 240)
        bad: list[object] = [
            np.zeros(480, dtype=np.int32),
            np.zeros((480, 2), dtype=np.int16),
            np.zeros((2, 480, 1), dtype=np.int16),
            np.array([0.0, np.nan], dtype=np.float32),
            np.array([0.0, np.inf], dtype=np.float32),
            [0, 1, 2],
        ]
        for samples in bad:
            with pytest.raises(lkkit.AudioFormatError):
                await pub.write(samples)  # type: ignore[arg-type]
        with pytest.raises(lkkit.AudioFormatError):
            await pub.write(sine_tone(440.0, 0.01), sample_rate=0)
        assert (pub.samples_captured, pub.pending_samples) == (960, 240)
        await pub.flush()
        assert (pub.samples_captured, pub.pending_samples) == (1440, 0)
    with pytest.raises(lkkit.NotConnected):
        await pub.write(sine_tone(440.0, 0.01))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame_ms": 15},
        {"frame_ms": 0},
        {"buffer_ms": 55},
        {"buffer_ms": 20, "frame_ms": 40},
        {"capture_ms": 30, "frame_ms": 20},
        {"capture_ms": 60},
        {"sample_rate": 44_123},
        {"channels": 0},
    ],
)
async def test_refused_formats_fail_before_publishing(
    livekit_room: LiveKitRoom, kwargs: dict[str, Any]
) -> None:
    alice = await livekit_room.join("alice")
    with pytest.raises(lkkit.AudioFormatError):
        alice.audio.publish("voice", **kwargs)
    assert not alice.local_participant.track_publications


async def test_options_reach_the_published_track(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    options = AudioOptions(
        source=lkkit.TrackSource.SCREEN_SHARE_AUDIO,
        bitrate=20_000,
        dtx=True,
        noise_suppression=True,
        high_pass_filter=True,
        auto_gain_control=True,
    )
    async with alice.audio.publish("shared", options=options) as pub:
        assert pub.publication.source is lkkit.TrackSource.SCREEN_SHARE_AUDIO
        peer = await remote(bob, "alice")
        with anyio.fail_after(10):
            while not peer.track_publications:
                await asyncio.sleep(0.01)
        (seen,) = peer.track_publications.values()
        assert (seen.source, seen.kind, seen.name) == (
            lkkit.TrackSource.SCREEN_SHARE_AUDIO,
            lkkit.TrackKind.AUDIO,
            "shared",
        )
        # Processing runs on 10 ms frames before capture.
        await pub.write(sine_tone(440.0, 0.2))
        with pytest.raises(lkkit.ConfigurationError):
            pub.feed_far_end(sine_tone(440.0, 0.01))
    with pytest.raises(lkkit.ConfigurationError):
        AudioOptions(source=lkkit.TrackSource.CAMERA)


async def test_echo_cancellation_removes_the_far_end_and_keeps_the_near_end(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    step = RATE // 10
    far_end = (np.random.default_rng(7).standard_normal(RATE * 3) * 3_000).astype(np.int16)
    echo = far_end // 2  # what the microphone hears of the loudspeaker: 1,500 RMS
    near_end = sine_tone(440.0, 1.0, amplitude=0.1)  # the local talker: 2,317 RMS
    options = AudioOptions(echo_cancellation=True)
    async with anyio.create_task_group() as tg:
        async with alice.audio.publish("voice", options=options) as pub:
            peer, _ = await subscribed_publication(bob, "alice")
            collector = Collector(bob.audio.stream(peer, frame_ms=100))
            tg.start_soon(collector.run)
            # As a voice app does: each 100 ms, the audio it plays, then the microphone.
            for start in range(0, len(echo), step):
                pub.feed_far_end(far_end[start : start + step])
                await pub.write(echo[start : start + step])
            for start in range(0, len(near_end), step):
                pub.feed_far_end(np.zeros(step, np.int16))
                await pub.write(near_end[start : start + step])
            await pub.wait_for_playout()
            await anyio.sleep(0.3)
        await collector.stream.aclose()
    levels = collector.rms()
    talk = [i for i, level in enumerate(levels) if level > 1_000]
    assert len(talk) >= 8, levels
    assert abs(peak_hz(np.concatenate([collector.chunks[i].samples for i in talk])) - 440) <= 5
    assert min(levels[i] for i in talk[1:-1]) > 0.8 * 2_317  # the talker is kept
    # The canceller converges within the first 200 ms (its first 100 ms chunk has
    # measured from 15 to 780 RMS); from then on the echo stays more than 20 dB down.
    # Received chunks do not line up with written ones: the chunk before the first
    # loud one holds the talker's first samples, so it is left out too.
    echo_phase = levels[2 : talk[0] - 1]
    assert len(echo_phase) >= 12, levels  # 1.2 s of the 3 s of echo was received
    assert max(echo_phase) < 150, levels


async def ended_within(collector: Collector, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        await collector.ended.wait()
    assert collector.stream.ended


async def keep_sounding(pub: AudioPublisher) -> None:
    """Write a tone until cancelled (or the publisher closes)."""
    position = 0
    with contextlib.suppress(lkkit.NotConnected):
        while True:
            await pub.write(sine_tone(440.0, 0.1, start_sample=position))
            position += RATE // 10


# How a stream's end is caused; each case runs with the stream opened from the
# participant and from the track publication.
END_CAUSES = [
    "publisher_unpublishes",
    "receiver_unsubscribes",
    "publisher_leaves",
    "receiver_session_ends",
    "stream_aclose",
]


@pytest.mark.parametrize("opened_from", ["participant", "publication"])
@pytest.mark.parametrize("cause", END_CAUSES)
async def test_stream_ends_cleanly_whatever_ends_it(
    livekit_room: LiveKitRoom, cause: str, opened_from: str
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with anyio.create_task_group() as tg:
        pub = alice.audio.publish("voice")
        await pub.__aenter__()
        try:
            tg.start_soon(keep_sounding, pub)
            peer, publication = await subscribed_publication(bob, "alice")
            stream = bob.audio.stream(peer if opened_from == "participant" else publication)
            assert stream.track_sid == publication.sid
            assert stream.participant_identity == "alice"
            collector = Collector(stream)
            tg.start_soon(collector.run)
            await collector.wait_for_sound()
            if cause == "publisher_unpublishes":
                await pub.aclose()
            elif cause == "receiver_unsubscribes":
                sdk_publication = publication.sdk
                assert isinstance(sdk_publication, rtc.RemoteTrackPublication)
                sdk_publication.set_subscribed(False)
            elif cause == "publisher_leaves":
                await alice.aclose()
            elif cause == "receiver_session_ends":
                await bob.aclose()
            else:
                await stream.aclose()
            await ended_within(collector)
            # Ended for good: a later iteration ends at once, nothing is routed to it.
            with anyio.fail_after(1):
                assert [c async for c in stream] == []
            assert not bob.audio._streams
        finally:
            await pub.aclose()
            tg.cancel_scope.cancel()
    assert collector.chunks, "audio arrived before the end"


@pytest.mark.parametrize(
    "event", ["TrackUnpublished", "TrackUnsubscribed", "ParticipantDisconnected"]
)
async def test_each_end_event_alone_ends_the_stream(livekit_room: LiveKitRoom, event: str) -> None:
    # The SDK reports an unpublish as unpublish, unsubscribe, or either alone (it drops
    # the unsubscribe when it handled the unpublish first, and reports neither for a
    # participant that left): each event, delivered alone through the session's event
    # bus while the track keeps sounding, ends the stream.
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with anyio.create_task_group() as tg, alice.audio.publish("voice") as pub:
        tg.start_soon(keep_sounding, pub)
        peer, publication = await subscribed_publication(bob, "alice")
        collector = Collector(bob.audio.stream(peer))
        tg.start_soon(collector.run)
        await collector.wait_for_sound()
        if event == "TrackUnpublished":
            bob._core.bus.publish(TrackUnpublished(peer, publication))
        elif event == "TrackUnsubscribed":
            bob._core.bus.publish(TrackUnsubscribed(peer, publication))
        else:
            bob._core.bus.publish(ParticipantDisconnected(peer, lkkit.DisconnectReason.UNKNOWN))
        await ended_within(collector, 2)
        received = len(collector.chunks)
        await anyio.sleep(0.2)  # the track still sounds; nothing more is delivered
        assert len(collector.chunks) == received
        # Another track's events do not end a stream.
        other = Collector(bob.audio.stream(publication))
        tg.start_soon(other.run)
        await other.wait_for_sound()
        bob._core.bus.publish(
            ParticipantDisconnected(await remote(alice, "bob"), lkkit.DisconnectReason.UNKNOWN)
        )
        await anyio.sleep(0.1)
        assert not other.stream.ended
        await other.stream.aclose()
        tg.cancel_scope.cancel()


async def test_stream_not_yet_entered_ends_when_its_track_goes(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with alice.audio.publish("voice") as pub:
        await pub.write(sine_tone(440.0, 0.1))
        peer, publication = await subscribed_publication(bob, "alice")
        from_peer = bob.audio.stream(peer)
        from_publication = bob.audio.stream(publication)
    # Unpublished before it was entered: iteration ends at once.
    with anyio.fail_after(10):
        while not (from_peer.ended and from_publication.ended):
            await asyncio.sleep(0.01)
    with anyio.fail_after(1):
        async with from_peer, from_publication:
            assert [c async for c in from_peer] == []
            assert [c async for c in from_publication] == []


async def test_stream_waiting_for_a_track_ends_when_the_participant_or_session_goes(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    carol = await livekit_room.join("carol")
    waits_for_alice = Collector(bob.audio.stream(await remote(bob, "alice")))
    waits_for_carol = Collector(bob.audio.stream(await remote(bob, "carol")))
    assert waits_for_alice.stream.track_sid == ""
    async with anyio.create_task_group() as tg:
        tg.start_soon(waits_for_alice.run)
        tg.start_soon(waits_for_carol.run)
        await alice.aclose()  # left without ever publishing
        await ended_within(waits_for_alice)
        assert not waits_for_carol.stream.ended
        await bob.aclose()
        await ended_within(waits_for_carol)
    assert not waits_for_alice.chunks
    assert not waits_for_carol.chunks
    await carol.aclose()


async def test_stream_waits_for_the_track_then_reads_it(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    collector = Collector(bob.audio.stream(await remote(bob, "alice"), frame_ms=20))
    async with anyio.create_task_group() as tg:
        tg.start_soon(collector.run)
        await anyio.sleep(0.2)
        async with alice.audio.publish("voice") as pub:
            tg.start_soon(keep_sounding, pub)
            await collector.wait_for_sound()
            assert collector.stream.track_sid == pub.publication.sid
        await ended_within(collector)
        tg.cancel_scope.cancel()
    assert all(c.samples.shape == (960,) for c in collector.chunks)
    assert [c.timestamp for c in collector.chunks[:3]] == [0.0, 0.02, 0.04]


async def test_stream_from_a_raw_sdk_publisher_and_its_unpublish(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    room = rtc.Room()
    await room.connect(livekit_room.url, livekit_room.token("raw"))
    try:
        source = rtc.AudioSource(RATE, 1, queue_size_ms=50)
        track = rtc.LocalAudioTrack.create_audio_track("raw-voice", source)
        publication = await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        peer = await remote(bob, "raw")
        with anyio.fail_after(10):
            while not any(p.subscribed for p in peer.track_publications.values()):
                await asyncio.sleep(0.01)
        (seen,) = peer.track_publications.values()
        async with anyio.create_task_group() as tg:
            collector = Collector(bob.audio.stream(seen, frame_ms=50))
            tg.start_soon(collector.run)
            tone = sine_tone(440.0, 0.5)
            for start in range(0, len(tone), 480):
                await source.capture_frame(
                    rtc.AudioFrame(tone[start : start + 480].tobytes(), RATE, 1, 480)
                )
            await collector.wait_for_sound()
            await room.local_participant.unpublish_track(publication.sid)
            with anyio.fail_after(10):
                await collector.ended.wait()
        assert all(c.samples.shape == (2400,) for c in collector.chunks)
        assert abs(peak_hz(sounding(collector)) - 440.0) <= 5.0
    finally:
        await room.disconnect()


async def test_stream_rejects_what_it_cannot_receive(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob", can_subscribe=False)
    with pytest.raises(lkkit.ConfigurationError):
        alice.audio.stream(alice.local_participant)
    with pytest.raises(lkkit.AudioFormatError):
        alice.audio.stream(await remote(alice, "bob"), frame_ms=25)
    async with alice.audio.publish("voice") as pub:
        peer = await remote(bob, "alice")
        with anyio.fail_after(10):
            while not peer.track_publications:
                await asyncio.sleep(0.01)
        (seen,) = peer.track_publications.values()
        with pytest.raises(TrackNotSubscribed):
            bob.audio.stream(seen)
        pub.interrupt()


async def test_publisher_is_entered_once_and_writes_need_the_block(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    pub: AudioPublisher = alice.audio.publish("voice")
    with pytest.raises(lkkit.SessionStateError):
        await pub.write(sine_tone(440.0, 0.01))
    async with pub:
        pass
    with pytest.raises(lkkit.SessionStateError):
        await pub.__aenter__()
    assert not alice.local_participant.track_publications  # unpublished on exit


async def test_shared_ffi_subscriptions_are_released_with_the_last_user(
    livekit_room: LiveKitRoom,
) -> None:
    from lkkit._audio._ffi import capture_router, stream_router

    loop = asyncio.get_running_loop()
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    captures, streams = capture_router(loop), stream_router(loop)
    async with alice.audio.publish("one") as one, alice.audio.publish("two") as two:
        await one.write(sine_tone(440.0, 0.1))
        await two.write(sine_tone(440.0, 0.1))
        stream = bob.audio.stream(await remote(bob, "alice"))
        async with anyio.create_task_group() as tg:
            # The stream binds whichever microphone track is subscribed first.
            tg.start_soon(keep_sounding, one)
            tg.start_soon(keep_sounding, two)
            collector = Collector(stream)
            tg.start_soon(collector.run)
            await collector.wait_for_sound()
            assert captures._subscription._unsubscribe is not None
            assert streams._subscription._unsubscribe is not None
            await stream.aclose()
            tg.cancel_scope.cancel()
        assert streams._subscription._unsubscribe is None  # the last stream closed
    assert captures._subscription._unsubscribe is None  # the last publisher closed
