"""The session's event bus (issue #3 builds it out).

The bus is bound to the SDK room before `connect`, so no event is lost between
joining and subscribing; every other part of lkkit (data messages, audio) reads
room events from this one registry.
"""

from __future__ import annotations

from livekit import rtc

__all__ = ["EventBus"]


class EventBus:
    """Fans the SDK's room events out to lkkit subscribers."""

    def __init__(self) -> None:
        self._room: rtc.Room | None = None

    def bind(self, room: rtc.Room) -> None:
        """Listen to `room`; called by the session before it connects (or on attach)."""
        self._room = room

    def close(self) -> None:
        """End every subscription; called once when the session ends."""
        self._room = None
