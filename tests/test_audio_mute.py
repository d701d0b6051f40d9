"""Muting a published audio track, against the real server: peers using lkkit and the
raw SDK see `TrackMuted` / `TrackUnmuted`, the local state follows at once, repeated
calls are harmless, and a publication that is gone (or remote) raises a typed error."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from livekit import rtc

import lkkit
from lkkit._audio._sources import sine_tone
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio


async def _next_mute_event(
    events: lkkit.EventSubscription[lkkit.Event], sid: str
) -> lkkit.TrackMuted | lkkit.TrackUnmuted:
    with anyio.fail_after(10):
        async for event in events:
            if (
                isinstance(event, lkkit.TrackMuted | lkkit.TrackUnmuted)
                and event.publication.sid == sid
            ):
                return event
    raise AssertionError("the event subscription ended")


async def test_mute_and_unmute_reach_lkkit_and_raw_sdk_peers(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    raw = rtc.Room()
    raw_seen: list[tuple[str, str, str]] = []
    raw.on("track_muted", lambda p, pub: raw_seen.append(("muted", p.identity, pub.sid)))
    raw.on("track_unmuted", lambda p, pub: raw_seen.append(("unmuted", p.identity, pub.sid)))
    await raw.connect(livekit_room.url, livekit_room.token("carol"))
    try:
        async with (
            bob.events(participant="alice") as events,
            alice.audio.publish("voice") as pub,
        ):
            publication = pub.publication
            sid = publication.sid
            assert not publication.muted

            await pub.write(sine_tone(440.0, 0.2))
            await pub.mute()  # the publisher's own shortcut
            assert publication.muted
            assert pub.muted
            await publication.mute()  # idempotent: no error, still muted
            event = await _next_mute_event(events, sid)
            assert isinstance(event, lkkit.TrackMuted)
            assert event.participant.identity == "alice"
            assert event.publication.muted

            await pub.unmute()
            await publication.unmute()
            assert not publication.muted
            assert not pub.muted
            event = await _next_mute_event(events, sid)
            assert isinstance(event, lkkit.TrackUnmuted)
            assert not event.publication.muted

            # The raw SDK peer saw the same two changes, once each.
            with anyio.fail_after(10):
                while len(raw_seen) < 2:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # a repeated mute would have arrived by now
            assert raw_seen == [("muted", "alice", sid), ("unmuted", "alice", sid)]

            # A remote publication cannot be muted from here.
            peer = bob.remote_participants["alice"]
            with pytest.raises(lkkit.TrackNotPublished):
                await peer.track_publications[sid].mute()
    finally:
        await raw.disconnect()

    # The publisher closed: the publication it gave is gone.
    with pytest.raises(lkkit.TrackNotPublished):
        await publication.mute()
    with pytest.raises(lkkit.TrackNotPublished):
        await publication.unmute()


async def test_mute_after_the_session_ended_raises(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    pub = alice.audio.publish("voice")
    await pub.__aenter__()
    publication = pub.publication
    await alice.aclose()
    with pytest.raises(lkkit.TrackNotPublished):
        await publication.mute()
    await pub.aclose()
