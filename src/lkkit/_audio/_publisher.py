"""Audio: a fixed-frame publisher with a small native buffer, and received audio as numpy.

```python
async with session.audio.publish("voice") as pub:      # 48 kHz mono, 10 ms frames
    await pub.write(lkkit.sine_tone(440.0, 1.0))         # takes about 1 s
    await pub.flush()

async for chunk in session.audio.stream(participant):   # AudioChunk, numpy int16
    print(chunk.timestamp, chunk.samples.shape)
```

How the publisher stays cheap: the native source slices whatever a capture gives it
into 10 ms wire frames, sent by a native task every 10 ms. lkkit therefore hands it
up to `buffer_ms` of whole frames per capture (50 ms by default) instead of one 10 ms
frame, so one Python await moves five wire frames while the capture still blocks until
the native buffer is back at `buffer_ms`. lkkit talks to the FFI directly for captures
and received frames, with one event subscription per event loop for all publishers
and one for all streams (`_audio_ffi`), so the per-capture or per-chunk Python work is
one request or one chunk, and one wake-up.
"""

from __future__ import annotations

import asyncio
import ctypes
import enum
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import numpy.typing as npt
from livekit import rtc
from livekit.rtc._proto import audio_frame_pb2 as proto_audio
from livekit.rtc._proto import ffi_pb2 as proto_ffi

from ._audio_ffi import CaptureRouter, StreamRouter, capture_router, drop_handle, stream_router
from ._audio_frames import (
    AudioFormat,
    FrameSplitter,
    Int16Array,
    check_duration_ms,
    to_float32,
    to_int16,
)
from ._audio_options import AudioOptions
from ._audio_sources import Resampler
from ._events import (
    Event,
    ParticipantDisconnected,
    TrackSubscribed,
    TrackUnpublished,
    TrackUnsubscribed,
)
from ._exceptions import (
    AudioFormatError,
    CaptureError,
    ConfigurationError,
    NotConnected,
    SessionStateError,
    TrackNotSubscribed,
    map_sdk_exceptions,
)
from ._participants import Participant, TrackPublication
from ._types import TrackSource, track_source_to_sdk

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["AudioChunk", "AudioPublisher", "AudioStream", "SessionAudio"]

logger = logging.getLogger("lkkit")

_UNPUBLISH_TIMEOUT_S = 5.0
_EXIT_PLAYOUT_SLACK_S = 1.0


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


# -- publishing --------------------------------------------------------------------------


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
        self._session = audio._session
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
        room = self._session.require_connected()
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
            with map_sdk_exceptions():
                self._publication = await room.local_participant.publish_track(
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
        if exc_type is None:
            try:
                await self.flush()
                with anyio.move_on_after(self.queued_duration + _EXIT_PLAYOUT_SLACK_S):
                    await self.wait_for_playout()
            except NotConnected:
                pass
        else:
            self.interrupt()
        await self._release(unpublish=True)

    async def aclose(self) -> None:
        """Discard what was not played and unpublish the track. Idempotent."""
        if self._state is _State.OPEN:
            self.interrupt()
        await self._release(unpublish=True)

    async def _release(self, *, unpublish: bool) -> None:
        self._state = _State.CLOSED
        with anyio.CancelScope(shield=True):
            publication, self._publication = self._publication, None
            if unpublish and publication is not None and self._session.is_connected:
                with anyio.move_on_after(_UNPUBLISH_TIMEOUT_S):
                    try:
                        await self._session.room.local_participant.unpublish_track(publication.sid)
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
        if self._source is not None:
            self._source._ffi_handle.dispose()
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
        call leaves everything accepted earlier untouched.

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
        """Queue `samples` without capturing; the next `write` or `flush` sends them.

        Raises the same format errors as [`write`][lkkit.AudioPublisher.write].
        """
        self._require_open()
        data = to_int16(samples, self._format.channels)
        self._splitter.push(self._maybe_resample(data, sample_rate))

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

    def _maybe_resample(self, data: Int16Array, sample_rate: int | None) -> Int16Array:
        rate = self._format.sample_rate if sample_rate is None else sample_rate
        if not isinstance(rate, int) or isinstance(rate, bool) or not 1_000 <= rate <= 384_000:
            raise AudioFormatError(f"sample_rate must be an int in Hz, got {sample_rate!r}")
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
        request = proto_ffi.FfiRequest()
        capture = request.capture_audio_frame
        capture.source_handle = source._ffi_handle.handle
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


# -- receiving ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class AudioChunk:
    """Received audio: int16 samples, `(n,)` for mono and `(n, channels)` otherwise.

    Attributes:
        samples: the audio, int16, read-only.
        sample_rate: samples per second per channel.
        channels: channel count.
        timestamp: seconds of audio the stream delivered before this chunk (sample
            accurate: the position of the chunk's first sample in the stream).
        received_at: `time.monotonic()` when lkkit received the chunk.
    """

    samples: Int16Array = field(repr=False)
    sample_rate: int
    channels: int
    timestamp: float
    received_at: float

    @property
    def duration(self) -> float:
        """Seconds of audio in this chunk."""
        return len(self.samples) / self.sample_rate

    def to_float32(self) -> npt.NDArray[np.float32]:
        """The samples as float32 in [-1, 1)."""
        return to_float32(self.samples)


class AudioStream:
    """Audio received from one remote track, as [`AudioChunk`][lkkit.AudioChunk]s.

    Created by [`session.audio.stream`][lkkit.SessionAudio.stream]. Iterate with
    `async for`; iteration ends (chunks already received are yielded first) when the
    track is unsubscribed or unpublished, when its participant leaves, when the
    session ends, or after [`aclose`][lkkit.AudioStream.aclose]. Also an `async with`
    block that closes it.

    Given a participant whose track is not subscribed yet, the stream waits (inside
    the first `__anext__`) until it is. The native stream opens on the first
    `__anext__`, so a stream never iterated buffers nothing.

    Received chunks queue without bound (as in the SDK): a consumer that falls
    behind accumulates latency, never loses audio.
    """

    def __init__(
        self,
        audio: SessionAudio,
        fmt: AudioFormat,
        identity: str,
        source: TrackSource,
    ) -> None:
        self._audio = audio
        self._format = fmt
        self._identity = identity
        self._source = source
        self._track: rtc.Track | None = None
        self._sid = ""
        self._router: StreamRouter | None = None
        self._handle = 0
        self._ready: deque[AudioChunk] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._samples = 0

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
    def participant_identity(self) -> str:
        """Identity of the participant whose track this stream reads."""
        return self._identity

    @property
    def track_sid(self) -> str:
        """The track's sid; empty while the stream waits for the track."""
        return self._sid

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (buffered chunks may still be yielded)."""
        return self._ended

    # -- binding and opening -------------------------------------------------------------

    def _bind(self, track: rtc.Track, sid: str) -> None:
        """Read `track` (called synchronously when the track is known)."""
        if self._ended or self._track is not None:
            return
        self._track = track
        self._sid = sid
        self._audio._streams_by_sid.setdefault(sid, set()).add(self)
        self._wake()

    def _open(self, track: rtc.Track) -> None:
        request = proto_ffi.FfiRequest()
        new = request.new_audio_stream
        new.track_handle = track._ffi_handle.handle
        new.sample_rate = self._format.sample_rate
        new.num_channels = self._format.channels
        new.queue_size_frames = 0
        new.frame_size_ms = self._format.frame_ms
        new.type = proto_audio.AudioStreamType.AUDIO_STREAM_NATIVE
        router = stream_router(asyncio.get_running_loop())
        self._handle = router.open(request, self)
        self._router = router

    def _on_native_event(self, event: proto_audio.AudioStreamEvent) -> None:
        # On the loop thread, routed by the StreamRouter: no task hop, no queue.
        if event.HasField("frame_received"):
            owned = event.frame_received.frame
            info = owned.info
            raw = ctypes.string_at(info.data_ptr, 2 * info.num_channels * info.samples_per_channel)
            drop_handle(owned.handle.id)
            samples: Int16Array = np.frombuffer(raw, dtype=np.int16)
            if info.num_channels > 1:
                samples = samples.reshape(-1, info.num_channels)
            rate = info.sample_rate
            self._ready.append(
                AudioChunk(samples, rate, info.num_channels, self._samples / rate, time.monotonic())
            )
            self._samples += info.samples_per_channel
            self._wake()
        elif event.HasField("eos"):
            self._end()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- iteration -----------------------------------------------------------------------

    def __aiter__(self) -> AudioStream:
        return self

    async def __anext__(self) -> AudioChunk:
        ready = self._ready
        if ready:
            return ready.popleft()
        while True:
            if self._ended:
                raise StopAsyncIteration
            if self._router is None and self._track is not None:
                try:
                    self._open(self._track)
                except BaseException:
                    self._end()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
            if ready:
                return ready.popleft()

    # -- closing -------------------------------------------------------------------------

    def _end(self) -> None:
        """End the stream: no more chunks arrive; buffered ones are still yielded."""
        if self._ended:
            return
        self._ended = True
        self._audio._forget(self)
        router, self._router = self._router, None
        if router is not None:
            router.close(self._handle)
        self._wake()

    async def aclose(self) -> None:
        """Stop receiving and discard buffered chunks; a pending `async for` ends.
        Idempotent."""
        self._end()
        self._ready.clear()

    async def __aenter__(self) -> AudioStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "ended" if self._ended else ("open" if self._router else "waiting")
        return (
            f"<AudioStream {self._identity!r} {self._sid or '-'} {self.sample_rate} Hz "
            f"x{self.channels} frame={self.frame_ms} ms {state}>"
        )


# -- the session's audio capability ------------------------------------------------------


class SessionAudio:
    """A session's audio: [`publish`][lkkit.SessionAudio.publish] fixed frames and
    [`stream`][lkkit.SessionAudio.stream] received audio. Reached as `session.audio`.

    Owns the session's open publishers and streams: it ends them all when the session
    ends, and ends a stream when the session's event bus reports its track
    unsubscribed or unpublished, or its participant gone.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._publishers: set[AudioPublisher] = set()
        self._streams: set[AudioStream] = set()
        self._streams_by_sid: dict[str, set[AudioStream]] = {}
        self._remove_listener: Callable[[], None] | None = None
        session._on_close(self._on_session_closed)

    def publish(
        self,
        name: str,
        *,
        sample_rate: int = 48_000,
        channels: int = 1,
        frame_ms: int = 10,
        buffer_ms: int = 50,
        capture_ms: int | None = None,
        options: AudioOptions | None = None,
    ) -> AudioPublisher:
        """An audio track to publish: `async with session.audio.publish("voice") as pub:`.

        Args:
            name: the track's name.
            sample_rate: samples per second per channel (a multiple of 100).
            channels: channel count (1-8).
            frame_ms: the frame duration: writes are cut into frames of this length,
                the remainder carried; `flush` pads the last one. A multiple of 10 ms.
            buffer_ms: the native buffer: a capture returns once the buffer holds at
                most this much. A multiple of 10 ms, at least `frame_ms`.
            capture_ms: audio handed to the native source per capture, whole frames up
                to `buffer_ms`; defaults to the most frames that fit `buffer_ms`.
                Smaller means less buffered audio and more Python work.
            options: processing and encoding, default `AudioOptions()`.

        Raises:
            AudioFormatError: a rate, channel count or duration the native layer refuses.
            ConfigurationError: an empty name.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError("an audio track needs a non-empty name")
        fmt = AudioFormat(sample_rate, channels, frame_ms)
        buffer_ms = check_duration_ms("buffer_ms", buffer_ms)
        if buffer_ms < frame_ms:
            raise AudioFormatError(
                f"buffer_ms ({buffer_ms}) must be at least frame_ms ({frame_ms})"
            )
        default_capture = buffer_ms // frame_ms * frame_ms
        capture = default_capture if capture_ms is None else capture_ms
        check_duration_ms("capture_ms", capture)
        if capture % frame_ms or capture > buffer_ms:
            raise AudioFormatError(
                f"capture_ms ({capture}) must be a multiple of frame_ms ({frame_ms}) "
                f"no larger than buffer_ms ({buffer_ms})"
            )
        return AudioPublisher(self, name, fmt, buffer_ms, capture, options or AudioOptions())

    def stream(
        self,
        track: Participant | TrackPublication | rtc.RemoteParticipant | rtc.Track,
        *,
        sample_rate: int = 48_000,
        channels: int = 1,
        frame_ms: int = 10,
        source: TrackSource = TrackSource.MICROPHONE,
    ) -> AudioStream:
        """Receive a remote audio track as numpy chunks: `async for chunk in ...`.

        `track` is a remote participant (its track of kind `source` is used, waited
        for when it is not subscribed yet), a subscribed remote track publication,
        or an SDK remote audio track. The audio is resampled and remixed natively to
        `sample_rate`/`channels` and regrouped into `frame_ms` chunks: 50 ms chunks
        cost the event loop a fifth of 10 ms ones.

        Raises:
            AudioFormatError: a rate, channel count or duration the native layer refuses.
            ConfigurationError: the local participant, a video track, or a source that
                is not audio.
            TrackNotSubscribed: the publication's track is not subscribed (yet).
            NotConnected: the session is not connected.
        """
        fmt = AudioFormat(sample_rate, channels, frame_ms)
        if source not in (TrackSource.MICROPHONE, TrackSource.SCREEN_SHARE_AUDIO):
            raise ConfigurationError(f"source must be an audio source, got {source!r}")
        room = self._session.require_connected()
        if isinstance(track, Participant | rtc.RemoteParticipant):
            participant = track.sdk if isinstance(track, Participant) else track
            if not isinstance(participant, rtc.RemoteParticipant):
                raise ConfigurationError(
                    "receive audio from a remote participant, not the local one"
                )
            stream = AudioStream(self, fmt, participant.identity, source)
            self._track_streams(stream)
            found = _subscribed_audio(participant, track_source_to_sdk(source))
            if found is not None:
                stream._bind(*found)
            return stream
        sdk_track, sid = self._resolve_track(track)
        identity = next(
            (i for i, p in room.remote_participants.items() if sid in p.track_publications),
            "",
        )
        stream = AudioStream(self, fmt, identity, source)
        self._track_streams(stream)
        stream._bind(sdk_track, sid)
        return stream

    @staticmethod
    def _resolve_track(track: TrackPublication | rtc.Track) -> tuple[rtc.Track, str]:
        if isinstance(track, TrackPublication):
            publication = track.sdk
            if not isinstance(publication, rtc.RemoteTrackPublication):
                raise ConfigurationError("receive audio from a remote track, not a local one")
            if publication.kind != rtc.TrackKind.KIND_AUDIO:
                raise ConfigurationError(f"track {publication.sid} is not an audio track")
            if publication.track is None:
                raise TrackNotSubscribed(
                    f"track {publication.sid} is not subscribed by this session (yet)"
                )
            return publication.track, publication.sid
        if not isinstance(track, rtc.RemoteAudioTrack):
            raise ConfigurationError(
                f"receive audio from a remote audio track, got {type(track).__name__}"
            )
        return track, track.sid

    # -- ending streams and publishers ---------------------------------------------------

    def _track_streams(self, stream: AudioStream) -> None:
        if self._remove_listener is None:
            # One listener on the session's event bus for all of this session's
            # streams; the bus drops it when the session ends.
            self._remove_listener = self._session._bus.add_listener(self._on_event)
        self._streams.add(stream)

    def _forget(self, stream: AudioStream) -> None:
        self._streams.discard(stream)
        readers = self._streams_by_sid.get(stream._sid)
        if readers is not None:
            readers.discard(stream)
            if not readers:
                del self._streams_by_sid[stream._sid]

    def _on_event(self, event: Event) -> None:
        # Synchronous, in the SDK's dispatch order. Both unsubscribe and unpublish
        # end a stream: when the SDK handles the unpublish first it drops the
        # publication and never reports the unsubscribe; nor does it report tracks
        # unsubscribed after their participant left.
        if isinstance(event, TrackUnsubscribed | TrackUnpublished):
            for stream in tuple(self._streams_by_sid.get(event.publication.sid, ())):
                stream._end()
        elif isinstance(event, ParticipantDisconnected):
            identity = event.participant.identity
            for stream in tuple(self._streams):
                if stream._identity == identity:
                    stream._end()
        elif isinstance(event, TrackSubscribed):
            publication = event.publication.sdk
            track = publication.track
            if track is None or publication.kind != rtc.TrackKind.KIND_AUDIO:
                return
            identity = event.participant.identity
            for stream in tuple(self._streams):
                if (
                    stream._track is None
                    and stream._identity == identity
                    and publication.source == track_source_to_sdk(stream._source)
                ):
                    stream._bind(track, publication.sid)

    def _on_session_closed(self) -> None:
        for stream in tuple(self._streams):
            stream._end()
        for publisher in tuple(self._publishers):
            publisher._on_session_closed()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None


def _subscribed_audio(
    participant: rtc.RemoteParticipant, source: int
) -> tuple[rtc.Track, str] | None:
    for publication in participant.track_publications.values():
        track = publication.track
        if (
            publication.source == source
            and publication.kind == rtc.TrackKind.KIND_AUDIO
            and track is not None
        ):
            return track, publication.sid
    return None
