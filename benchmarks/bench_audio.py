"""Audio: publish CPU per track-second, most tracks without underrun, receive cost.

lkkit's publisher (10 ms frames on the wire, up to 50 ms handed over per capture)
against the raw SDK loop SPEC describes (`AudioSource(queue_size_ms=50)` and one
10 ms `capture_frame` per frame). Underruns are counted by a receiver in a separate
process (so its cost does not weigh on the publisher): a silent 10 ms block inside
a continuous tone is a frame the publisher failed to deliver in time.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

import numpy as np
from livekit import rtc

import lkkit
from lkkit._audio import AudioPublisher
from lkkit._audio_sources import sine_tone
from lkkit.testing import LocalLiveKitServer

from ._harness import Comparison, report, room_name, token

RATE = 48_000
SILENT_RMS = 30.0
TONE = sine_tone(440.0, 1.0, amplitude=0.3)  # one second; wraps without a click
CHUNK = RATE // 10  # applications typically hand over 100 ms at a time


# -- publishers under test ---------------------------------------------------------------


async def _lkkit_publish(url: str, tok: str, tracks: int, seconds: float) -> float:
    """Publish `tracks` tone tracks from one lkkit session; return CPU seconds used."""
    async with lkkit.connect(url, tok) as session:
        pubs = [session.audio.publish(f"t{i}") for i in range(tracks)]
        for pub in pubs:
            await pub.__aenter__()
        await asyncio.sleep(1.0)  # let the receiver subscribe

        async def feed(pub: AudioPublisher) -> None:
            pos = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await pub.write(TONE[pos : pos + CHUNK])
                pos = (pos + CHUNK) % RATE

        cpu = time.process_time()
        await asyncio.gather(*(feed(p) for p in pubs))
        cpu = time.process_time() - cpu
        for pub in pubs:
            await pub.aclose()
    return cpu


async def _raw_publish(url: str, tok: str, tracks: int, seconds: float) -> float:
    room = rtc.Room()
    await room.connect(url, tok)
    try:
        sources = []
        for i in range(tracks):
            source = rtc.AudioSource(RATE, 1, queue_size_ms=50)
            track = rtc.LocalAudioTrack.create_audio_track(f"t{i}", source)
            await room.local_participant.publish_track(
                track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            )
            sources.append(source)
        await asyncio.sleep(1.0)

        async def feed(source: rtc.AudioSource) -> None:
            pos = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                frame = TONE[pos : pos + 480]
                await source.capture_frame(rtc.AudioFrame(frame.tobytes(), RATE, 1, 480))
                pos = (pos + 480) % RATE

        cpu = time.process_time()
        await asyncio.gather(*(feed(s) for s in sources))
        return time.process_time() - cpu
    finally:
        await room.disconnect()


Publisher = Callable[[str, str, int, float], Awaitable[float]]


# -- the receiver process ------------------------------------------------------------------


async def _receive(url: str, tok: str, tracks: int, seconds: float, frame_ms: int) -> None:
    """Peer mode: count silent 10 ms blocks per track once all tracks sound."""
    room = rtc.Room()
    streams: list[rtc.AudioStream] = []
    room.on(
        "track_subscribed",
        lambda track, *_: streams.append(
            rtc.AudioStream(track, sample_rate=RATE, num_channels=1, frame_size_ms=frame_ms)
        ),
    )
    await room.connect(url, tok)
    silent = 0
    blocks = 0
    window_start = 0.0

    async def read(stream: rtc.AudioStream) -> None:
        nonlocal silent, blocks
        sounding = False
        async for event in stream:
            audio = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
            rms = np.sqrt(np.mean(audio.reshape(-1, 480) ** 2, axis=1))
            if not sounding:
                sounding = bool((rms > SILENT_RMS).all())
                continue
            if window_start and time.monotonic() >= window_start:
                blocks += len(rms)
                silent += int((rms <= SILENT_RMS).sum())

    deadline = time.monotonic() + 20
    while len(streams) < tracks and time.monotonic() < deadline:  # noqa: ASYNC110 bounded poll
        await asyncio.sleep(0.05)
    readers = [asyncio.create_task(read(s)) for s in streams]
    window_start = time.monotonic() + 1.5  # skip the start-up
    await asyncio.sleep(1.5 + seconds)
    for reader in readers:
        reader.cancel()
    print(json.dumps({"silent": silent, "blocks": blocks, "tracks": len(streams)}), flush=True)
    await room.disconnect()


async def _publish_peer(url: str, tok: str, tracks: int, seconds: float) -> None:
    """Peer mode: publish tone tracks with the raw SDK (for the receive benchmark)."""
    await _raw_publish(url, tok, tracks, seconds)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.bench_audio", *args, stdout=asyncio.subprocess.PIPE
    )


async def _underruns(
    server: LocalLiveKitServer, publish: Publisher, tracks: int, seconds: float
) -> tuple[int, int]:
    room = room_name("audio")
    peer = await _spawn(
        "receive", server.url, token(server, room, "rx"), str(tracks), str(seconds), "50"
    )
    try:
        await publish(server.url, token(server, room, "tx"), tracks, seconds + 3.0)
        out, _ = await asyncio.wait_for(peer.communicate(), 30)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    result = json.loads(out.decode().strip().splitlines()[-1])
    if result["tracks"] < tracks:
        return -1, 0
    return result["silent"], result["blocks"]


async def _max_tracks(
    server: LocalLiveKitServer, publish: Publisher, steps: list[int], seconds: float
) -> tuple[int, list[str]]:
    best = 0
    log = []
    for tracks in steps:
        silent, blocks = await _underruns(server, publish, tracks, seconds)
        log.append(f"{tracks}: {silent}/{blocks} silent")
        # Tolerate one silent block per 2,000 (noise from other load on the machine).
        if silent < 0 or silent * 2000 > blocks:
            break
        best = tracks
    return best, log


# -- receive-side cost ---------------------------------------------------------------------


async def _receive_cost(
    server: LocalLiveKitServer, tracks: int, seconds: float, frame_ms: int, use_lkkit: bool
) -> float:
    """CPU seconds of this process per second of audio received, `tracks` tracks."""
    room = room_name("rx")
    peer = await _spawn(
        "publish", server.url, token(server, room, "tx"), str(tracks), str(seconds + 4)
    )
    try:
        async with lkkit.connect(server.url, token(server, room, "rx")) as session:
            with_deadline = time.monotonic() + 15
            while "tx" not in session.remote_participants and time.monotonic() < with_deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            participant = session.remote_participants["tx"]
            while (  # noqa: ASYNC110 bounded poll
                sum(p.subscribed for p in participant.track_publications.values()) < tracks
                and time.monotonic() < with_deadline
            ):
                await asyncio.sleep(0.05)
            publications = list(participant.track_publications.values())[:tracks]
            received = 0

            async def read_lkkit(pub: lkkit.TrackPublication) -> None:
                nonlocal received
                async with session.audio.stream(pub, frame_ms=frame_ms) as stream:
                    async for chunk in stream:
                        received += len(chunk.samples)

            async def read_raw(pub: lkkit.TrackPublication) -> None:
                nonlocal received
                track = pub.sdk.track
                assert track is not None
                stream = rtc.AudioStream(
                    track, sample_rate=RATE, num_channels=1, frame_size_ms=frame_ms
                )
                try:
                    async for event in stream:
                        data = np.frombuffer(event.frame.data, dtype=np.int16)
                        received += len(data)
                finally:
                    await stream.aclose()

            reader = read_lkkit if use_lkkit else read_raw
            tasks = [asyncio.create_task(reader(p)) for p in publications]
            await asyncio.sleep(1.0)
            cpu, start_received = time.process_time(), received
            await asyncio.sleep(seconds)
            cpu, got = time.process_time() - cpu, received - start_received
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await peer.wait()
    return cpu / max(got / RATE, 1e-9)


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    tracks, seconds = (8, 4.0) if quick else (8, 10.0)
    rows = []
    # 1. CPU per published track-second (no receiver: the publishing process alone).
    lk_cpu = raw_cpu = 0.0
    for _ in range(1 if quick else 3):
        raw_cpu += await _raw_publish(
            server.url, token(server, room_name("c"), "tx"), tracks, seconds
        )
        lk_cpu += await _lkkit_publish(
            server.url, token(server, room_name("c"), "tx"), tracks, seconds
        )
    per = tracks * seconds * (1 if quick else 3)
    rows.append(
        Comparison(
            f"CPU per published track-second, {tracks} tracks",
            "s",
            lk_cpu / per,
            raw_cpu / per,
            baseline_name="raw 10 ms capture loop",
            target="<= 1.0",
        )
    )
    # 2. Most tracks without underrun (bounded: a few seconds per step, capped).
    steps = [4, 8, 16, 24, 32, 48, 64] if quick else [4, 8, 16, 24, 32, 48, 64, 96, 128]
    step_s = 3.0 if quick else 6.0
    raw_best, raw_log = await _max_tracks(server, _raw_publish, steps, step_s)
    lk_best, lk_log = await _max_tracks(server, _lkkit_publish, steps, step_s)
    print("raw steps:", "; ".join(raw_log))
    print("lkkit steps:", "; ".join(lk_log))
    rows.append(
        Comparison(
            "tracks published without underrun",
            "tracks",
            lk_best,
            raw_best,
            baseline_name="raw 10 ms capture loop",
            target=">= 4.0",
            lower_is_better=False,
        )
    )
    # 3. Receive-side cost per second of audio, 4 tracks.
    for frame_ms in (10, 50):
        lk = await _receive_cost(server, 4, 3.0 if quick else 8.0, frame_ms, True)
        raw = await _receive_cost(server, 4, 3.0 if quick else 8.0, frame_ms, False)
        rows.append(
            Comparison(
                f"receive CPU per audio-second, {frame_ms} ms chunks",
                "s",
                lk,
                raw,
                baseline_name="raw AudioStream",
                target="<= 1.0",
            )
        )
    report("Audio", rows)


if __name__ == "__main__":
    mode, url, tok, n, secs = sys.argv[1:6]
    if mode == "receive":
        asyncio.run(_receive(url, tok, int(n), float(secs), int(sys.argv[6])))
    else:
        asyncio.run(_publish_peer(url, tok, int(n), float(secs)))
