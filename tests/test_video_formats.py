"""Video frame checks and presets: pure logic, no server."""

from __future__ import annotations

import numpy as np
import pytest

import lkkit
from lkkit import VideoFormat
from lkkit._video._formats import check_frame, default_preset, frame_bytes, plane_sizes


@pytest.mark.parametrize(
    ("fmt", "shape"),
    [
        (VideoFormat.RGBA, (6, 10, 4)),
        (VideoFormat.BGRA, (6, 10, 4)),
        (VideoFormat.ARGB, (6, 10, 4)),
        (VideoFormat.ABGR, (6, 10, 4)),
        (VideoFormat.RGB, (6, 10, 3)),
        (VideoFormat.I420, (9, 10)),
        (VideoFormat.NV12, (90,)),
    ],
)
def test_a_frame_of_the_right_layout_passes_without_a_copy(
    fmt: VideoFormat, shape: tuple[int, ...]
) -> None:
    frame = np.zeros(shape, np.uint8)
    checked = check_frame(frame, fmt, 10, 6)
    assert np.shares_memory(checked, frame)
    assert checked.size == frame_bytes(fmt, 10, 6)


def test_a_row_strided_crop_is_read_in_place_and_other_views_are_copied() -> None:
    big = np.zeros((10, 20, 4), np.uint8)
    crop = big[2:8, 5:15]
    assert np.shares_memory(check_frame(crop, VideoFormat.RGBA, 10, 6), big)
    swapped = big[:6, :10, ::-1]  # channels reversed: not readable in place
    fixed = check_frame(swapped, VideoFormat.RGBA, 10, 6)
    assert not np.shares_memory(fixed, big)
    assert fixed.strides == (40, 4, 1)


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((6, 10, 4), np.float32),
        np.zeros((6, 10, 4), np.uint16),
        np.zeros((6, 10, 3), np.uint8),
        np.zeros((10, 6, 4), np.uint8),
        np.zeros((6 * 10 * 4,), np.uint8),
        b"\0" * 240,
        [[0] * 10] * 6,
        None,
    ],
)
def test_every_wrong_frame_is_a_video_frame_error(frame: object) -> None:
    with pytest.raises(lkkit.VideoFrameError):
        check_frame(frame, VideoFormat.RGBA, 10, 6)


def test_planar_frames_need_every_plane() -> None:
    with pytest.raises(lkkit.VideoFrameError, match="90 bytes"):
        check_frame(np.zeros(60, np.uint8), VideoFormat.I420, 10, 6)
    # Odd sizes round the chroma planes up.
    assert frame_bytes(VideoFormat.I420, 5, 3) == 15 + 2 * 3 * 2
    assert plane_sizes(VideoFormat.I420, 5, 3) == [(5, 15), (3, 6), (3, 6)]
    assert plane_sizes(VideoFormat.NV12, 5, 3) == [(5, 15), (6, 12)]


def test_presets_have_the_js_clients_values() -> None:
    assert lkkit.VideoPreset(1920, 1080, 3_000_000, 30) == lkkit.VideoPresets.H1080
    assert lkkit.VideoPreset(1280, 720, 1_700_000, 30) == lkkit.VideoPresets.H720
    assert lkkit.VideoPreset(640, 480, 500_000, 20) == lkkit.VideoPresets43.H480
    assert lkkit.VideoPreset(1920, 1080, 2_500_000, 15) == lkkit.ScreenSharePresets.H1080FPS15


def test_the_default_preset_is_the_smallest_of_the_family_at_least_as_tall() -> None:
    assert default_preset(1280, 720, False) == lkkit.VideoPresets.H720
    assert default_preset(1100, 620, False) == lkkit.VideoPresets.H720
    assert default_preset(1000, 700, False) == lkkit.VideoPresets43.H720  # nearer 4:3
    assert default_preset(640, 480, False) == lkkit.VideoPresets43.H480
    assert default_preset(7680, 4320, False) == lkkit.VideoPresets.H2160  # the largest
    assert default_preset(1920, 1080, True) == lkkit.ScreenSharePresets.H1080FPS15
    assert default_preset(320, 240, True) == lkkit.ScreenSharePresets.H360FPS15
