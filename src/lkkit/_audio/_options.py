"""Audio capture and publish options: one immutable value, and SPEC's preset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from livekit import rtc

from .._exceptions import ConfigurationError
from .._types import TrackSource, track_source_to_sdk

__all__ = ["AudioOptions"]

_AUDIO_SOURCES = (TrackSource.MICROPHONE, TrackSource.SCREEN_SHARE_AUDIO)
# Opus accepts 6 kbit/s to 510 kbit/s.
_MIN_BITRATE = 6_000
_MAX_BITRATE = 510_000


@dataclass(frozen=True, slots=True)
class AudioOptions:
    """How a published audio track is processed, encoded and labelled. Immutable.

    Build a variant with `dataclasses.replace(AudioOptions.SPEC_VOICE, dtx=False)`.

    Attributes:
        source: what the track is, as others see it: `TrackSource.MICROPHONE` or
            `TrackSource.SCREEN_SHARE_AUDIO`.
        bitrate: the Opus encoder's maximum bitrate in bit/s (6,000 to 510,000);
            `None` leaves LiveKit's default.
        dtx: discontinuous transmission: send almost nothing during silence.
        noise_suppression: run WebRTC's noise suppressor on every 10 ms frame before
            it is captured.
        echo_cancellation: run WebRTC's echo canceller; it needs the far-end audio,
            given with [`AudioPublisher.feed_far_end`][lkkit.AudioPublisher.feed_far_end].
        auto_gain_control: run WebRTC's automatic gain control.
        high_pass_filter: remove low-frequency rumble.

    The four processing switches use the SDK's audio processing module
    (`rtc.AudioProcessingModule`) in the publisher, on 10 ms frames. The native audio
    source does not apply them to custom audio by itself.

    Raises:
        ConfigurationError: a source that is not audio, or a bitrate out of range.
    """

    source: TrackSource = TrackSource.MICROPHONE
    bitrate: int | None = None
    dtx: bool = False
    noise_suppression: bool = False
    echo_cancellation: bool = False
    auto_gain_control: bool = False
    high_pass_filter: bool = False

    SPEC_VOICE: ClassVar[AudioOptions]
    """SPEC's example: a microphone track at 20,000 bit/s with DTX on."""

    def __post_init__(self) -> None:
        if not isinstance(self.source, TrackSource) or self.source not in _AUDIO_SOURCES:
            raise ConfigurationError(
                f"an audio track's source must be microphone or screen_share_audio, "
                f"got {self.source!r}"
            )
        if self.bitrate is not None:
            if isinstance(self.bitrate, bool) or not isinstance(self.bitrate, int):
                raise ConfigurationError(f"bitrate must be an int in bit/s, got {self.bitrate!r}")
            if not _MIN_BITRATE <= self.bitrate <= _MAX_BITRATE:
                raise ConfigurationError(
                    f"bitrate must be between {_MIN_BITRATE} and {_MAX_BITRATE} bit/s, "
                    f"got {self.bitrate}"
                )

    @property
    def uses_processing(self) -> bool:
        """Whether any of the audio processing switches is on."""
        return (
            self.noise_suppression
            or self.echo_cancellation
            or self.auto_gain_control
            or self.high_pass_filter
        )

    def _publish_options(self) -> rtc.TrackPublishOptions:
        options = rtc.TrackPublishOptions(source=track_source_to_sdk(self.source), dtx=self.dtx)
        if self.bitrate is not None:
            options.audio_encoding.max_bitrate = self.bitrate
        return options

    def _processing_module(self) -> rtc.AudioProcessingModule | None:
        if not self.uses_processing:
            return None
        return rtc.AudioProcessingModule(
            echo_cancellation=self.echo_cancellation,
            noise_suppression=self.noise_suppression,
            high_pass_filter=self.high_pass_filter,
            auto_gain_control=self.auto_gain_control,
        )


AudioOptions.SPEC_VOICE = AudioOptions(bitrate=20_000, dtx=True)
