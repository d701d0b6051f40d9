"""Audio: publish CPU per track-second, most tracks without underrun, receive cost.

lkkit's publisher (10 ms frames on the wire, up to 50 ms handed over per capture)
against the raw SDK loop SPEC describes (`AudioSource(queue_size_ms=50)` and one
10 ms `capture_frame` per frame). Underruns are counted by a receiver in a separate
process: a silent 10 ms block inside a continuous tone is a frame the publisher
failed to deliver in time. Every step prints the CPU (in cores) of the publisher,
the receiver and the server, which share the machine's cores.

The track search decides: each track count is run 3 times and judged by the median,
and the whole search runs twice, on a quiet machine and with a controlled background
load (a process spinning on one core, pinned to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import numpy as np
from livekit import rtc

import lkkit
from lkkit._audio import AudioPublisher
from lkkit._audio._sources import sine_tone
from lkkit.testing import LocalLiveKitServer

from ._harness import Comparison, cpu_seconds, report, room_name, token

RATE = 48_000
SILENT_PEAK = 100  # int16 peak at or below which a 10 ms block counts as silence
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


async def _publish_raw_sources(
    room: rtc.Room, tracks: int, *, queue_ms: int
) -> list[rtc.AudioSource]:
    """Publish `tracks` raw microphone tracks, then let them settle for 1 s."""
    sources = []
    for i in range(tracks):
        source = rtc.AudioSource(RATE, 1, queue_size_ms=queue_ms)
        track = rtc.LocalAudioTrack.create_audio_track(f"t{i}", source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        sources.append(source)
    await asyncio.sleep(1.0)
    return sources


async def _raw_publish(url: str, tok: str, tracks: int, seconds: float) -> float:
    room = rtc.Room()
    await room.connect(url, tok)
    try:
        sources = await _publish_raw_sources(room, tracks, queue_ms=50)

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


async def _floor_publish(url: str, tok: str, tracks: int, seconds: float) -> float:
    """The native floor: raw sources with a 500 ms queue fed 500 ms per capture, so
    Python does two captures per second per track and the rest is native work (the
    10 ms send task, Opus encoding, RTP)."""
    room = rtc.Room()
    await room.connect(url, tok)
    try:
        sources = await _publish_raw_sources(room, tracks, queue_ms=500)
        half_second = rtc.AudioFrame(np.resize(TONE, RATE // 2).tobytes(), RATE, 1, RATE // 2)

        async def feed(source: rtc.AudioSource) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await source.capture_frame(half_second)

        cpu = time.process_time()
        await asyncio.gather(*(feed(s) for s in sources))
        return time.process_time() - cpu
    finally:
        await room.disconnect()


Publisher = Callable[[str, str, int, float], Awaitable[float]]


# -- the receiver process ------------------------------------------------------------------


async def _receive(url: str, tok: str, tracks: int, seconds: float, frame_ms: int) -> None:
    """Peer mode: count the silent 10 ms blocks inside each track's tone.

    Only holes count: silent blocks after a track's first loud block and before its
    last one, so the publisher's start-up and its end (however late they come on a
    loaded machine) are never mistaken for underruns. Kept cheap, so that it takes
    as little CPU as it can from the publisher: the SDK's native AudioStream
    (decoding is unavoidable), 100 ms chunks, an int16 peak per 10 ms block.
    Ends when the publisher leaves, or `seconds` + 60 s at the latest.
    """
    room = rtc.Room()
    streams: list[rtc.AudioStream] = []
    left = asyncio.Event()
    room.on(
        "track_subscribed",
        lambda track, *_: streams.append(
            rtc.AudioStream(track, sample_rate=RATE, num_channels=1, frame_size_ms=frame_ms)
        ),
    )
    room.on("participant_disconnected", lambda *_: left.set())
    await room.connect(url, tok)
    silent = 0
    blocks = 0

    async def read(stream: rtc.AudioStream) -> None:
        nonlocal silent, blocks
        started = False
        pending = 0  # silent blocks since the last loud one: a hole once sound resumes
        async for event in stream:
            samples = np.frombuffer(event.frame.data, dtype=np.int16).reshape(-1, 480)
            loud = np.abs(samples).max(axis=1) > SILENT_PEAK
            if not started:
                first = np.flatnonzero(loud)
                if not len(first):
                    continue
                started = True
                loud = loud[first[0] :]
            where = np.flatnonzero(loud)
            if not len(where):
                pending += len(loud)
                continue
            confirmed = int(where[-1]) + 1
            silent += pending + confirmed - len(where)
            blocks += pending + confirmed
            pending = len(loud) - confirmed

    deadline = time.monotonic() + 20
    while len(streams) < tracks and time.monotonic() < deadline:  # noqa: ASYNC110 bounded poll
        await asyncio.sleep(0.05)
    readers = [asyncio.create_task(read(s)) for s in streams]
    cpu, start = time.process_time(), time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(left.wait(), seconds + 60)
    cpu, elapsed = time.process_time() - cpu, time.monotonic() - start
    for reader in readers:
        reader.cancel()
    result = {"silent": silent, "blocks": blocks, "tracks": len(streams), "cores": cpu / elapsed}
    print(json.dumps(result), flush=True)
    await room.disconnect()


async def _publish_peer(url: str, tok: str, tracks: int, seconds: float) -> None:
    """Peer mode: publish tone tracks with the raw SDK (for the receive benchmark)."""
    await _raw_publish(url, tok, tracks, seconds)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.bench_audio", *args, stdout=asyncio.subprocess.PIPE
    )


@dataclass(frozen=True)
class Step:
    """One step of the track-count search, with each process's CPU use."""

    tracks: int
    silent: int
    blocks: int
    publisher_cores: float
    receiver_cores: float
    server_cores: float

    @property
    def ok(self) -> bool:
        # Tolerate one silent block per 2,000 (noise from other load on the machine).
        return self.silent >= 0 and self.silent * 2000 <= self.blocks

    def __str__(self) -> str:
        return (
            f"{self.tracks}: {self.silent}/{self.blocks} silent, cores used: publisher "
            f"{self.publisher_cores:.2f}, receiver {self.receiver_cores:.2f}, "
            f"server {self.server_cores:.2f}"
        )


async def _underruns(
    server: LocalLiveKitServer, publish: Publisher, tracks: int, seconds: float
) -> Step:
    room = room_name("audio")
    peer = await _spawn(
        "receive", server.url, token(server, room, "rx"), str(tracks), str(seconds), "100"
    )
    assert server.pid is not None
    server_cpu = cpu_seconds(server.pid)
    publish_seconds = seconds + 3.0
    try:
        publisher_cpu = await publish(
            server.url, token(server, room, "tx"), tracks, publish_seconds
        )
        server_cpu = cpu_seconds(server.pid) - server_cpu
        out, _ = await asyncio.wait_for(peer.communicate(), 90)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    result = json.loads(out.decode().strip().splitlines()[-1])
    silent = result["silent"] if result["tracks"] >= tracks else -1
    return Step(
        tracks,
        silent,
        result["blocks"],
        publisher_cpu / publish_seconds,
        result["cores"],
        server_cpu / (publish_seconds + 1.0),  # publishing, plus its set-up
    )


async def _max_tracks(
    server: LocalLiveKitServer, publish: Publisher, steps: list[int], seconds: float, reps: int
) -> tuple[int, list[Step]]:
    """The most tracks whose median run (of `reps`) has no underrun, and the median
    step of each count tried (the search stops at the first failing count)."""
    best = 0
    log = []
    for tracks in steps:
        runs = [await _underruns(server, publish, tracks, seconds) for _ in range(reps)]
        runs.sort(key=lambda step: (step.silent < 0, step.silent / max(step.blocks, 1)))
        step = runs[len(runs) // 2]
        log.append(step)
        if not step.ok:
            break
        best = tracks
    return best, log


@contextlib.contextmanager
def _one_core_busy() -> Iterator[None]:
    """A process spinning on the last core (pinned to it) for the duration."""
    core = max(os.sched_getaffinity(0))
    spin = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True:\n    pass\n"
    process = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.5)  # let it start spinning
        yield
    finally:
        process.kill()
        process.wait()


# -- receive-side cost ---------------------------------------------------------------------


async def _receive_cost(
    server: LocalLiveKitServer, tracks: int, seconds: float, frame_ms: int, use_lkkit: bool
) -> tuple[float, float]:
    """CPU seconds per second of audio received (`tracks` tracks): this whole process,
    and its event-loop thread alone (where lkkit and the raw SDK differ)."""
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
            cpu, loop_cpu = time.process_time(), time.thread_time()
            start_received = received
            await asyncio.sleep(seconds)
            cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
            got = received - start_received
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await peer.wait()
    audio_seconds = max(got / RATE, 1e-9)
    return cpu / audio_seconds, loop_cpu / audio_seconds


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    tracks, seconds = (8, 4.0) if quick else (8, 10.0)
    reps = 1 if quick else 3
    rows = []
    # 1. CPU per published track-second (no receiver: the publishing process alone),
    #    with the native floor for reference: 500 ms captures, almost no Python work.
    lk_cpu = raw_cpu = floor_cpu = 0.0
    for _ in range(reps):
        raw_cpu += await _raw_publish(
            server.url, token(server, room_name("c"), "tx"), tracks, seconds
        )
        lk_cpu += await _lkkit_publish(
            server.url, token(server, room_name("c"), "tx"), tracks, seconds
        )
        floor_cpu += await _floor_publish(
            server.url, token(server, room_name("c"), "tx"), tracks, seconds
        )
    per = tracks * seconds * reps
    rows.append(
        Comparison(
            f"CPU per published track-second, {tracks} tracks",
            "s",
            lk_cpu / per,
            raw_cpu / per,
            baseline_name="raw 10 ms capture loop",
            target="<= 0.6",
        )
    )
    rows.append(
        Comparison(
            "  the same, vs the native floor",
            "s",
            lk_cpu / per,
            floor_cpu / per,
            baseline_name="raw, 500 ms captures (native cost only)",
            target="(reference)",
        )
    )
    # 2. Most tracks without underrun: the median of 3 runs per count, quiet and with
    #    one core kept busy (bounded: a few seconds per run, capped counts).
    steps = [4, 8, 12, 16, 24, 32, 48] if quick else [4, 8, 12, 16, 20, 24, 32, 40, 48, 64]
    step_s = 3.0 if quick else 6.0
    for condition, target in (("quiet", ">= 1.5"), ("one core busy", ">= 1.0, >= 8 tracks")):
        with _one_core_busy() if condition != "quiet" else contextlib.nullcontext():
            raw_best, raw_log = await _max_tracks(server, _raw_publish, steps, step_s, 3)
            lk_best, lk_log = await _max_tracks(server, _lkkit_publish, steps, step_s, 3)
        print(f"raw steps ({condition}, medians of 3):\n  " + "\n  ".join(map(str, raw_log)))
        print(f"lkkit steps ({condition}, medians of 3):\n  " + "\n  ".join(map(str, lk_log)))
        rows.append(
            Comparison(
                f"tracks published without underrun, {condition}",
                "tracks",
                lk_best,
                raw_best,
                baseline_name="raw 10 ms capture loop",
                target=target,
                lower_is_better=False,
            )
        )
    # 3. Receive-side cost per second of audio, 4 tracks; lkkit and raw alternate
    #    (the machine's other load drifts), repeated.
    rx_s = 3.0 if quick else 8.0
    for frame_ms in (10, 50):
        lk = [0.0, 0.0]
        raw = [0.0, 0.0]
        for rep in range(2 * reps):
            for use_lkkit in (True, False) if rep % 2 == 0 else (False, True):
                cost = await _receive_cost(server, 4, rx_s, frame_ms, use_lkkit)
                total = lk if use_lkkit else raw
                total[0] += cost[0]
                total[1] += cost[1]
        rows.append(
            Comparison(
                f"receive CPU per audio-second, {frame_ms} ms chunks",
                "s",
                lk[0],
                raw[0],
                baseline_name="raw AudioStream",
                target="<= 1.0",
            )
        )
        rows.append(
            Comparison(
                "  of which the event-loop thread",
                "s",
                lk[1],
                raw[1],
                baseline_name="raw AudioStream",
                target="(reference)",
            )
        )
    report("Audio", rows)


if __name__ == "__main__":
    mode, url, tok, n, secs = sys.argv[1:6]
    if mode == "receive":
        asyncio.run(_receive(url, tok, int(n), float(secs), int(sys.argv[6])))
    else:
        asyncio.run(_publish_peer(url, tok, int(n), float(secs)))
