"""Pure audio logic without a server: formats, conversion, frame splitting, sources,
options."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lkkit
from lkkit._audio import AudioOptions
from lkkit._audio._frames import AudioFormat, FrameSplitter, check_duration_ms, to_int16
from lkkit._audio._sources import read_wav, silence, sine_tone, write_wav


def test_int16_passes_through_as_an_interleaved_copy() -> None:
    stereo = np.arange(8, dtype=np.int16).reshape(4, 2)
    out = to_int16(stereo, 2)
    assert out.tolist() == list(range(8))
    out[0] = 99
    assert stereo[0, 0] == 0  # never shares memory with the input


def test_float_is_clipped_and_scaled() -> None:
    out = to_int16(np.array([0.0, 0.5, 1.0, -1.0, 2.0, -7.0], dtype=np.float32), 1)
    assert out.tolist() == [0, 16384, 32767, -32767, 32767, -32767]
    assert to_int16(np.array([0.25]), 1).tolist() == [8192]  # float64 accepted


@pytest.mark.parametrize(
    ("samples", "channels"),
    [
        (np.zeros(4, dtype=np.int32), 1),
        (np.zeros(4, dtype=np.uint8), 1),
        (np.zeros(4, dtype=np.int16), 2),  # 1-D for a stereo stream
        (np.zeros((4, 2), dtype=np.int16), 1),  # channel mismatch
        (np.zeros((4, 3), dtype=np.int16), 2),
        (np.zeros((2, 2, 2), dtype=np.int16), 2),
        (np.array([0.0, np.nan], dtype=np.float32), 1),
        (np.array([np.inf], dtype=np.float32), 1),
        (np.array([-np.inf], dtype=np.float64), 1),
        ([0, 1], 1),
        (b"\x00\x00", 1),
    ],
)
def test_bad_samples_raise_audio_format_error(samples: object, channels: int) -> None:
    with pytest.raises(lkkit.AudioFormatError):
        to_int16(samples, channels)


def test_mono_accepts_n_by_1() -> None:
    assert to_int16(np.ones((3, 1), dtype=np.int16), 1).tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    ("rate", "channels", "frame_ms"),
    [
        (44_123, 1, 10),
        (0, 1, 10),
        (48_000, 0, 10),
        (48_000, 9, 10),
        (48_000, 1, 15),
        (48_000, 1, 0),
        (48_000, 1, -10),
        (True, 1, 10),
        (48_000, 1, 10.0),
    ],
)
def test_refused_formats(rate: object, channels: object, frame_ms: object) -> None:
    with pytest.raises(lkkit.AudioFormatError):
        AudioFormat(rate, channels, frame_ms)  # type: ignore[arg-type]


def test_format_sizes() -> None:
    fmt = AudioFormat(44_100, 2, 20)
    assert (fmt.frame_samples, fmt.samples_10ms) == (882, 441)
    assert check_duration_ms("buffer_ms", 50) == 50
    with pytest.raises(lkkit.AudioFormatError):
        check_duration_ms("buffer_ms", 55)


def test_splitter_carries_the_remainder_and_pads() -> None:
    splitter = FrameSplitter(4, 2)  # 8 interleaved samples per frame
    splitter.push(np.arange(20, dtype=np.int16))
    assert splitter.whole_frames == 2
    first = splitter.take(1)
    assert first is not None
    assert first.tolist() == list(range(8))
    rest = splitter.take(5)
    assert rest is not None
    assert rest.tolist() == list(range(8, 16))
    assert splitter.take(1) is None
    assert splitter.pending == 4
    splitter.push(np.arange(100, 102, dtype=np.int16))
    assert splitter.pad() == 2
    padded = splitter.take(1)
    assert padded is not None
    assert padded.tolist() == [16, 17, 18, 19, 100, 101, 0, 0]
    assert splitter.pad() == 0
    splitter.push(np.ones(3, dtype=np.int16))
    assert splitter.clear() == 3
    assert splitter.pending == 0


@given(st.lists(st.integers(0, 50), max_size=20), st.integers(1, 4))
def test_splitter_loses_and_reorders_nothing(sizes: list[int], batch: int) -> None:
    splitter = FrameSplitter(3, 1)
    out: list[int] = []
    counter = 0
    for size in sizes:
        splitter.push(np.arange(counter, counter + size, dtype=np.int16))
        counter += size
        while (chunk := splitter.take(batch)) is not None:
            assert len(chunk) % 3 == 0
            assert len(chunk) <= 3 * batch
            out.extend(chunk.tolist())
    assert out == list(range(counter - counter % 3))
    assert splitter.pending == counter % 3


def test_sine_tone_is_440_hz_and_continues_its_phase() -> None:
    tone = sine_tone(440.0, 1.0, amplitude=0.5)
    assert tone.dtype == np.int16
    assert tone.shape == (48_000,)
    spectrum = np.abs(np.fft.rfft(tone.astype(np.float64)))
    assert int(np.argmax(spectrum)) == 440
    assert abs(int(tone.max()) - 16384) <= 1
    joined = np.concatenate([sine_tone(440.0, 0.5), sine_tone(440.0, 0.5, start_sample=24_000)])
    assert np.array_equal(joined, sine_tone(440.0, 1.0))
    assert sine_tone(440.0, 0.01, channels=2).shape == (480, 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frequency": 0.0},
        {"frequency": 30_000.0},
        {"amplitude": 1.5},
        {"duration": -1.0},
        {"sample_rate": 0},
        {"channels": 0},
        {"duration": float("nan")},
    ],
)
def test_sine_tone_refuses_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(lkkit.ConfigurationError):
        sine_tone(**kwargs)  # type: ignore[arg-type]


def test_silence() -> None:
    assert not silence(0.02, channels=2).any()
    assert silence(0.02, channels=2).shape == (960, 2)


def test_wav_round_trip_and_errors(tmp_path: Path) -> None:
    stereo = np.stack([sine_tone(440.0, 0.1, sample_rate=16_000)] * 2, axis=1)
    path = tmp_path / "a.wav"
    write_wav(path, stereo, 16_000)
    wav = read_wav(path)
    assert (wav.sample_rate, wav.channels, wav.duration) == (16_000, 2, 0.1)
    assert np.array_equal(wav.samples, stereo)
    (tmp_path / "b.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(lkkit.AudioFormatError):
        read_wav(tmp_path / "b.wav")
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "missing.wav")


def test_options_are_immutable_and_checked() -> None:
    preset = AudioOptions.SPEC_VOICE
    assert (preset.bitrate, preset.dtx, preset.source) == (
        20_000,
        True,
        lkkit.TrackSource.MICROPHONE,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.dtx = False  # type: ignore[misc]
    sdk = dataclasses.replace(
        preset, source=lkkit.TrackSource.SCREEN_SHARE_AUDIO
    )._publish_options()
    assert (sdk.audio_encoding.max_bitrate, sdk.dtx) == (20_000, True)
    assert not preset.uses_processing
    assert AudioOptions(high_pass_filter=True).uses_processing
    for bad in (
        {"bitrate": 100},
        {"bitrate": 600_000},
        {"bitrate": True},
        {"source": lkkit.TrackSource.CAMERA},
        {"source": "microphone"},
    ):
        with pytest.raises(lkkit.ConfigurationError):
            AudioOptions(**bad)
