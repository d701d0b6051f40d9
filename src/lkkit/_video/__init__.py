"""Video: numpy frames published with pacing and presets, received tracks as numpy.

One part per module: formats, presets and frame checks (`_formats`), the publisher
(`_publisher`), received streams (`_stream`) and the per-session registry that ends
both with the session (`_session_video`).
"""

from ._formats import (
    ScreenSharePresets,
    VideoCodec,
    VideoFormat,
    VideoPreset,
    VideoPresets,
    VideoPresets43,
    VideoQuality,
)
from ._publisher import VideoPublisher
from ._session_video import SessionVideo
from ._stream import VideoFrame, VideoStream

__all__ = [
    "ScreenSharePresets",
    "SessionVideo",
    "VideoCodec",
    "VideoFormat",
    "VideoFrame",
    "VideoPreset",
    "VideoPresets",
    "VideoPresets43",
    "VideoPublisher",
    "VideoQuality",
    "VideoStream",
]
