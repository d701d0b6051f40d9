"""Audio sources (a sine tone, silence, WAV files, chunked iteration) and resampling."""

from __future__ import annotations

import os
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from livekit import rtc

from .._exceptions import AudioFormatError, ConfigurationError
from ._frames import Int16Array

__all__ = ["WavAudio", "iter_chunks", "read_wav", "silence", "sine_tone"]


def _check_shape_args(duration: float, sample_rate: int, channels: int) -> int:
    if not duration >= 0 or duration == float("inf"):
        raise ConfigurationError(f"duration must be a finite number >= 0, got {duration!r}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ConfigurationError(f"sample_rate must be a positive int, got {sample_rate!r}")
    if not isinstance(channels, int) or channels <= 0:
        raise ConfigurationError(f"channels must be a positive int, got {channels!r}")
    return round(duration * sample_rate)


def _shape(mono: Int16Array, channels: int) -> Int16Array:
    if channels == 1:
        return mono
    return np.repeat(mono[:, None], channels, axis=1)


def sine_tone(
    frequency: float = 440.0,
    duration: float = 1.0,
    *,
    sample_rate: int = 48_000,
    channels: int = 1,
    amplitude: float = 0.5,
    start_sample: int = 0,
) -> Int16Array:
    """A sine wave as int16: SPEC's example is the default 440 Hz.

    Returns shape `(n,)` for mono and `(n, channels)` otherwise (every channel the
    same). `amplitude` is relative to full scale; `start_sample` continues the phase
    of an earlier call, so consecutive calls join without a click.

    Raises:
        ConfigurationError: a negative duration, a frequency outside (0, rate/2), an
            amplitude outside [0, 1], or a non-positive rate or channel count.
    """
    n = _check_shape_args(duration, sample_rate, channels)
    if not 0 < frequency < sample_rate / 2:
        raise ConfigurationError(
            f"frequency must be between 0 and {sample_rate / 2:g} Hz, got {frequency!r}"
        )
    if not 0 <= amplitude <= 1:
        raise ConfigurationError(f"amplitude must be between 0 and 1, got {amplitude!r}")
    t = (np.arange(n, dtype=np.float64) + start_sample) / sample_rate
    wave_ = np.rint(np.sin(2 * np.pi * frequency * t) * (amplitude * 32767)).astype(np.int16)
    return _shape(wave_, channels)


def silence(duration: float, *, sample_rate: int = 48_000, channels: int = 1) -> Int16Array:
    """`duration` seconds of int16 silence, `(n,)` for mono, `(n, channels)` otherwise.

    Raises:
        ConfigurationError: a negative duration, or a non-positive rate or channel count.
    """
    n = _check_shape_args(duration, sample_rate, channels)
    return _shape(np.zeros(n, dtype=np.int16), channels)


@dataclass(frozen=True, slots=True, eq=False)
class WavAudio:
    """The samples of a WAV file: int16, `(n,)` for mono and `(n, channels)` otherwise."""

    samples: Int16Array = field(repr=False)
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def read_wav(path: str | os.PathLike[str]) -> WavAudio:
    """Read a 16-bit PCM WAV file (stdlib `wave`).

    Raises:
        AudioFormatError: the file is not a WAV file or its samples are not 16-bit PCM.
        OSError: the file cannot be read.
    """
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            width = wav.getsampwidth()
            channels = wav.getnchannels()
            rate = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(f"{os.fspath(path)!r} is not a readable WAV file: {exc}") from exc
    if width != 2:
        raise AudioFormatError(
            f"{os.fspath(path)!r} has {width * 8}-bit samples; lkkit reads 16-bit PCM WAV"
        )
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if channels > 1:
        samples = samples.reshape(-1, channels)
    return WavAudio(samples, rate, channels)


def write_wav(path: str | os.PathLike[str], samples: Int16Array, sample_rate: int) -> None:
    """Write int16 samples (`(n,)` or `(n, channels)`) as a 16-bit PCM WAV file."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with wave.open(os.fspath(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())


async def iter_chunks(samples: npt.NDArray[Any], chunk: int) -> AsyncIterator[npt.NDArray[Any]]:
    """Yield `samples` in pieces of `chunk` samples per channel (an async source)."""
    if chunk <= 0:
        raise ConfigurationError(f"chunk must be positive, got {chunk}")
    for start in range(0, len(samples), chunk):
        yield samples[start : start + chunk]


class Resampler:
    """Converts interleaved int16 audio between rates with the SDK's (soxr) resampler.

    Stateful: it keeps a few milliseconds of history, given back by `flush()`.
    """

    __slots__ = ("_channels", "_input_rate", "_resampler")

    def __init__(self, input_rate: int, output_rate: int, channels: int) -> None:
        if not isinstance(input_rate, int) or isinstance(input_rate, bool) or input_rate <= 0:
            raise AudioFormatError(f"sample_rate must be a positive int, got {input_rate!r}")
        self._input_rate = input_rate
        self._channels = channels
        self._resampler = rtc.AudioResampler(
            input_rate,
            output_rate,
            num_channels=channels,
            quality=rtc.AudioResamplerQuality.MEDIUM,
        )

    @property
    def input_rate(self) -> int:
        return self._input_rate

    def push(self, interleaved: Int16Array) -> Int16Array:
        return self._join(self._resampler.push(bytearray(interleaved.tobytes())))

    def flush(self) -> Int16Array:
        return self._join(self._resampler.flush())

    @staticmethod
    def _join(frames: list[rtc.AudioFrame]) -> Int16Array:
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])
