"""Audio: publish fixed frames through a small native buffer, receive tracks as numpy.

One part per module: the publisher (`_publisher`), received streams (`_stream`), the
per-session registry that ends both with the session (`_session_audio`), the shared
FFI routing (`_ffi`), frames and formats (`_frames`), processing options
(`_options`), sources such as tones and WAV files (`_sources`) and several sources
mixed onto one track (`_mix`).
"""

from ._frames import AudioFormat, Int16Array
from ._mix import AudioMix, MixSource
from ._options import AudioOptions
from ._publisher import AudioPublisher
from ._session_audio import SessionAudio
from ._sources import WavAudio, iter_chunks, read_wav, silence, sine_tone
from ._stream import AudioChunk, AudioStream

__all__ = [
    "AudioChunk",
    "AudioFormat",
    "AudioMix",
    "AudioOptions",
    "AudioPublisher",
    "AudioStream",
    "Int16Array",
    "MixSource",
    "SessionAudio",
    "WavAudio",
    "iter_chunks",
    "read_wav",
    "silence",
    "sine_tone",
]
