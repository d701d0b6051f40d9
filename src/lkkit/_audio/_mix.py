"""Several sources on one published track, each with its own gain: an agent's speech
over quiet background audio.

```python
async with session.audio.publish("agent") as pub:
    mix = pub.mix()
    speech, music = mix.source(gain=1.0), mix.source(gain=0.2)
    await asyncio.gather(speech.play(tts_audio), music.play(background))
```

One task (owned by the session) takes up to one capture of whole frames from every
source that has audio, pads the shorter ones with silence, sums them with their gains
(float32, clipped to int16) and writes the sum to the publisher, whose native buffer
paces it in real time. A source holds at most twice the publisher's `buffer_ms` in
Python; its `write` waits for room, so a producer runs at most that far ahead.

Why not the SDK's `rtc.AudioMixer`: it mixes 100 ms blocks by default, polls its
inputs every millisecond, and logs a warning each round an input has nothing, which
is the normal state of an agent's speech source between sentences.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .._exceptions import ConfigurationError, NotConnected
from ._frames import FrameSplitter, to_int16

if TYPE_CHECKING:
    from ._publisher import AudioPublisher

__all__ = ["AudioMix", "MixSource"]


def _check_gain(gain: object) -> float:
    if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not 0 <= gain <= 16:
        raise ConfigurationError(f"gain must be a number from 0 to 16, got {gain!r}")
    return float(gain)


class MixSource:
    """One input of an [`AudioMix`][lkkit.AudioMix]: write to it as to a publisher."""

    def __init__(self, mix: AudioMix, gain: float) -> None:
        self._mix = mix
        self._gain = gain
        fmt = mix._publisher._format
        self._queue = FrameSplitter(fmt.frame_samples, fmt.channels)
        self._capacity = 2 * mix._publisher.buffer_ms * fmt.sample_rate // 1000 * fmt.channels
        self._room = asyncio.Event()
        self._closed = False

    @property
    def gain(self) -> float:
        """The factor applied to this source's samples (1.0: as written)."""
        return self._gain

    @gain.setter
    def gain(self, gain: float) -> None:
        self._gain = _check_gain(gain)

    @property
    def pending_samples(self) -> int:
        """Samples per channel waiting to be mixed."""
        return self._queue.pending // self._mix._publisher._format.channels

    async def write(self, samples: npt.NDArray[Any]) -> None:
        """Queue `samples` (the track's rate and channels; int16 or float in [-1, 1]);
        waits while this source already holds twice the publisher's `buffer_ms`.

        Raises:
            AudioFormatError: as [`AudioPublisher.write`][lkkit.AudioPublisher.write].
            NotConnected: the source or its publisher is closed.
        """
        data = to_int16(samples, self._mix._publisher._format.channels)
        offset = 0
        while offset < len(data):
            if self._closed:
                raise NotConnected("this mix source is closed")
            room = self._capacity - self._queue.pending
            if room <= 0:
                self._room.clear()
                self._mix._wake()
                await self._room.wait()
                continue
            self._queue.push(data[offset : offset + room])
            offset += room
            self._mix._wake()

    async def play(self, source: AsyncIterable[npt.NDArray[Any]] | npt.NDArray[Any]) -> None:
        """Write an array, or every array of an async iterable."""
        if isinstance(source, np.ndarray):
            await self.write(source)
        else:
            async for chunk in source:
                await self.write(chunk)

    def clear(self) -> None:
        """Drop what this source has not had mixed yet (its own barge-in)."""
        self._queue.clear()
        self._room.set()

    def close(self) -> None:
        """Remove the source once what it holds has been mixed."""
        self._closed = True
        self._queue.pad()
        self._room.set()
        self._mix._wake()

    def _take(self, frames: int) -> npt.NDArray[np.int16] | None:
        chunk = self._queue.take(frames)
        if self._queue.pending < self._capacity:
            self._room.set()
        return chunk


class AudioMix:
    """The sources mixed onto one [`AudioPublisher`][lkkit.AudioPublisher]; get it
    with [`pub.mix()`][lkkit.AudioPublisher.mix]. Don't `write` to the publisher
    itself while a mix feeds it."""

    def __init__(self, publisher: AudioPublisher) -> None:
        self._publisher = publisher
        self._sources: list[MixSource] = []
        self._wakeup = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    @property
    def sources(self) -> tuple[MixSource, ...]:
        return tuple(self._sources)

    def source(self, *, gain: float = 1.0) -> MixSource:
        """A new input with its `gain` (0 to 16; 1.0 leaves the samples as they are).

        Raises:
            ConfigurationError: a gain out of range.
            NotConnected: the publisher is closed.
        """
        checked = _check_gain(gain)
        self._publisher._require_open()
        source = MixSource(self, checked)
        self._sources.append(source)
        if self._pump is None or self._pump.done():
            self._pump = self._publisher._core.spawn(self._run(), name="audio mix")
        return source

    def _wake(self) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        publisher = self._publisher
        batch = publisher.capture_ms // publisher.frame_ms
        try:
            while True:
                self._sources = [
                    s for s in self._sources if not (s._closed and not s._queue.pending)
                ]
                ready = max((s._queue.whole_frames for s in self._sources), default=0)
                if not ready:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                frames = min(batch, ready)
                fmt = publisher._format
                mixed = np.zeros(frames * fmt.frame_samples * fmt.channels, np.float32)
                for source in self._sources:
                    chunk = source._take(frames)  # taken even at gain 0: it plays silently
                    if chunk is not None and source._gain:
                        mixed[: len(chunk)] += chunk.astype(np.float32) * source._gain
                out = np.clip(mixed, -32768, 32767).astype(np.int16)
                if fmt.channels > 1:
                    out = out.reshape(-1, fmt.channels)
                await publisher.write(out)
        except NotConnected:
            pass  # the publisher closed: the mix ends with it
        finally:
            for source in self._sources:
                source._closed = True
                source._room.set()
