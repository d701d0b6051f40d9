"""Received audio: one remote track as a bounded subscription of numpy chunks.

```python
async with session.audio.stream(participant) as chunks:   # AudioChunk, numpy int16
    async for chunk in chunks:
        print(chunk.timestamp, chunk.samples.shape)
```

Frames come from the FFI directly, with one event subscription per event loop for all
streams (`_ffi.StreamRouter`), so the per-chunk Python work is one chunk and one
wake-up.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from livekit import rtc

from .._sdk_compat import drop_handle, handle_id, proto_audio, proto_ffi
from .._subscription import OverflowPolicy, Subscription
from .._types import TrackSource
from ._ffi import StreamRouter, stream_router
from ._frames import AudioFormat, Int16Array, to_float32

if TYPE_CHECKING:
    from ._session_audio import SessionAudio

__all__ = ["AudioChunk", "AudioStream"]


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


class AudioStream(Subscription[AudioChunk]):
    """Audio received from one remote track, as [`AudioChunk`][lkkit.AudioChunk]s.

    Created by [`session.audio.stream`][lkkit.SessionAudio.stream]; a
    [`Subscription`][lkkit.Subscription]: enter it with `async with` (that opens
    the native stream), read it with `async for`. Leaving the block, `break`
    included, releases it. Iteration ends (chunks already received are yielded
    first) when the track is unsubscribed or unpublished, when its participant
    leaves, or when the session ends.

    Given a participant whose track is not subscribed yet, the stream waits until it
    is. The buffer is bounded (`buffer` chunks): a reader slower than real time
    loses the oldest chunks instead of accumulating latency without bound, and is
    told: a warning is logged at the first drop (once per stream), `dropped` counts
    the chunks lost and `dropped_duration` their seconds, and `buffered_duration`
    says how far behind real time the reader is now. The chunks after a drop keep
    their true `timestamp`, so the gap is visible there too.
    """

    def __init__(
        self,
        audio: SessionAudio,
        fmt: AudioFormat,
        identity: str,
        source: TrackSource,
        *,
        buffer: int,
    ) -> None:
        super().__init__(
            buffer=buffer,
            overflow=OverflowPolicy.DROP_OLDEST,
            on_open=lambda _: self._open_native(),
            on_drop=self._count_drop,
            what=f"audio stream of {identity!r}",
            full_warning=(
                f"lkkit audio stream of {identity!r} is read slower than real time: "
                f"its buffer of {buffer} chunks is full, so the oldest audio is dropped "
                "(counted in AudioStream.dropped and dropped_duration; logged once)"
            ),
        )
        self._audio = audio
        self._format = fmt
        self._identity = identity
        self._source = source
        self._track: rtc.Track | None = None
        self._sid = ""
        self._router: StreamRouter | None = None
        self._handle = 0
        self._samples = 0
        self._dropped_samples = 0

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
    def dropped_duration(self) -> float:
        """Seconds of received audio dropped unread because the reader fell behind
        (the buffer was full). Zero for a reader that keeps up with real time."""
        return self._dropped_samples / self._format.sample_rate

    @property
    def buffered_duration(self) -> float:
        """Seconds of received audio waiting to be read: how far behind real time
        the reader is (at most the buffer's length; beyond it audio is dropped)."""
        return self.buffered * self._format.frame_ms / 1000

    def _count_drop(self, chunk: AudioChunk) -> None:
        self._dropped_samples += len(chunk.samples)  # samples per channel

    @property
    def participant_identity(self) -> str:
        """Identity of the participant whose track this stream reads."""
        return self._identity

    @property
    def track_sid(self) -> str:
        """The track's sid; empty while the stream waits for the track."""
        return self._sid

    # -- binding and opening -------------------------------------------------------------

    def _bind(self, track: rtc.Track, sid: str) -> None:
        """Read `track` (called synchronously when the track is known)."""
        if self.ended or self._track is not None:
            return
        self._track = track
        self._sid = sid
        self._audio._streams.index(self)
        self._open_native()

    def _open_native(self) -> None:
        # Once entered and once the track is known, whichever comes last.
        track = self._track
        if track is None or self._router is not None or not self._accepting:
            return
        request = proto_ffi.FfiRequest()
        new = request.new_audio_stream
        new.track_handle = handle_id(track)
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
            self._offer(
                AudioChunk(samples, rate, info.num_channels, self._samples / rate, time.monotonic())
            )
            self._samples += info.samples_per_channel
        elif event.HasField("eos"):
            self._end()

    # -- the end -------------------------------------------------------------------------

    def _end(self, error: BaseException | None = None) -> None:
        """No more chunks arrive (buffered ones are still yielded); the native stream
        is released. Idempotent."""
        super()._end(error)
        self._audio._streams.forget(self)
        router, self._router = self._router, None
        if router is not None:
            router.close(self._handle)

    def __repr__(self) -> str:
        state = "ended" if self.ended else ("open" if self._router else "waiting")
        return (
            f"<AudioStream {self._identity!r} {self._sid or '-'} {self.sample_rate} Hz "
            f"x{self.channels} frame={self.frame_ms} ms {state} dropped={self.dropped}>"
        )
