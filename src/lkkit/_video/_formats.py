"""Video frame formats and presets, and the checks a numpy frame passes before it is sent.

A frame is a uint8 numpy array in one of the layouts below. Packed formats are
`(height, width, channels)`; planar formats (I420, NV12) are the planes one after the
other, as a flat array or as `(height * 3 // 2, width)` for even sizes. Packed frames
may be row-strided views (a crop of a larger image): the native side reads them in
place, without a copy in Python.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .._exceptions import ConfigurationError, VideoFrameError

__all__ = [
    "ScreenSharePresets",
    "VideoCodec",
    "VideoFormat",
    "VideoPreset",
    "VideoPresets",
    "VideoPresets43",
    "VideoQuality",
    "check_frame",
    "frame_bytes",
]

UInt8Array = npt.NDArray[np.uint8]


class VideoFormat(str, enum.Enum):
    """The pixel layout of a numpy video frame."""

    RGBA = "rgba"
    """`(h, w, 4)`: red, green, blue, alpha."""
    BGRA = "bgra"
    """`(h, w, 4)`: blue, green, red, alpha (OpenCV's order, with alpha)."""
    ARGB = "argb"
    """`(h, w, 4)`: alpha, red, green, blue."""
    ABGR = "abgr"
    """`(h, w, 4)`: alpha, blue, green, red."""
    RGB = "rgb"
    """`(h, w, 3)`: red, green, blue (RGB24)."""
    I420 = "i420"
    """Planar YUV 4:2:0: the Y plane, then U, then V (each chroma plane
    `ceil(w/2) x ceil(h/2)`)."""
    NV12 = "nv12"
    """YUV 4:2:0: the Y plane, then one interleaved UV plane."""

    @property
    def packed(self) -> bool:
        """Whether pixels are stored whole (RGBA...), not as planes (I420, NV12)."""
        return self in _CHANNELS

    @property
    def channels(self) -> int:
        """Bytes per pixel of a packed format (0 for planar ones)."""
        return _CHANNELS.get(self, 0)


_CHANNELS = {
    VideoFormat.RGBA: 4,
    VideoFormat.BGRA: 4,
    VideoFormat.ARGB: 4,
    VideoFormat.ABGR: 4,
    VideoFormat.RGB: 3,
}


def frame_bytes(fmt: VideoFormat, width: int, height: int) -> int:
    """Bytes of a tightly packed `width x height` frame in `fmt`."""
    if fmt.packed:
        return width * height * fmt.channels
    return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)


def plane_sizes(fmt: VideoFormat, width: int, height: int) -> list[tuple[int, int]]:
    """`(stride, size)` in bytes of each plane of a tightly packed planar frame."""
    chroma_w, chroma_h = (width + 1) // 2, (height + 1) // 2
    if fmt is VideoFormat.I420:
        chroma = (chroma_w, chroma_w * chroma_h)
        return [(width, width * height), chroma, chroma]
    if fmt is VideoFormat.NV12:
        return [(width, width * height), (2 * chroma_w, 2 * chroma_w * chroma_h)]
    return []


def check_frame(frame: object, fmt: VideoFormat, width: int, height: int) -> UInt8Array:
    """`frame` as the array the native source reads: validated, never copied when its
    layout already fits (a packed frame may have a row stride).

    Raises:
        VideoFrameError: not a numpy array, not uint8, or a shape or size that is not
            a `width x height` frame in `fmt`.
    """
    if not isinstance(frame, np.ndarray):
        raise VideoFrameError(f"a video frame is a numpy uint8 array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise VideoFrameError(f"a video frame must be uint8, got dtype {frame.dtype}")
    if fmt.packed:
        expected = (height, width, fmt.channels)
        if frame.shape != expected:
            raise VideoFrameError(
                f"a {width}x{height} {fmt.name} frame has shape {expected}, got {frame.shape}"
            )
        # Rows may be strided (a crop); pixels and channels must be contiguous.
        if frame.strides[1:] != (fmt.channels, 1) or frame.strides[0] < width * fmt.channels:
            frame = np.ascontiguousarray(frame)
        return frame
    size = frame_bytes(fmt, width, height)
    if frame.size != size:
        raise VideoFrameError(
            f"a {width}x{height} {fmt.name} frame has {size} bytes "
            f"(a flat array, or ({height * 3 // 2}, {width}) for even sizes), "
            f"got shape {frame.shape} ({frame.size} bytes)"
        )
    return np.ascontiguousarray(frame).reshape(-1)


def check_size(width: object, height: object) -> tuple[int, int]:
    """Validate a frame size (positive ints)."""
    for label, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{label} must be an int >= 1, got {value!r}")
    return int(width), int(height)  # type: ignore[call-overload]


class VideoCodec(str, enum.Enum):
    """A video codec to publish with."""

    VP8 = "vp8"
    H264 = "h264"
    VP9 = "vp9"
    AV1 = "av1"
    H265 = "h265"


class VideoQuality(str, enum.Enum):
    """A simulcast layer to receive."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class VideoPreset:
    """A resolution with the encoding LiveKit's client SDKs use for it.

    Attributes:
        width: pixels (0 in `ScreenSharePresets.ORIGINAL`: the source's own size).
        height: pixels.
        max_bitrate: bits per second.
        max_framerate: frames per second.
    """

    width: int
    height: int
    max_bitrate: int
    max_framerate: float

    @property
    def aspect_ratio(self) -> float:
        return self.width / self.height if self.height else 0.0


class VideoPresets:
    """16:9 presets, the values of LiveKit's JS client (`VideoPresets`)."""

    H90 = VideoPreset(160, 90, 90_000, 20)
    H180 = VideoPreset(320, 180, 160_000, 20)
    H216 = VideoPreset(384, 216, 180_000, 20)
    H360 = VideoPreset(640, 360, 450_000, 20)
    H540 = VideoPreset(960, 540, 800_000, 25)
    H720 = VideoPreset(1280, 720, 1_700_000, 30)
    H1080 = VideoPreset(1920, 1080, 3_000_000, 30)
    H1440 = VideoPreset(2560, 1440, 5_000_000, 30)
    H2160 = VideoPreset(3840, 2160, 8_000_000, 30)


class VideoPresets43:
    """4:3 presets, the values of LiveKit's JS client (`VideoPresets43`)."""

    H120 = VideoPreset(160, 120, 70_000, 20)
    H180 = VideoPreset(240, 180, 125_000, 20)
    H240 = VideoPreset(320, 240, 140_000, 20)
    H360 = VideoPreset(480, 360, 330_000, 20)
    H480 = VideoPreset(640, 480, 500_000, 20)
    H540 = VideoPreset(720, 540, 600_000, 25)
    H720 = VideoPreset(960, 720, 1_300_000, 30)
    H1080 = VideoPreset(1440, 1080, 2_300_000, 30)
    H1440 = VideoPreset(1920, 1440, 3_800_000, 30)


class ScreenSharePresets:
    """Screen-share presets, the values of LiveKit's JS client (`ScreenSharePresets`)."""

    H360FPS3 = VideoPreset(640, 360, 200_000, 3)
    H360FPS15 = VideoPreset(640, 360, 400_000, 15)
    H720FPS5 = VideoPreset(1280, 720, 800_000, 5)
    H720FPS15 = VideoPreset(1280, 720, 1_500_000, 15)
    H720FPS30 = VideoPreset(1280, 720, 2_000_000, 30)
    H1080FPS15 = VideoPreset(1920, 1080, 2_500_000, 15)
    H1080FPS30 = VideoPreset(1920, 1080, 5_000_000, 30)
    ORIGINAL = VideoPreset(0, 0, 7_000_000, 30)


def default_preset(width: int, height: int, screen_share: bool) -> VideoPreset:
    """The preset LiveKit's JS client would pick for a `width x height` source: the
    smallest of the family (16:9, 4:3 or screen share) at least as tall, else the
    largest."""
    family: list[VideoPreset]
    if screen_share:
        family = [p for p in vars(ScreenSharePresets).values() if isinstance(p, VideoPreset)]
        family = [p for p in family if p.max_framerate == 15]  # the JS default's rate
    else:
        ratio = width / height
        source = VideoPresets43 if abs(ratio - 4 / 3) < abs(ratio - 16 / 9) else VideoPresets
        family = [p for p in vars(source).values() if isinstance(p, VideoPreset)]
    family.sort(key=lambda p: p.height)
    for preset in family:
        if preset.height >= height:
            return preset
    return family[-1]
