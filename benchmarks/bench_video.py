"""Video: publish CPU per frame, receive CPU per RGB frame, frame latency, most tracks.

lkkit against the raw SDK, in the same run, with the same frames, sizes, pacing and
publish options (VP8, simulcast, the JS client's preset bitrate for the size). The
frames are a slowly panning pattern, easy enough that the encoder sends every frame
of every layer at the preset bitrate (a harder one makes VP8 drop frames).

One artefact of this loopback is handled everywhere: the publisher's send-side
bandwidth estimate sometimes starts low and then climbs for tens of seconds, whoever
publishes, and an encoder held back by it sends fewer frames (at less CPU each). A
run in which the encoder's statistics show the full-size layer encoding less than
80% of the frames while given less than 90% of the preset bitrate (and not because
WebRTC scaled it down for lack of CPU) is run again, twice at most (once in the
track-count search); the runs discarded are printed.

1. Publish CPU per frame at 1280x720 and 1920x1080, 30 fps, RGBA numpy frames:
   `VideoPublisher.write` against the raw loop a competent SDK user writes,
   `VideoSource.capture_frame(VideoFrame(w, h, RGBA, frame.reshape(-1).data))` paced
   by `asyncio.sleep` to the same schedule. That memoryview is read in place; the SDK
   copies a memoryview whose length is not its object's `len()`, which is what
   `frame.data` of a 3-D array gives. This process's CPU only (`time.process_time`:
   all its threads, the encoder's included), and its event-loop thread's, where lkkit
   and the raw SDK differ. Nobody subscribes: dynacast is off (lkkit's and the SDK's
   default), so the encoder encodes every layer whether or not anyone watches (its
   statistics show it: frames encoded in the full-size layer), and a subscriber
   process would only take CPU from the encoder on these 2 cores. The encoder's share
   moves from run to run, so lkkit and raw alternate 5 times (1 with `--quick`).
   Also timed: one capture call alone (back to back, on the event-loop thread, lkkit
   and raw taking turns), the wrapper's own cost plus the native RGBA to I420
   conversion each capture does synchronously, against the flat memoryview and the
   naive `frame.tobytes()` (a copy); and at 160x90, where the conversion is small,
   which is the sharpest view of lkkit's own cost per frame.
2. Receive CPU per frame converted to RGB, 720p30: a receiver process alone per
   variant, its own CPU: lkkit `session.video.stream(format=RGB)` against raw
   `rtc.VideoStream(track, format=RGB24)` + `np.frombuffer` and raw
   `rtc.VideoStream(track)` + `frame.convert(RGB24)`; the better raw variant is the
   baseline. Each receiver is fed by a publisher of its kind (lkkit or raw, the same
   stream) in this process; a run whose receiver did not get the full-size layer at
   full rate is also run again.
3. End-to-end latency, in the same runs: the publisher draws the frame number into
   the pixels (12 Gray-coded black or white bars in the top quarter) and notes when
   its capture call returned; the receiver reads the number back and notes when its
   reader got the frame (`time.monotonic` is system-wide, so the two processes
   compare). lkkit publisher to lkkit receiver against raw publisher to the raw
   receiver chosen in 2.
4. The most 720p30 tracks one process publishes at full rate: every track gets
   >= 0.9 x 30 frames written per second, and a subscriber (another process, which
   samples its WebRTC statistics: frames decoded, so no Python work per frame)
   decodes >= 0.9 x 30 per second of each (the medians of the runs). Counts are tried
   in order until one fails for both; each side's result is the most it passed.

Each measurement runs 3 times (5 in 1., 1 with `--quick`); lkkit and raw alternate,
the medians are reported and every run is printed. The machine's 2 cores are shared by the
publisher, the receiver and the server: absolute numbers move with its load, the
ratios much less.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from livekit import rtc

import lkkit
from lkkit.testing import LocalLiveKitServer

from ._harness import Comparison, percentile, report, room_name, token
from .bench_audio import cpu_seconds

UInt8Array = npt.NDArray[np.uint8]
Size = tuple[int, int]

FPS = 30
HD: Size = (1280, 720)
FULL_HD: Size = (1920, 1080)
TINY: Size = (160, 90)  # where a capture call costs little more than the wrapper
PRESETS = {
    HD: lkkit.VideoPresets.H720,
    FULL_HD: lkkit.VideoPresets.H1080,
    TINY: lkkit.VideoPresets.H90,
}
CLIP = 16  # frames of the moving pattern, which repeats seamlessly
SHIFT = 4  # pixels it moves per frame (a slow pan; CLIP * SHIFT is its period)
BITS = 12  # frame number bars: numbers repeat after 4096 frames (136 s)
FULL_RATE = 0.9 * FPS
CPU_LIMITED = 1  # QualityLimitationReason.LIMITATION_CPU of the SDK's statistics
CAPTURES = 60  # capture calls timed back to back, per turn
EXIT_GRACE = 1.0  # a raw peer process waits this long after leaving before it exits
# (the native teardown goes on after `disconnect`; exiting during it aborts now and
# then: lkkit sessions wait the same at exit)
TAIL = 0.6  # seconds published after a window, so the sink's samples cover it


# -- frames ------------------------------------------------------------------------------


@functools.cache
def _clip(width: int, height: int) -> tuple[UInt8Array, ...]:
    """`CLIP` RGBA frames of a pattern panning right by `SHIFT` pixels a frame,
    seamless (every part of it is periodic in x with period `CLIP * SHIFT`)."""
    period = CLIP * SHIFT
    y, x = np.mgrid[0:height, 0:width]
    base = np.empty((height, width, 4), np.uint8)
    base[..., 0] = 128 + 90 * np.sin(2 * np.pi * (x / period + y / 256))
    base[..., 1] = y * 255 // height
    base[..., 2] = np.where((x // (period // 2) + y // (period // 2)) % 2 == 0, 190, 70)
    base[..., 3] = 255
    return tuple(np.roll(base, k * SHIFT, axis=1) for k in range(CLIP))


def _draw_number(frame: UInt8Array, n: int) -> None:
    """Draw `n` (mod 2**BITS) into the top quarter of `frame` as `BITS` black or white
    bars, most significant first, Gray-coded (one bar changes from a frame to the
    next, which keeps the encoder's work close to that of the plain pattern)."""
    n %= 2**BITS
    gray = n ^ (n >> 1)
    band = frame[: frame.shape[0] // 4]
    width = frame.shape[1]
    for i in range(BITS):
        band[:, i * width // BITS : (i + 1) * width // BITS, :3] = (
            255 if (gray >> (BITS - 1 - i)) & 1 else 0
        )


def _read_number(rgb: UInt8Array) -> int:
    """The number `_draw_number` drew (mod 2**BITS), read back from a (height, width,
    3) frame of any size (a simulcast layer is smaller)."""
    height, width = rgb.shape[:2]
    row = rgb[height // 8]
    gray = 0
    for i in range(BITS):
        gray = (gray << 1) | int(row[int((i + 0.5) * width / BITS), 1] > 128)
    n = 0
    while gray:
        n ^= gray
        gray >>= 1
    return n


# -- publishers (in this process) --------------------------------------------------------


@dataclass
class Feeds:
    """What publishing tracks reports while it runs."""

    counts: list[int]  # frames written, per track
    sids: list[str] = field(default_factory=list)
    tracks: list[rtc.Track] = field(default_factory=list)
    sent: dict[int, float] = field(default_factory=dict)  # frame number: capture returned


@dataclass(frozen=True)
class Layer:
    """One simulcast layer of a published track, as its encoder's statistics say."""

    frames: int  # encoded so far
    width: int
    target: float  # bits per second the encoder is given
    cpu_limited: bool  # WebRTC scaled it down for lack of CPU


Layers = dict[str, Layer]  # by rid


async def _encoded(tracks: Sequence[rtc.Track]) -> list[Layers]:
    """Per track, what its encoder has produced in each simulcast layer so far."""
    result = []
    for track in tracks:
        stats = await track.get_stats()
        outbound = [s.outbound_rtp.outbound for s in stats if s.HasField("outbound_rtp")]
        result.append(
            {
                o.rid: Layer(
                    o.frames_encoded,
                    o.frame_width,
                    o.target_bitrate,
                    o.quality_limitation_reason == CPU_LIMITED,
                )
                for o in outbound
            }
        )
    return result


def _top_layer(before: Layers, after: Layers) -> tuple[int, Layer | None]:
    """Frames encoded between two samples in the layer widest at the second, and that
    layer then."""
    if not after:
        return 0, None
    rid = max(after, key=lambda r: after[r].width)
    earlier = before.get(rid)
    return after[rid].frames - (earlier.frames if earlier else 0), after[rid]


def _held_back(
    size: Size, before: Sequence[Layers], after: Sequence[Layers], seconds: float
) -> bool:
    """Whether the send-side bandwidth estimate held some track's encoder back between
    two samples: its full-size layer encoded less than 80% of the frames, and was given
    less than 90% of the preset's bitrate, and not because WebRTC scaled it down for
    lack of CPU. (On this loopback the estimate sometimes starts low and then climbs
    for tens of seconds, whoever publishes.)"""
    wanted = 0.9 * PRESETS[size].max_bitrate
    for earlier, later in zip(before, after, strict=True):
        frames, top = _top_layer(earlier, later)
        if top is None:
            return True
        if frames < 0.8 * FPS * seconds and top.target < wanted and not top.cpu_limited:
            return True
    return False


Publisher = Callable[[str, str, int, Size, bool], contextlib.AbstractAsyncContextManager[Feeds]]


async def _stop(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel `tasks`; raise the first error one of them ended with."""
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            raise result


@contextlib.asynccontextmanager
async def _lkkit_publisher(
    url: str, tok: str, tracks: int, size: Size, numbered: bool
) -> AsyncIterator[Feeds]:
    """`tracks` tracks of `size`, each fed by its own task through `pub.write`."""
    width, height = size
    clip = _clip(width, height)
    feeds = Feeds([0] * tracks)
    async with lkkit.connect(url, tok) as session, contextlib.AsyncExitStack() as stack:
        pubs = [
            await stack.enter_async_context(
                session.video.publish(
                    f"v{i}", width=width, height=height, fps=FPS, preset=PRESETS[size]
                )
            )
            for i in range(tracks)
        ]
        feeds.sids = [pub.publication.sid for pub in pubs]
        feeds.tracks = [t for pub in pubs if (t := pub.publication.sdk.track) is not None]

        async def feed(i: int, pub: lkkit.VideoPublisher) -> None:
            n = 0
            while True:
                frame = clip[n % CLIP]
                if numbered:
                    _draw_number(frame, n)
                await pub.write(frame)
                if numbered:
                    feeds.sent[n % 2**BITS] = time.monotonic()
                feeds.counts[i] += 1
                n += 1

        tasks = [asyncio.create_task(feed(i, pub)) for i, pub in enumerate(pubs)]
        try:
            yield feeds
        finally:
            await _stop(tasks)


def _raw_options(size: Size) -> rtc.TrackPublishOptions:
    """lkkit's options for the size, spelled with the SDK."""
    preset = PRESETS[size]
    return rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_CAMERA,
        simulcast=True,
        video_codec=rtc.VideoCodec.VP8,
        video_encoding=rtc.VideoEncoding(
            max_bitrate=preset.max_bitrate, max_framerate=min(preset.max_framerate, FPS)
        ),
    )


@contextlib.asynccontextmanager
async def _raw_publisher(
    url: str, tok: str, tracks: int, size: Size, numbered: bool
) -> AsyncIterator[Feeds]:
    """The raw SDK loop: `capture_frame` of a `VideoFrame` over the numpy frame, paced
    like lkkit (frame n due at start + n / fps; a late frame restarts the schedule)."""
    width, height = size
    clip = _clip(width, height)
    feeds = Feeds([0] * tracks)
    room = rtc.Room()
    await room.connect(url, tok)
    sources: list[rtc.VideoSource] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for i in range(tracks):
            source = rtc.VideoSource(width, height)
            track = rtc.LocalVideoTrack.create_video_track(f"v{i}", source)
            publication = await room.local_participant.publish_track(track, _raw_options(size))
            sources.append(source)
            feeds.sids.append(publication.sid)
            feeds.tracks.append(track)

        async def feed(i: int, source: rtc.VideoSource) -> None:
            period = 1.0 / FPS
            due = time.monotonic()
            n = 0
            while True:
                now = time.monotonic()
                if now < due:
                    await asyncio.sleep(due - now)
                elif now - due > period:
                    due = now
                frame = clip[n % CLIP]
                if numbered:
                    _draw_number(frame, n)
                data = frame.reshape(-1).data  # read in place (see the module's docstring)
                source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, data))
                if numbered:
                    feeds.sent[n % 2**BITS] = time.monotonic()
                feeds.counts[i] += 1
                n += 1
                due += period

        tasks = [asyncio.create_task(feed(i, s)) for i, s in enumerate(sources)]
        yield feeds
    finally:
        await _stop(tasks)
        await room.disconnect()
        for source in sources:
            await source.aclose()


PUBLISHERS: dict[str, Publisher] = {
    "lkkit": _lkkit_publisher,
    "raw": _raw_publisher,
}


# -- the receiver processes --------------------------------------------------------------


async def _sink(url: str, tok: str) -> None:
    """Peer mode: subscribe to every video track and sample each one's WebRTC receive
    statistics (frames decoded, frame width) 4 times a second, until a line on stdin;
    then print the samples by track sid. Decoding happens natively whether or not
    anything reads the frames, so the sink adds no per-frame Python work (a Python
    reader on this busy machine would drop frames of its own)."""
    room = rtc.Room()
    tracks: dict[str, rtc.Track] = {}

    def subscribed(track: rtc.Track, publication: rtc.RemoteTrackPublication, *_: Any) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            tracks[publication.sid] = track

    room.on("track_subscribed", subscribed)
    room.on("track_unsubscribed", lambda _, publication, *__: tracks.pop(publication.sid, None))
    await room.connect(url, tok)
    print("ready", flush=True)
    samples: dict[str, list[tuple[float, int, int]]] = {}
    stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    while not stop.done():
        for sid, track in list(tracks.items()):
            with contextlib.suppress(Exception):  # unsubscribed meanwhile
                stats = await track.get_stats()
                inbound = [s.inbound_rtp.inbound for s in stats if s.HasField("inbound_rtp")]
                if inbound:
                    decoded = sum(i.frames_decoded for i in inbound)
                    width = max(i.frame_width for i in inbound)
                    samples.setdefault(sid, []).append((time.monotonic(), decoded, width))
        await asyncio.wait([stop], timeout=0.25)
    print(json.dumps({"samples": samples}), flush=True)
    await room.disconnect()
    await asyncio.sleep(EXIT_GRACE)


RECEIVERS = ("lkkit", "raw RGB24 stream", "raw convert()")
PUBLISHER_OF = {"lkkit": "lkkit", "raw RGB24 stream": "raw", "raw convert()": "raw"}


async def _receive(url: str, tok: str, variant: str, warm: float, seconds: float) -> None:
    """Peer mode: receive the publisher's track as RGB numpy frames the `variant` way,
    read each frame's number; from `warm` seconds after the first frame, for `seconds`,
    count frames and this process's CPU. Prints them with (number, time got, width) of
    each frame."""
    frames = 0
    got: list[tuple[int, float, int]] = []
    first = asyncio.Event()

    def on_frame(rgb: UInt8Array) -> None:
        nonlocal frames
        got.append((_read_number(rgb), time.monotonic(), rgb.shape[1]))
        frames += 1
        first.set()

    async def window() -> None:
        await asyncio.wait_for(first.wait(), 30)
        await asyncio.sleep(warm)
        cpu, loop_cpu, n0, k0 = time.process_time(), time.thread_time(), frames, len(got)
        await asyncio.sleep(seconds)
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
        result = {"cpu": cpu, "loop_cpu": loop_cpu, "frames": frames - n0, "got": got[k0:]}
        print(json.dumps(result), flush=True)

    if variant == "lkkit":
        async with lkkit.connect(url, tok) as session:
            peer = await session.wait_for_participant("tx")
            async with session.video.stream(peer, format=lkkit.VideoFormat.RGB) as stream:

                async def read_lkkit() -> None:
                    async for frame in stream:
                        on_frame(frame.pixels)

                reader = asyncio.create_task(read_lkkit())
                await window()
                await _stop([reader])
        return

    room = rtc.Room()
    tracks: asyncio.Queue[rtc.Track] = asyncio.Queue()
    room.on("track_subscribed", lambda track, *_: tracks.put_nowait(track))
    await room.connect(url, tok)
    track = await asyncio.wait_for(tracks.get(), 30)
    convert = variant == "raw convert()"
    raw_stream = rtc.VideoStream(
        track, capacity=2, format=None if convert else rtc.VideoBufferType.RGB24
    )

    async def read_raw() -> None:
        async for event in raw_stream:
            frame = event.frame
            if convert:
                frame = frame.convert(rtc.VideoBufferType.RGB24)
            rgb = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
            on_frame(rgb)

    reader = asyncio.create_task(read_raw())
    await window()
    await _stop([reader])
    await raw_stream.aclose()
    await room.disconnect()
    await asyncio.sleep(EXIT_GRACE)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.bench_video",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


def _result(out: bytes, process: asyncio.subprocess.Process, what: str) -> Any:
    """The JSON a peer process printed last."""
    lines = out.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"the {what} process printed nothing (exit code {process.returncode})")
    return json.loads(lines[-1])


class Sink:
    """A sink process in a room: `async with Sink(...) as sink`, then ask it what each
    track's subscriber decoded."""

    def __init__(self, server: LocalLiveKitServer, room: str) -> None:
        self._server = server
        self._room = room
        self._process: asyncio.subprocess.Process | None = None
        self.samples: dict[str, list[tuple[float, int, int]]] = {}

    async def __aenter__(self) -> Sink:
        self._process = await _spawn(
            "sink", self._server.url, token(self._server, self._room, "sink")
        )
        assert self._process.stdout is not None
        ready = await asyncio.wait_for(self._process.stdout.readline(), 60)
        if ready.strip() != b"ready":
            raise RuntimeError(f"the sink did not start: {ready!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        process = self._process
        assert process is not None
        try:
            out, _ = await asyncio.wait_for(process.communicate(b"stop\n"), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        result = _result(out, process, "sink")
        self.samples = result["samples"]

    def received_fps(self, sids: Sequence[str], start: float, end: float) -> list[float]:
        """Frames per second the sink decoded of each track between `start` and `end`
        (its frame counter, interpolated between samples)."""
        rates = []
        for sid in sids:
            samples = self.samples.get(sid, [])
            times = [t for t, _, _ in samples]
            counts = [n for _, n, _ in samples]
            if len(samples) < 2 or times[0] > start or times[-1] < end:
                rates.append(0.0)  # not received through the whole window
                continue
            decoded = np.interp(end, times, counts) - np.interp(start, times, counts)
            rates.append(float(decoded) / (end - start))
        return rates

    def widths(self, sids: Sequence[str], start: float, end: float) -> list[int]:
        """The frame widths the sink's samples saw between `start` and `end`."""
        return [w for sid in sids for t, _, w in self.samples.get(sid, ()) if start <= t <= end]


# -- 1. publish CPU ----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One publisher's measured window."""

    cpu: float  # this process, seconds
    loop_cpu: float  # its event-loop thread, seconds
    written: list[int]  # frames per track
    encoded: list[int]  # frames of the widest simulcast layer, per track
    width: int  # the narrowest of those layers' widths at the end
    held_back: bool  # by the bandwidth estimate (see `_held_back`)
    start: float
    end: float
    sids: list[str]

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.cpu / max(sum(self.written), 1)

    @property
    def loop_ms_per_frame(self) -> float:
        return 1000 * self.loop_cpu / max(sum(self.written), 1)

    @property
    def encoded_fps(self) -> float:
        """The slowest track's top-layer encoded frame rate."""
        return min(self.encoded) / self.seconds

    def __str__(self) -> str:
        return (
            f"{self.ms_per_frame:5.2f} ({self.loop_ms_per_frame:4.2f}) "
            f"{sum(self.written) / len(self.written) / self.seconds:4.1f}/"
            f"{self.encoded_fps:4.1f}"
        )


async def _publish_window(
    url: str, tok: str, variant: str, tracks: int, size: Size, warm: float, seconds: float
) -> Window:
    """Publish with `variant`; measure from `warm` seconds in, for `seconds`."""
    async with PUBLISHERS[variant](url, tok, tracks, size, False) as feeds:
        await asyncio.sleep(warm)
        encoded = await _encoded(feeds.tracks)
        cpu, loop_cpu, start = time.process_time(), time.thread_time(), time.monotonic()
        written = list(feeds.counts)
        await asyncio.sleep(seconds)
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
        end = time.monotonic()
        written = [now - before for now, before in zip(feeds.counts, written, strict=True)]
        encoded_end = await _encoded(feeds.tracks)
        await asyncio.sleep(TAIL)  # a sink samples past the window's end
    top = [_top_layer(b, a) for b, a in zip(encoded, encoded_end, strict=True)]
    return Window(
        cpu,
        loop_cpu,
        written,
        [frames for frames, _ in top],
        min((layer.width if layer else 0 for _, layer in top), default=0),
        _held_back(size, encoded, encoded_end, end - start),
        start,
        end,
        feeds.sids,
    )


async def _publish_cost(
    server: LocalLiveKitServer, size: Size, variant: str, warm: float, seconds: float
) -> tuple[Window, int]:
    """`variant` publishes one track of `size`, nobody subscribed. A run held back by
    the bandwidth estimate is run again, twice at most. The valid window (or the
    last) and the runs discarded."""
    discarded = 0
    while True:
        room = room_name("vpub")
        window = await _publish_window(
            server.url, token(server, room, "tx"), variant, 1, size, warm, seconds
        )
        if discarded == 2 or not window.held_back:
            return window, discarded
        discarded += 1


async def _capture_calls(
    server: LocalLiveKitServer, size: Size, rounds: int
) -> dict[str, list[float]]:
    """The event-loop thread's CPU per capture call, in microseconds, over `CAPTURES`
    calls back to back (no pacing): the wrapper's own cost plus the native RGBA to
    I420 conversion each capture does synchronously. lkkit's `write_now` and the raw
    `capture_frame` (both ways) take turns, `rounds` times, on two tracks published
    from this process."""
    width, height = size
    clip = _clip(width, height)
    room = room_name("vcap")
    raw_room = rtc.Room()
    source = rtc.VideoSource(width, height)
    calls: dict[str, list[float]] = {"lkkit": [], "raw": [], "raw+copy": []}
    try:
        async with (
            lkkit.connect(server.url, token(server, room, "tx-lkkit")) as session,
            session.video.publish(
                "v", width=width, height=height, fps=FPS, preset=PRESETS[size]
            ) as pub,
        ):
            await raw_room.connect(server.url, token(server, room, "tx-raw"))
            track = rtc.LocalVideoTrack.create_video_track("v", source)
            await raw_room.local_participant.publish_track(track, _raw_options(size))

            def raw(frame: UInt8Array) -> None:
                data = frame.reshape(-1).data
                source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, data))

            def raw_copy(frame: UInt8Array) -> None:
                data = frame.tobytes()
                source.capture_frame(rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, data))

            captures: dict[str, Callable[[UInt8Array], None]] = {
                "lkkit": pub.write_now,
                "raw": raw,
                "raw+copy": raw_copy,
            }
            await asyncio.sleep(0.5)
            for order in _orders(list(captures), rounds):
                for variant in order:
                    capture = captures[variant]
                    cpu = time.thread_time()
                    for n in range(CAPTURES):
                        capture(clip[n % CLIP])
                    calls[variant].append(1e6 * (time.thread_time() - cpu) / CAPTURES)
                    await asyncio.sleep(0.3)  # the encoders catch up
    finally:
        await raw_room.disconnect()
        await source.aclose()
    return calls


# -- 2 and 3. receive CPU and latency ----------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One receiver's measured window."""

    ms_per_frame: float
    loop_ms_per_frame: float
    fps: float
    latencies: list[float]  # ms
    misread: int
    width: int  # the narrowest frame received (a smaller simulcast layer, or adapted)
    held_back: bool  # the publisher, by its bandwidth estimate (see `_held_back`)

    def latency(self, q: float) -> float:
        return percentile(self.latencies, q) if self.latencies else math.nan


async def _receive_run(
    server: LocalLiveKitServer, variant: str, warm: float, seconds: float
) -> Received:
    """One receiver process of `variant`, fed by a publisher of its kind in this
    process."""
    room = room_name("vrx")
    peer = await _spawn(
        "receive", server.url, token(server, room, "rx"), variant, str(warm), str(seconds)
    )
    publisher = PUBLISHERS[PUBLISHER_OF[variant]]
    try:
        async with publisher(server.url, token(server, room, "tx"), 1, HD, True) as feeds:
            await asyncio.sleep(warm)
            before, start = await _encoded(feeds.tracks), time.monotonic()
            out, _ = await asyncio.wait_for(peer.communicate(), warm + seconds + 90)
            after = await _encoded(feeds.tracks)
            held_back = _held_back(HD, before, after, time.monotonic() - start)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    result = _result(out, peer, f"{variant} receiver")
    frames = max(result["frames"], 1)
    latencies = []
    misread = 0
    for n, t, _ in result["got"]:
        sent = feeds.sent.get(n)
        if sent is None or not 0 <= t - sent < 5:
            misread += 1
        else:
            latencies.append(1000 * (t - sent))
    return Received(
        1000 * result["cpu"] / frames,
        1000 * result["loop_cpu"] / frames,
        result["frames"] / seconds,
        latencies,
        misread,
        min((w for _, _, w in result["got"]), default=0),
        held_back,
    )


async def _receive_cost(
    server: LocalLiveKitServer, variant: str, warm: float, seconds: float
) -> tuple[Received, int]:
    """A receive run, run again (twice at most) when the publisher was held back by
    its bandwidth estimate or the receiver did not get the full-size layer at full
    rate (the receiving side's estimate). The valid run (or the last) and the runs
    discarded."""
    discarded = 0
    while True:
        run = await _receive_run(server, variant, warm, seconds)
        valid = not run.held_back and run.width == HD[0] and run.fps >= FULL_RATE
        if discarded == 2 or valid:
            return run, discarded
        discarded += 1


# -- 4. most tracks ----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One run of `tracks` tracks: the slowest track's written, encoded (its full-size
    layer) and received rates."""

    tracks: int
    written_fps: float
    encoded_fps: float
    received_fps: float
    received_width: float  # median width of the frames received (simulcast, adaptation)
    publisher_cores: float
    server_cores: float
    discarded: int  # runs held back by the bandwidth estimate, run again

    @property
    def ok(self) -> bool:
        return self.written_fps >= FULL_RATE and self.received_fps >= FULL_RATE

    def __str__(self) -> str:
        return (
            f"{self.tracks} tracks: slowest track {self.written_fps:.1f} fps written, "
            f"{self.encoded_fps:.1f} encoded, {self.received_fps:.1f} received (median "
            f"width {self.received_width:.0f}), "
            f"cores: publisher {self.publisher_cores:.2f}, server {self.server_cores:.2f}"
            + (f" [{self.discarded} runs discarded]" if self.discarded else "")
        )


async def _tracks_runs(
    server: LocalLiveKitServer, tracks: int, order: Sequence[str], warm: float, seconds: float
) -> dict[str, Step]:
    """Each variant in turn publishes `tracks` 720p30 tracks to one sink."""
    room = room_name("vmax")
    windows = {}
    server_cpu = {}
    assert server.pid is not None
    discarded = dict.fromkeys(order, 0)
    async with Sink(server, room) as sink:
        for variant in order:
            while True:  # a run held back by the bandwidth estimate: again, once at most
                before = cpu_seconds(server.pid)
                tok = token(server, room, f"tx-{variant}-{discarded[variant]}")
                windows[variant] = await _publish_window(
                    server.url, tok, variant, tracks, HD, warm, seconds
                )
                server_cpu[variant] = cpu_seconds(server.pid) - before
                if discarded[variant] == 1 or not windows[variant].held_back:
                    break
                discarded[variant] += 1
    steps = {}
    for variant, w in windows.items():
        widths = sink.widths(w.sids, w.start, w.end)
        steps[variant] = Step(
            tracks,
            min(w.written) / w.seconds,
            w.encoded_fps,
            min(sink.received_fps(w.sids, w.start, w.end)),
            statistics.median(widths) if widths else 0.0,
            w.cpu / w.seconds,
            server_cpu[variant] / (warm + w.seconds + 1.0),  # publishing, plus set-up
            discarded[variant],
        )
    return steps


def _median_step(runs: Sequence[Step]) -> Step:
    return Step(
        runs[0].tracks,
        statistics.median(r.written_fps for r in runs),
        statistics.median(r.encoded_fps for r in runs),
        statistics.median(r.received_fps for r in runs),
        statistics.median(r.received_width for r in runs),
        statistics.median(r.publisher_cores for r in runs),
        statistics.median(r.server_cores for r in runs),
        sum(r.discarded for r in runs),
    )


# -- main --------------------------------------------------------------------------------


def _orders(variants: Sequence[str], reps: int) -> list[list[str]]:
    """`reps` orders of `variants`, each rotated by one (the machine's load drifts)."""
    return [[*variants[r % len(variants) :], *variants[: r % len(variants)]] for r in range(reps)]


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    reps = 1 if quick else 3
    warm = 1.5 if quick else 2.0
    seconds = 3.0 if quick else 5.0
    publish_seconds = 3.0 if quick else 6.0
    rows = []

    # 1. Publish CPU per frame, one track, nobody subscribed (dynacast is off: the
    #    encoder encodes every layer regardless; its statistics show it did).
    #    The whole process's CPU moves from run to run with the encoder's state, so
    #    lkkit and raw alternate 5 times here (the naive loop is only timed per call).
    for size in (HD, FULL_HD):
        label = f"{size[0]}x{size[1]}"
        paced = ["lkkit", "raw"]
        runs: dict[str, list[tuple[Window, int]]] = {v: [] for v in paced}
        for order in _orders(paced, 1 if quick else 5):
            for variant in order:
                runs[variant].append(
                    await _publish_cost(server, size, variant, warm, publish_seconds)
                )
        print(
            f"\npublish {label} @ {FPS} fps, per run: CPU ms/frame (event-loop thread) "
            "written/encoded fps [runs discarded: held back by the bandwidth estimate]"
        )
        for variant, results in runs.items():
            print(
                f"  {variant:9}"
                + "".join(
                    f"  {w}"
                    + (f" width {w.width}" if w.width != size[0] else "")
                    + (f" [{redone}]" if redone else "")
                    for w, redone in results
                )
            )
        calls = await _capture_calls(server, size, 3 * reps)
        print(f"  one capture call ({CAPTURES} back to back), event-loop thread CPU (us):")
        for variant, values in calls.items():
            print(f"  {variant:9}" + "".join(f"  {v:5.0f}" for v in values))
        cost = {v: _median([w.ms_per_frame for w, _ in rs]) for v, rs in runs.items()}
        loop = {v: _median([w.loop_ms_per_frame for w, _ in rs]) for v, rs in runs.items()}
        call = {v: _median(values) for v, values in calls.items()}
        rows += [
            Comparison(
                f"publish CPU per frame, {label}",
                "ms",
                cost["lkkit"],
                cost["raw"],
                baseline_name="raw capture_frame, flat memoryview",
                target="<= 1.0",
            ),
            Comparison(
                "  of which the event-loop thread",
                "ms",
                loop["lkkit"],
                loop["raw"],
                baseline_name="raw capture_frame, flat memoryview",
                target="(reference)",
            ),
            Comparison(
                "  one capture call alone (loop thread)",
                "us",
                call["lkkit"],
                call["raw"],
                baseline_name="raw capture_frame, flat memoryview",
                target="(reference)",
            ),
            Comparison(
                "  the same, vs the naive raw call",
                "us",
                call["lkkit"],
                call["raw+copy"],
                baseline_name="raw capture_frame(frame.tobytes())",
                target="(reference)",
            ),
        ]

    calls = await _capture_calls(server, TINY, 3 * reps)
    print(f"\none capture call at {TINY[0]}x{TINY[1]}, event-loop thread CPU (us):")
    for variant, values in calls.items():
        print(f"  {variant:9}" + "".join(f"  {v:5.0f}" for v in values))
    rows.append(
        Comparison(
            f"one capture call at {TINY[0]}x{TINY[1]} (the wrapper)",
            "us",
            _median(calls["lkkit"]),
            _median(calls["raw"]),
            baseline_name="raw capture_frame, flat memoryview",
            target="(reference)",
        )
    )

    # 2 and 3. Receive CPU per RGB frame and latency, 720p30, receivers alone.
    received: dict[str, list[Received]] = {v: [] for v in RECEIVERS}
    discarded: dict[str, list[int]] = {v: [] for v in RECEIVERS}
    for order in _orders(RECEIVERS, reps):
        for variant in order:
            run, redone = await _receive_cost(server, variant, warm, seconds + 2)
            received[variant].append(run)
            discarded[variant].append(redone)
    print(
        f"\nreceive {HD[0]}x{HD[1]} @ {FPS} fps as RGB, per run: CPU ms/frame "
        "(event-loop thread) fps, latency p50/p99 ms [runs discarded: publisher held "
        "back by the bandwidth estimate, or not the full layer at full rate received]"
    )
    for variant, rx_runs in received.items():
        print(
            f"  {variant:17}"
            + "".join(
                f"  {r.ms_per_frame:5.2f} ({r.loop_ms_per_frame:4.2f}) {r.fps:4.1f}, "
                f"{r.latency(50):4.1f}/{r.latency(99):5.1f}"
                + (f" [{r.misread} misread]" if r.misread else "")
                + (f" [width {r.width}]" if r.width != HD[0] else "")
                + (f" [{redone}]" if redone else "")
                for r, redone in zip(rx_runs, discarded[variant], strict=True)
            )
        )
    rx = {v: _median([r.ms_per_frame for r in rs]) for v, rs in received.items()}
    rx_loop = {v: _median([r.loop_ms_per_frame for r in rs]) for v, rs in received.items()}
    best = min(RECEIVERS[1:], key=rx.__getitem__)
    other = next(v for v in RECEIVERS[1:] if v != best)
    rows += [
        Comparison(
            "receive CPU per RGB frame, 720p30",
            "ms",
            rx["lkkit"],
            rx[best],
            baseline_name=best,
            target="<= 1.0",
        ),
        Comparison(
            "  of which the event-loop thread",
            "ms",
            rx_loop["lkkit"],
            rx_loop[best],
            baseline_name=best,
            target="(reference)",
        ),
        Comparison(
            "  vs the other raw variant",
            "ms",
            rx["lkkit"],
            rx[other],
            baseline_name=other,
            target="(reference)",
        ),
    ]
    for q in (50, 99):  # against the raw variant chosen above (picking the lower of
        # two noisy latencies would bias the baseline down)
        latency = {v: _median([r.latency(q) for r in rs]) for v, rs in received.items()}
        rows.append(
            Comparison(
                f"frame latency p{q}, 720p30",
                "ms",
                latency["lkkit"],
                latency[best],
                baseline_name=f"raw publisher -> {best}",
                target="<= 1.0",
            )
        )

    # 4. Most 720p30 tracks at full rate: counts in order until one fails for both; each
    #    variant's result is the most it passed (a count failed once to a bandwidth
    #    estimate stuck low does not hide a larger count that passed).
    steps = [1, 2, 4, 8] if quick else [1, 2, 3, 4, 6, 8]
    variants = ["lkkit", "raw"]
    best_tracks = dict.fromkeys(variants, 0)
    logs: dict[str, list[str]] = {v: [] for v in variants}
    for tracks in steps:
        per_run: dict[str, list[Step]] = {v: [] for v in variants}
        for order in _orders(variants, reps):
            for variant, step in (await _tracks_runs(server, tracks, order, warm, seconds)).items():
                per_run[variant].append(step)
        passed = False
        for variant in variants:
            step = _median_step(per_run[variant])
            logs[variant].append(
                f"{step}; runs: "
                + ", ".join(
                    f"{r.written_fps:.1f}/{r.encoded_fps:.1f}/{r.received_fps:.1f}"
                    for r in per_run[variant]
                )
            )
            if step.ok:
                best_tracks[variant] = tracks
                passed = True
        if not passed:
            break
    for variant in variants:
        print(
            f"\n{variant} tracks at 720p30 (medians of {reps}; runs: "
            "written/encoded/received fps):\n  " + "\n  ".join(logs[variant])
        )
    rows.append(
        Comparison(
            "720p30 tracks at >= 27 fps written and received",
            "tracks",
            best_tracks["lkkit"],
            best_tracks["raw"],
            baseline_name="raw capture_frame loop",
            target=">= 1.0",
            lower_is_better=False,
        )
    )
    report("Video", rows)


if __name__ == "__main__":
    mode, url, tok = sys.argv[1:4]
    if mode == "sink":
        asyncio.run(_sink(url, tok))
    else:
        variant, warm, secs = sys.argv[4:7]
        asyncio.run(_receive(url, tok, variant, float(warm), float(secs)))
