"""Pure audio logic: format checks, conversion to int16, and fixed-frame splitting.

Nothing here touches the SDK, so all of it is unit-tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .._exceptions import AudioFormatError

__all__ = ["AudioFormat", "FrameSplitter", "to_int16"]

Int16Array = npt.NDArray[np.int16]

_MAX_CHANNELS = 8
_MAX_BUFFER_MS = 10_000
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """Sample rate, channel count and frame duration of a stream of fixed frames.

    Raises:
        AudioFormatError: a sample rate that is not a positive multiple of 100 Hz
            (10 ms must be a whole number of samples), a channel count outside 1-8,
            or a frame duration that is not a positive multiple of 10 ms.
    """

    sample_rate: int
    channels: int
    frame_ms: int

    def __post_init__(self) -> None:
        if (
            not _is_int(self.sample_rate)
            or not 8_000 <= self.sample_rate <= 192_000
            or self.sample_rate % 100
        ):
            raise AudioFormatError(
                f"sample_rate must be a multiple of 100 Hz between 8000 and 192000, "
                f"got {self.sample_rate!r}"
            )
        if not _is_int(self.channels) or not 1 <= self.channels <= _MAX_CHANNELS:
            raise AudioFormatError(
                f"channels must be between 1 and {_MAX_CHANNELS}, got {self.channels!r}"
            )
        check_duration_ms("frame_ms", self.frame_ms)

    @property
    def frame_samples(self) -> int:
        """Samples per channel in one frame."""
        return self.sample_rate * self.frame_ms // 1000

    @property
    def samples_10ms(self) -> int:
        """Samples per channel in 10 ms."""
        return self.sample_rate // 100

    def duration(self, samples_per_channel: int) -> float:
        """Seconds of audio in `samples_per_channel` samples."""
        return samples_per_channel / self.sample_rate


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_duration_ms(name: str, value: object, *, maximum: int = _MAX_BUFFER_MS) -> int:
    """`value` when it is a positive multiple of 10 ms (what the native layer needs)."""
    if not _is_int(value) or not 0 < value <= maximum or value % 10:  # type: ignore[operator]
        raise AudioFormatError(
            f"{name} must be a positive multiple of 10 ms up to {maximum}, got {value!r}"
        )
    assert isinstance(value, int)
    return value


def to_int16(samples: object, channels: int) -> Int16Array:
    """Validate `samples` and return them as interleaved int16, shape `(n * channels,)`.

    Accepts int16 as is and float32/float64 in [-1, 1] (clipped, then scaled by
    32767). Mono input is `(n,)` or `(n, 1)`; multi-channel input is `(n, channels)`.
    The input is never modified and the result never shares memory with it.

    Raises:
        AudioFormatError: not a numpy array, another dtype, a wrong shape or channel
            count, or NaN or infinite values.
    """
    if not isinstance(samples, np.ndarray):
        raise AudioFormatError(
            f"audio must be a numpy array (int16 or float32), got {type(samples).__name__}"
        )
    array: np.ndarray[Any, Any] = samples
    if array.ndim == 1:
        if channels != 1:
            raise AudioFormatError(
                f"1-D audio is mono; this stream has {channels} channels: pass shape "
                f"(n, {channels})"
            )
    elif array.ndim == 2:
        if array.shape[1] != channels:
            raise AudioFormatError(
                f"audio has {array.shape[1]} channels (shape {array.shape}); "
                f"this stream has {channels}"
            )
    else:
        raise AudioFormatError(
            f"audio must be 1-D (n,) or 2-D (n, channels), got shape {array.shape}"
        )
    if array.dtype == np.int16:
        return np.array(array, dtype=np.int16, order="C", copy=True).reshape(-1)
    if array.dtype in _FLOAT_DTYPES:
        if not np.isfinite(array).all():
            raise AudioFormatError("float audio contains NaN or infinite values")
        scaled = np.clip(array, -1.0, 1.0) * 32767.0
        converted: Int16Array = np.rint(scaled).astype(np.int16)
        return converted.reshape(-1)
    raise AudioFormatError(f"audio must be int16 or float32 (or float64), got {array.dtype}")


def to_float32(samples: Int16Array) -> npt.NDArray[np.float32]:
    """int16 samples as float32 in [-1, 1]."""
    converted: npt.NDArray[np.float32] = samples.astype(np.float32) / np.float32(32768.0)
    return converted


class FrameSplitter:
    """Cuts interleaved int16 audio into whole frames and carries the remainder.

    `push` appends audio; `take(max_frames)` returns up to `max_frames` whole frames
    as one contiguous array (a view), or `None` when less than a frame is pending.
    `pad()` completes the last partial frame with silence; `clear()` drops everything.
    """

    __slots__ = ("_buffer", "_frame_len", "_pos")

    def __init__(self, frame_samples: int, channels: int) -> None:
        if frame_samples <= 0 or channels <= 0:
            raise ValueError("frame_samples and channels must be positive")
        self._frame_len = frame_samples * channels
        self._buffer: Int16Array = np.zeros(0, dtype=np.int16)
        self._pos = 0

    @property
    def pending(self) -> int:
        """Interleaved samples waiting (whole frames and the partial one)."""
        return len(self._buffer) - self._pos

    @property
    def whole_frames(self) -> int:
        return self.pending // self._frame_len

    def push(self, samples: Int16Array) -> None:
        if not len(samples):
            return
        if self._pos == len(self._buffer):
            self._buffer = samples
        else:
            self._buffer = np.concatenate((self._buffer[self._pos :], samples))
        self._pos = 0

    def take(self, max_frames: int) -> Int16Array | None:
        frames = min(self.whole_frames, max_frames)
        if frames <= 0:
            return None
        end = self._pos + frames * self._frame_len
        chunk = self._buffer[self._pos : end]
        self._pos = end
        return chunk

    def pad(self) -> int:
        """Pad the partial frame with silence; return how many samples were added."""
        partial = self.pending % self._frame_len
        if not partial:
            return 0
        missing = self._frame_len - partial
        self.push(np.zeros(missing, dtype=np.int16))
        return missing

    def clear(self) -> int:
        """Drop everything pending; return how many interleaved samples were dropped."""
        dropped = self.pending
        self._buffer = np.zeros(0, dtype=np.int16)
        self._pos = 0
        return dropped
