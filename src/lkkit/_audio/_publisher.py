"""The audio publisher: a published track fed with numpy arrays through a small buffer.

```python
async with session.audio.publish("voice") as pub:      # 48 kHz mono, 10 ms frames
    await pub.write(lkkit.sine_tone(440.0, 1.0))         # takes about 1 s
    await pub.flush()
```

How it stays cheap: the native source slices whatever a capture gives it into 10 ms
wire frames, sent by a native task every 10 ms. lkkit therefore hands it up to
`buffer_ms` of whole frames per capture (50 ms by default) instead of one 10 ms frame,
so one Python await moves five wire frames while the capture still blocks until the
native buffer is back at `buffer_ms`. Captures go to the FFI directly, with one event
subscription per event loop for all publishers (`_ffi.CaptureRouter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import numpy.typing as npt
from livekit import rtc

from .._core import SessionCore
from .._exceptions import (
    AudioFormatError,
    CaptureError,
    ConfigurationError,
    NotConnected,
    SessionStateError,
)
from .._participants import TrackPublication
from .._sdk_compat import dispose_handle, handle_id, proto_ffi
from ._ffi import CaptureRouter, capture_router
from ._frames import AudioFormat, FrameSplitter, Int16Array, to_int16
from ._mix import AudioMix
from ._options import AudioOptions
from ._sources import Resampler

if TYPE_CHECKING:
    from ._session_audio import SessionAudio

__all__ = ["AudioPublisher"]

logger = logging.getLogger("lkkit")

_UNPUBLISH_TIMEOUT_S = 5.0
_EXIT_PLAYOUT_SLACK_S = 1.0


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class AudioPublisher:
    """A published audio track fed with numpy arrays; use it as an `async with` block.

    Created by [`session.audio.publish`][lkkit.SessionAudio.publish]. Entering
    publishes the track; leaving plays out what was written (normal exit) or discards
    it (exception), then unpublishes.

    Writes are serialised: concurrent `write` calls never overlap their native
    captures (overlapping captures fail in the native layer), even when a writer is
    cancelled mid-capture.
    """

    def __init__(
        self,
        audio: SessionAudio,
        name: str,
        fmt: AudioFormat,
        buffer_ms: int,
        capture_ms: int,
        options: AudioOptions,
    ) -> None:
        self._audio = audio
        self._core: SessionCore = audio._core
        self._name = name
        self._format = fmt
        self._buffer_ms = buffer_ms
        self._capture_ms = capture_ms
        self._batch_frames = capture_ms // fmt.frame_ms
        self._options = options
        self._state = _State.NEW
        self._splitter = FrameSplitter(fmt.frame_samples, fmt.channels)
        self._resampler: Resampler | None = None
        self._apm: rtc.AudioProcessingModule | None = None
        self._far_end = FrameSplitter(fmt.samples_10ms, fmt.channels)
        self._source: rtc.AudioSource | None = None
        self._track: rtc.LocalAudioTrack | None = None
        self._publication: rtc.LocalTrackPublication | None = None
        self._lock = asyncio.Lock()
        self._router: CaptureRouter | None = None
        # The capture the native source may still be working on: (async id, its
        # completion, the samples it points to, kept alive until it completes).
        self._inflight: tuple[int, asyncio.Future[str], Int16Array] | None = None
        self._playout_end = 0.0
        self._playout_changed = asyncio.Event()
        self._samples_captured = 0
        self._samples_discarded = 0
        self._interrupts = 0
        # Drains what `write_nowait` queued, in a task the session owns.
        self._pump: asyncio.Task[None] | None = None
        self._mix: AudioMix | None = None
        # `write_nowait` holds at most one buffer of audio in Python, besides the
        # native buffer.
        self._nowait_capacity = fmt.sample_rate * buffer_ms // 1000 * fmt.channels

    # -- properties ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def sample_rate(self) -> int:
        return self._format.sample_rate

    @property
    def channels(self) -> int:
        return self._format.channels

    @property
    def frame_ms(self) -> int:
        return self._format.frame_ms

    @property
    def buffer_ms(self) -> int:
        return self._buffer_ms

    @property
    def capture_ms(self) -> int:
        """Audio handed to the native source per capture (whole frames, <= `buffer_ms`)."""
        return self._capture_ms

    @property
    def options(self) -> AudioOptions:
        return self._options

    @property
    def publication(self) -> TrackPublication:
        """The published track. Raises `SessionStateError` before entering the block."""
        if self._publication is None:
            raise SessionStateError("the audio track is not published (enter the block)")
        return TrackPublication(self._publication)

    def mix(self) -> AudioMix:
        """Mix several sources onto this track, each with its own gain (the same
        [`AudioMix`][lkkit.AudioMix] every call).

        ```python
        mix = pub.mix()
        speech, music = mix.source(gain=1.0), mix.source(gain=0.2)
        ```
        """
        self._require_open()
        if self._mix is None:
            self._mix = AudioMix(self)
        return self._mix

    @property
    def muted(self) -> bool:
        """Whether the track is muted (see [`mute`][lkkit.AudioPublisher.mute])."""
        return self.publication.muted

    async def mute(self) -> None:
        """Mute the track: peers get `TrackMuted` and hear nothing from it; it stays
        published and writes go on being paced (their audio is not sent). Idempotent.

        Raises:
            TrackNotPublished: the track is no longer published.
            SessionStateError: the block was not entered yet.
        """
        await self.publication.mute()

    async def unmute(self) -> None:
        """Unmute the track: peers get `TrackUnmuted` and its audio again. Idempotent."""
        await self.publication.unmute()

    @property
    def pending_samples(self) -> int:
        """Samples per channel written but not yet captured (less than one frame at rest)."""
        return self._splitter.pending // self._format.channels

    @property
    def samples_captured(self) -> int:
        """Samples per channel handed to the native source so far (silence padding included)."""
        return self._samples_captured

    @property
    def queued_duration(self) -> float:
        """Estimated seconds of captured audio not yet sent (an estimate from timestamps)."""
        return max(0.0, self._playout_end - time.monotonic())

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> AudioPublisher:
        if self._state is not _State.NEW:
            raise SessionStateError(
                f"an audio publisher can be entered once; it is {self._state.value}"
            )
        self._core.require_connected()
        self._state = _State.OPEN
        loop = asyncio.get_running_loop()
        self._router = capture_router(loop)
        self._router.acquire()
        self._audio._publishers.add(self)
        self._source = rtc.AudioSource(
            self._format.sample_rate,
            self._format.channels,
            queue_size_ms=self._buffer_ms,
            loop=loop,
        )
        self._apm = self._options._processing_module()
        try:
            self._track = rtc.LocalAudioTrack.create_audio_track(self._name, self._source)
            self._publication = await self._core.publish_track(
                self._track, self._options._publish_options()
            )
        except BaseException:
            await self._release(unpublish=False)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state is not _State.OPEN:
            return
        try:
            if exc_type is None:
                with contextlib.suppress(NotConnected):
                    await self.flush()
                    with anyio.move_on_after(self.queued_duration + _EXIT_PLAYOUT_SLACK_S):
                        await self.wait_for_playout()
            else:
                self.interrupt()
        except BaseException:
            # Cancelled while playing out (a barge-in after the block's last write):
            # what was not played is discarded, and the track still goes.
            self.interrupt()
            raise
        finally:
            await self._release(unpublish=True)  # shielded

    async def aclose(self) -> None:
        """Discard what was not played and unpublish the track. Idempotent."""
        if self._state is _State.OPEN:
            self.interrupt()
        await self._release(unpublish=True)

    async def _release(self, *, unpublish: bool) -> None:
        self._state = _State.CLOSED
        with anyio.CancelScope(shield=True):
            publication, self._publication = self._publication, None
            if unpublish and publication is not None and self._core.is_connected:
                with anyio.move_on_after(_UNPUBLISH_TIMEOUT_S):
                    try:
                        await self._core.unpublish_track(publication.sid)
                    except Exception:
                        logger.exception("unpublishing audio track %r failed", self._name)
            self._free_native()

    def _free_native(self) -> None:
        self._audio._publishers.discard(self)
        router, self._router = self._router, None
        if router is not None:
            if self._inflight is not None:
                # A writer waiting for this capture gets NotConnected. The samples stay
                # referenced by `_inflight` for as long as this publisher lives.
                router.abandon(self._inflight[0])
            router.release()
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        if self._source is not None:
            dispose_handle(self._source)
        self._source = None

    def _on_session_closed(self) -> None:
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
            self._publication = None
            self._free_native()

    def _require_open(self) -> rtc.AudioSource:
        if self._state is _State.NEW:
            raise SessionStateError("enter the publisher's `async with` block first")
        if self._state is _State.CLOSED or self._source is None:
            raise NotConnected("the audio publisher is closed (or its session ended)")
        return self._source

    # -- writing -------------------------------------------------------------------------

    async def write(self, samples: npt.NDArray[Any], *, sample_rate: int | None = None) -> None:
        """Queue `samples` and capture every whole frame; the remainder waits for more.

        `samples` is int16, or float32/float64 in [-1, 1] (clipped); shape `(n,)` for
        mono, `(n, channels)` otherwise; any length. With `sample_rate` other than the
        track's, the audio is resampled first (the SDK's soxr resampler).

        Blocks while the native buffer holds more than `buffer_ms`: writing one second
        takes about one second. Validation happens before anything is queued, so a bad
        call leaves everything accepted earlier untouched. A cancelled `write` keeps
        what it had not captured yet queued: the next `write` or `flush` sends it
        first, and `interrupt()` discards it (leaving the block under cancellation
        interrupts).

        Raises:
            AudioFormatError: wrong dtype, shape or channel count, NaN or inf, or a
                bad `sample_rate`.
            CaptureError: the native source refused a capture.
            NotConnected: the publisher is closed or its session ended.
            SessionStateError: the block was not entered yet.
        """
        self._require_open()
        data = to_int16(samples, self._format.channels)
        data = self._maybe_resample(data, sample_rate)
        self._splitter.push(data)
        await self._drain()

    def write_nowait(self, samples: npt.NDArray[Any], *, sample_rate: int | None = None) -> None:
        """Queue `samples` without waiting; a task of the session captures them.

        At most `buffer_ms` of audio waits in Python at a time (besides the native
        buffer); a call that would exceed it queues nothing and raises
        `anyio.WouldBlock`, so a producer that cannot wait learns that it runs
        ahead of real time.

        Raises:
            anyio.WouldBlock: the queue is full; nothing of this call was queued.
            AudioFormatError: as [`write`][lkkit.AudioPublisher.write].
            NotConnected: the publisher is closed or its session ended.
            SessionStateError: the block was not entered yet.
        """
        self._require_open()
        data = to_int16(samples, self._format.channels)
        rate = self._checked_rate(sample_rate)
        incoming = -(-data.size * self._format.sample_rate // rate)  # after resampling
        if self._splitter.pending + incoming > max(self._nowait_capacity, incoming):
            raise anyio.WouldBlock
        self._splitter.push(self._maybe_resample(data, sample_rate))
        if self._pump is None or self._pump.done():
            self._pump = self._core.spawn(self._pump_nowait(), name="audio write_nowait")

    async def _pump_nowait(self) -> None:
        # The publisher closing ends it (NotConnected): what was queued is discarded.
        with contextlib.suppress(NotConnected):
            await self._drain()

    async def play(
        self,
        source: AsyncIterable[npt.NDArray[Any]] | npt.NDArray[Any],
        *,
        sample_rate: int | None = None,
    ) -> None:
        """Write every array of `source` (an array, or any async iterable of arrays),
        then flush the last partial frame."""
        if isinstance(source, np.ndarray):
            await self.write(source, sample_rate=sample_rate)
        else:
            async for chunk in source:
                await self.write(chunk, sample_rate=sample_rate)
        await self.flush()

    async def flush(self) -> None:
        """Pad the last partial frame with silence and capture everything pending."""
        self._require_open()
        if self._resampler is not None:
            self._splitter.push(self._resampler.flush())
            self._resampler = None
        self._splitter.pad()
        await self._drain()

    def interrupt(self) -> None:
        """Discard everything not yet played, at once: the carried remainder, the audio
        waiting to be captured, and the native buffer. Later writes play normally."""
        self._interrupts += 1
        self._samples_discarded += self._splitter.clear() // self._format.channels
        self._resampler = None
        if self._inflight is not None:
            # A capture waiting for room in the native buffer lands right after the
            # clear below; the native side copies its samples only then, so silence
            # them now instead of clearing again once Python hears it completed.
            self._inflight[2][:] = 0
        if self._source is not None and self._state is _State.OPEN:
            self._source.clear_queue()
        self._playout_end = time.monotonic()
        self._wake_playout_waiters()

    async def wait_for_playout(self) -> None:
        """Wait until everything captured so far has been sent (an estimate from
        timestamps: the native layer does not signal it). Does not flush the partial
        frame: call [`flush`][lkkit.AudioPublisher.flush] first for that."""
        async with self._lock:  # let in-flight captures finish first
            pass
        while True:
            remaining = self._playout_end - time.monotonic()
            if remaining <= 0:
                return
            event = self._playout_changed
            with anyio.move_on_after(remaining):
                await event.wait()

    def feed_far_end(self, samples: npt.NDArray[Any]) -> None:
        """Give the echo canceller the audio being played to the far end's speaker.

        Raises:
            ConfigurationError: echo cancellation is not enabled in the options.
            AudioFormatError: as [`write`][lkkit.AudioPublisher.write].
        """
        if self._apm is None or not self._options.echo_cancellation:
            raise ConfigurationError("feed_far_end needs AudioOptions(echo_cancellation=True)")
        self._far_end.push(to_int16(samples, self._format.channels))
        while (chunk := self._far_end.take(1)) is not None:
            frame = self._frame(chunk)
            self._apm.process_reverse_stream(frame)

    # -- internals -----------------------------------------------------------------------

    def _checked_rate(self, sample_rate: int | None) -> int:
        rate = self._format.sample_rate if sample_rate is None else sample_rate
        if not isinstance(rate, int) or isinstance(rate, bool) or not 1_000 <= rate <= 384_000:
            raise AudioFormatError(f"sample_rate must be an int in Hz, got {sample_rate!r}")
        return rate

    def _maybe_resample(self, data: Int16Array, sample_rate: int | None) -> Int16Array:
        rate = self._checked_rate(sample_rate)
        if rate == self._format.sample_rate:
            if self._resampler is None:
                return data
            tail = self._resampler.flush()
            self._resampler = None
            return np.concatenate((tail, data))
        if self._resampler is None or self._resampler.input_rate != rate:
            if self._resampler is not None:
                self._splitter.push(self._resampler.flush())
            self._resampler = Resampler(rate, self._format.sample_rate, self._format.channels)
        return self._resampler.push(data)

    def _frame(self, chunk: Int16Array) -> rtc.AudioFrame:
        return rtc.AudioFrame(
            bytearray(chunk.tobytes()),
            self._format.sample_rate,
            self._format.channels,
            len(chunk) // self._format.channels,
        )

    def _process(self, batch: Int16Array) -> Int16Array:
        assert self._apm is not None
        step = self._format.samples_10ms * self._format.channels
        out = np.empty_like(batch)
        for start in range(0, len(batch), step):
            frame = self._frame(batch[start : start + step])
            self._apm.process_stream(frame)
            out[start : start + step] = np.frombuffer(frame.data, dtype=np.int16)
        return out

    async def _drain(self) -> None:
        async with self._lock:
            while True:
                source = self._require_open()
                batch = self._splitter.take(self._batch_frames)
                if batch is None:
                    return
                if self._apm is not None:
                    batch = self._process(batch)
                await self._capture(source, batch)

    async def _capture(self, source: rtc.AudioSource, batch: Int16Array) -> None:
        router = self._router
        if self._inflight is not None:
            # A writer was cancelled while its capture was in flight: the native source
            # refuses a second capture until that one completes.
            await self._wait_inflight()
        if router is None or self._source is None:
            raise NotConnected("the audio publisher closed while capturing")
        # Our own copy (50 ms, cheap): the native side reads it until the capture
        # completes, and `interrupt()` may silence it in place.
        batch = np.array(batch, dtype=np.int16, copy=True)
        request = proto_ffi.FfiRequest()
        capture = request.capture_audio_frame
        capture.source_handle = handle_id(source)
        samples_per_channel = len(batch) // self._format.channels
        buffer = capture.buffer
        buffer.data_ptr = batch.ctypes.data
        buffer.sample_rate = self._format.sample_rate
        buffer.num_channels = self._format.channels
        buffer.samples_per_channel = samples_per_channel
        async_id, done = router.capture(request)
        self._inflight = (async_id, done, batch)
        now = time.monotonic()
        self._playout_end = max(self._playout_end, now) + samples_per_channel / self.sample_rate
        self._samples_captured += samples_per_channel
        interrupts = self._interrupts
        error = await self._wait_inflight()
        if self._interrupts != interrupts and self._source is not None:
            # The native source may take a capture's data only once there is room, so
            # data of a capture in flight at interrupt() can land after the clear.
            self._source.clear_queue()
        if error:
            raise CaptureError(f"the native audio source refused a frame: {error}")

    async def _wait_inflight(self) -> str:
        """Wait for the capture in flight; return its error text (empty when none).

        Shielded: a cancelled writer leaves the capture to complete, and the next
        capture waits for it here instead of overlapping it.
        """
        assert self._inflight is not None
        inflight = self._inflight
        error = await asyncio.shield(inflight[1])
        if self._inflight is inflight:
            self._inflight = None
        return error

    def _wake_playout_waiters(self) -> None:
        self._playout_changed.set()
        self._playout_changed = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"<AudioPublisher {self._name!r} {self.sample_rate} Hz x{self.channels} "
            f"frame={self.frame_ms} ms buffer={self._buffer_ms} ms {self._state.value}>"
        )
