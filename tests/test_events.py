"""Every event the Python SDK delivers, triggered for real against the server.

Each test subscribes with `session.events(...)`, causes the event the way a service
would (another participant, the server API, the SDK's fault simulation) and asserts
the typed fields. Events caused by the server are caused through the server API.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import numpy as np
import pytest
from livekit import rtc
from typing_extensions import assert_never

import lkkit
from lkkit._admin import RoomAdmin
from lkkit._event_bus import EventSubscription
from lkkit._events import (
    EVENT_TYPES,
    NOT_DELIVERED,
    SDK_EVENT_CONVERTERS,
    ActiveSpeakersChanged,
    ConnectionQualityChanged,
    ConnectionStateChanged,
    DataReceived,
    DataTrackPublished,
    DataTrackUnpublished,
    Disconnected,
    E2eeStateChanged,
    Event,
    IsSpeakingChanged,
    LocalTrackPublished,
    LocalTrackRepublished,
    LocalTrackSubscribed,
    LocalTrackUnpublished,
    Moved,
    ParticipantActive,
    ParticipantAttributesChanged,
    ParticipantConnected,
    ParticipantDisconnected,
    ParticipantEncryptionStatusChanged,
    ParticipantMetadataChanged,
    ParticipantNameChanged,
    ParticipantPermissionsChanged,
    Reconnected,
    Reconnecting,
    RoomMetadataChanged,
    RoomUpdated,
    SipDtmfReceived,
    TokenRefreshed,
    TrackMuted,
    TrackPublished,
    TrackStreamStateChanged,
    TrackSubscribed,
    TrackSubscriptionFailed,
    TrackSubscriptionPermissionChanged,
    TrackUnmuted,
    TrackUnpublished,
    TrackUnsubscribed,
    TranscriptionReceived,
)
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

E = TypeVar("E")

WAIT_S = 10.0
# The server rates connection quality every few seconds.
QUALITY_WAIT_S = 20.0


async def expect(
    events: EventSubscription[Any],
    kind: type[E],
    where: Callable[[E], bool] = lambda _: True,
    timeout: float = WAIT_S,
) -> E:
    """The next event of `kind` matching `where`, skipping others."""
    with anyio.fail_after(timeout):
        async for event in events:
            if isinstance(event, kind) and where(event):
                return event
    raise AssertionError(f"the subscription ended before a {kind.__name__}")


async def collect(
    events: EventSubscription[Any], *kinds: type[Any], timeout: float = WAIT_S
) -> dict[type[Any], Any]:
    """The first event of each of `kinds`, in whatever order they come."""
    found: dict[type[Any], Any] = {}
    with anyio.fail_after(timeout):
        async for event in events:
            if type(event) in kinds and type(event) not in found:
                found[type(event)] = event
                if len(found) == len(kinds):
                    return found
    raise AssertionError(f"the subscription ended with only {list(found)}")


async def until(predicate: Callable[[], object], timeout: float = WAIT_S) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


async def until_track_known(session: lkkit.Session, identity: str, sid: str) -> None:
    """Wait until `session` knows the track `sid` of the remote participant `identity`."""
    await until(
        lambda: sid in getattr(session.remote_participants.get(identity), "track_publications", {})
    )


async def drain(events: EventSubscription[Any], seconds: float) -> list[Any]:
    """Everything the subscription delivers within `seconds`."""
    seen: list[Any] = []
    with anyio.move_on_after(seconds):
        async for event in events:
            seen.append(event)
    return seen


def admin(room: LiveKitRoom) -> RoomAdmin:
    return RoomAdmin(room.url, room.credentials)


async def publish_mic(session: lkkit.Session, name: str = "mic") -> tuple[rtc.AudioSource, str]:
    source = rtc.AudioSource(48_000, 1)
    track = rtc.LocalAudioTrack.create_audio_track(name, source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await session.room.local_participant.publish_track(track, options)
    return source, publication.sid


async def play(
    source: rtc.AudioSource, seconds: float, amplitude: float, stop: anyio.Event | None = None
) -> None:
    """Real-time 440 Hz tone (amplitude 0 = digital silence) in 10 ms frames, for
    `seconds` or until `stop` is set. Stopping between frames, not by cancelling a
    capture, leaves the source usable: a cancelled capture still runs natively, and
    the next one would overlap it."""
    samples = 480
    t = np.arange(samples) / 48_000
    for i in range(int(seconds * 100)):
        if stop is not None and stop.is_set():
            return
        wave = amplitude * np.sin(2 * np.pi * 440 * (t + i * samples / 48_000))
        frame = rtc.AudioFrame(wave.astype(np.int16).tobytes(), 48_000, 1, samples)
        await source.capture_frame(frame)


# -- the types ---------------------------------------------------------------------------


def describe(event: Event) -> str:
    """Exhaustive over the union: mypy fails here if an event type is not handled."""
    match event:
        case (
            ParticipantConnected()
            | ParticipantDisconnected()
            | ParticipantActive()
            | Reconnecting()
            | Reconnected()
            | Disconnected()
            | ConnectionStateChanged()
            | TrackPublished()
            | TrackUnpublished()
            | TrackSubscribed()
            | TrackUnsubscribed()
            | TrackSubscriptionFailed()
            | TrackMuted()
            | TrackUnmuted()
            | LocalTrackPublished()
            | LocalTrackUnpublished()
            | LocalTrackRepublished()
            | LocalTrackSubscribed()
            | ActiveSpeakersChanged()
            | IsSpeakingChanged()
            | ConnectionQualityChanged()
            | ParticipantMetadataChanged()
            | ParticipantNameChanged()
            | ParticipantAttributesChanged()
            | ParticipantEncryptionStatusChanged()
            | ParticipantPermissionsChanged()
            | RoomMetadataChanged()
            | RoomUpdated()
            | Moved()
            | TokenRefreshed()
            | DataReceived()
            | SipDtmfReceived()
            | TranscriptionReceived()
            | E2eeStateChanged()
            | DataTrackPublished()
            | DataTrackUnpublished()
            | TrackStreamStateChanged()
            | TrackSubscriptionPermissionChanged()
        ):
            return type(event).__name__
        case _:
            assert_never(event)


def test_every_sdk_event_has_a_type_and_every_type_a_source() -> None:
    declared = set(typing.get_args(rtc.room.EventTypes)) - {"connected"}  # never emitted
    assert set(SDK_EVENT_CONVERTERS) == declared
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES)) == 38
    for event_type in EVENT_TYPES:
        assert dataclasses.is_dataclass(event_type)
        assert getattr(event_type, "__dataclass_params__").frozen  # noqa: B009
        assert "__slots__" in vars(event_type)
        assert event_type.__doc__
    assert describe(Reconnecting()) == "Reconnecting"
    with pytest.raises(dataclasses.FrozenInstanceError):
        Disconnected(lkkit.DisconnectReason.UNKNOWN).reason = lkkit.DisconnectReason.UNKNOWN  # type: ignore[misc]


# -- participants ------------------------------------------------------------------------


async def test_participant_connected_active_and_disconnected(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.events() as events:
        assert events.snapshot.participants == {}
        async with lkkit.connect(
            livekit_room.url, livekit_room.token("bob", name="Bob", metadata="m")
        ) as bob:
            await publish_mic(bob)  # publishers are announced at once
            joined = await expect(events, ParticipantConnected)
            assert joined.participant.identity == "bob"
            assert isinstance(joined.participant, lkkit.RemoteParticipant)
            assert (joined.participant.name, joined.participant.metadata) == ("Bob", "m")
            active = await expect(events, ParticipantActive)
            assert active.participant.identity == "bob"
        left = await expect(events, ParticipantDisconnected)
        assert left.participant.identity == "bob"
        assert left.reason is lkkit.DisconnectReason.CLIENT_INITIATED


async def test_snapshot_holds_who_was_there_before(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    _, track_sid = await publish_mic(bob)
    alice = await livekit_room.join("alice")
    with anyio.fail_after(WAIT_S):
        while (
            not alice.remote_participants.get("bob", None)
            or not alice.remote_participants["bob"].track_publications
        ):
            await anyio.sleep(0.02)
    async with alice.events() as events:
        snapshot = events.snapshot
        assert snapshot.connection_state is lkkit.ConnectionState.CONNECTED
        assert list(snapshot.participants) == ["bob"]
        assert [p.sid for p in snapshot.publications["bob"]] == [track_sid]
        # Already there: no ParticipantConnected / TrackPublished follows for bob.
        carol = await livekit_room.join("carol")
        await publish_mic(carol)
        joined = await expect(events, ParticipantConnected)
        assert joined.participant.identity == "carol"


async def test_subscription_made_before_connect_sees_the_join(livekit_room: LiveKitRoom) -> None:
    session = lkkit.connect(livekit_room.url, livekit_room.token("alice"))
    async with session.events(ConnectionStateChanged, TokenRefreshed) as events:
        assert events.snapshot.connection_state is lkkit.ConnectionState.DISCONNECTED
        async with session:
            state = await expect(events, ConnectionStateChanged)
            assert state.state is lkkit.ConnectionState.CONNECTED
        # The session ended: its iteration ends too.
        rest = await drain(events, WAIT_S)
        assert [type(e) for e in rest][-1:] == [ConnectionStateChanged]
        assert rest[-1].state is lkkit.ConnectionState.DISCONNECTED


# -- tracks ------------------------------------------------------------------------------


async def test_track_publish_subscribe_unsubscribe_unpublish(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with alice.events() as seen_by_alice, bob.events() as seen_by_bob:
        _, sid = await publish_mic(bob)

        local = await expect(seen_by_bob, LocalTrackPublished)
        assert local.participant.identity == "bob"
        assert local.participant.is_local
        assert local.publication.sid == sid
        assert local.publication.source is lkkit.TrackSource.MICROPHONE

        published = await expect(seen_by_alice, TrackPublished)
        assert published.participant.identity == "bob"
        assert published.publication.sid == sid
        assert published.publication.kind is lkkit.TrackKind.AUDIO
        assert published.publication.source is lkkit.TrackSource.MICROPHONE
        subscribed = await expect(seen_by_alice, TrackSubscribed)
        assert subscribed.publication.sid == sid
        assert subscribed.publication.subscribed

        first_subscriber = await expect(seen_by_bob, LocalTrackSubscribed)
        assert first_subscriber.publication.sid == sid

        # Unsubscribe first, then unpublish: when an unpublish comes first, the SDK
        # sometimes drops the publication without reporting the unsubscribe.
        alice.room.remote_participants["bob"].track_publications[sid].set_subscribed(False)
        unsubscribed = await expect(seen_by_alice, TrackUnsubscribed)
        assert (unsubscribed.participant.identity, unsubscribed.publication.sid) == ("bob", sid)
        assert not unsubscribed.publication.subscribed

        await bob.room.local_participant.unpublish_track(sid)
        unpublished_local = await expect(seen_by_bob, LocalTrackUnpublished)
        assert unpublished_local.publication.sid == sid
        unpublished = await expect(seen_by_alice, TrackUnpublished)
        assert unpublished.publication.sid == sid


async def test_mute_and_unmute_local_and_remote(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with (
        alice.events(TrackMuted, TrackUnmuted) as remote,
        bob.events(TrackMuted, TrackUnmuted) as local,
    ):
        _, sid = await publish_mic(bob)
        publication = bob.room.local_participant.track_publications[sid]
        assert publication.track is not None
        await until_track_known(alice, "bob", sid)
        publication.track.mute()

        muted_local = await expect(local, TrackMuted)
        assert muted_local.participant.is_local
        assert muted_local.publication.sid == sid
        assert muted_local.publication.muted
        muted_remote = await expect(remote, TrackMuted)
        assert muted_remote.participant.identity == "bob"
        assert isinstance(muted_remote.participant, lkkit.RemoteParticipant)
        assert muted_remote.publication.muted

        publication.track.unmute()
        assert not (await expect(local, TrackUnmuted)).publication.muted
        unmuted_remote = await expect(remote, TrackUnmuted)
        assert (unmuted_remote.participant.identity, unmuted_remote.publication.sid) == (
            "bob",
            sid,
        )


async def test_mute_through_the_server_api(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with alice.events(TrackMuted) as remote, bob.events(TrackMuted) as local:
        _, sid = await publish_mic(bob)
        async with admin(livekit_room) as server:
            # Alice must know the track: muting a track the server has not published
            # yet reaches her as an already muted TrackPublished, not a TrackMuted.
            await until_track_known(alice, "bob", sid)
            await server.mute_published_track(livekit_room.name, "bob", sid, muted=True)
        assert (await expect(local, TrackMuted)).publication.sid == sid
        assert (await expect(remote, TrackMuted)).participant.identity == "bob"


# -- server-side changes -----------------------------------------------------------------


async def test_participant_updates_through_the_server_api(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice", name="Alice", metadata="old")
    bob = await livekit_room.join("bob")
    await publish_mic(alice)
    with anyio.fail_after(WAIT_S):
        while "alice" not in bob.remote_participants:
            await anyio.sleep(0.02)
    async with alice.events(participant="alice") as mine, bob.events(participant="alice") as theirs:
        async with alice.events(TokenRefreshed) as tokens:
            async with admin(livekit_room) as server:
                await server.update_participant(
                    livekit_room.name,
                    "alice",
                    metadata="new",
                    name="Alicia",
                    attributes={"role": "host"},
                    permissions=lkkit.ParticipantPermissions(
                        can_subscribe=True,
                        can_publish=True,
                        can_publish_data=False,
                        can_publish_sources=(lkkit.TrackSource.MICROPHONE,),
                        can_update_metadata=False,
                        hidden=False,
                    ),
                )
            refreshed = await expect(tokens, TokenRefreshed)
            assert refreshed.token.count(".") == 2
            assert refreshed.token not in repr(refreshed)
        kinds = (ParticipantMetadataChanged, ParticipantNameChanged, ParticipantAttributesChanged)
        for events, is_local in ((mine, True), (theirs, False)):
            found = await collect(events, *kinds, ParticipantPermissionsChanged)
            metadata = found[ParticipantMetadataChanged]
            assert (metadata.old_metadata, metadata.metadata) == ("old", "new")
            assert metadata.participant.identity == "alice"
            assert metadata.participant.is_local is is_local
            name = found[ParticipantNameChanged]
            assert (name.old_name, name.name) == ("Alice", "Alicia")
            assert dict(found[ParticipantAttributesChanged].changed) == {"role": "host"}
            permissions = found[ParticipantPermissionsChanged]
            assert permissions.participant.is_local is is_local
            assert not permissions.permissions.can_publish_data
            assert permissions.permissions.can_publish_sources == (lkkit.TrackSource.MICROPHONE,)


async def test_room_metadata_through_the_server_api(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.events(RoomMetadataChanged, RoomUpdated) as events:
        async with admin(livekit_room) as server:
            await server.update_room_metadata(livekit_room.name, "agenda")
        changed = await expect(events, RoomMetadataChanged)
        assert (changed.old_metadata, changed.metadata) == ("", "agenda")
        updated = await expect(events, RoomUpdated, lambda e: e.metadata == "agenda")
        assert updated.num_participants >= 1


# -- data --------------------------------------------------------------------------------


async def test_data_from_a_participant_and_from_the_server(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    # Data from a participant alice does not know arrives without its sender: the SDK's
    # native layer drops the identity (documented limitation; this fails once the SDK
    # keeps it). A hidden participant is never announced, so that is certain here; bob,
    # who publishes nothing, is announced up to 3 s late, but whether his first packet
    # beats the announcement is a race.
    ghost = await livekit_room.join("ghost", hidden=True)
    async with alice.events(DataReceived) as events:
        before = time.time()
        await ghost.room.local_participant.publish_data(b"early", reliable=True, topic="chat")
        early = await expect(events, DataReceived)
        assert (early.payload, early.topic) == (b"early", "chat")
        assert early.participant is None
        assert early.sender_identity is None
        assert "ghost" not in alice.remote_participants
        await until(lambda: "bob" in alice.remote_participants)

        await bob.room.local_participant.publish_data(b"hello", reliable=True, topic="chat")
        from_bob = await expect(events, DataReceived)
        assert from_bob.payload == b"hello"
        assert from_bob.topic == "chat"
        assert from_bob.participant is not None
        assert from_bob.participant.identity == from_bob.sender_identity == "bob"
        assert from_bob.reliability is lkkit.DataReliability.RELIABLE
        assert before <= from_bob.received_at <= time.time()

        await bob.room.local_participant.publish_data(b"fast", reliable=False)
        lossy = await expect(events, DataReceived)
        assert (lossy.payload, lossy.topic) == (b"fast", "")
        assert lossy.reliability is lkkit.DataReliability.LOSSY

        async with admin(livekit_room) as server:
            await server.send_data(livekit_room.name, b"from server", topic="news")
        from_server = await expect(events, DataReceived)
        assert from_server.payload == b"from server"
        assert from_server.topic == "news"
        assert from_server.participant is None
        assert from_server.sender_identity is None


async def test_dtmf_and_transcription(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    # The server forwards transcriptions from agents only (pkg/rtc/participant.go).
    bob = await livekit_room.join("bob", kind=lkkit.ParticipantKind.AGENT)
    _, sid = await publish_mic(bob)
    async with alice.events(SipDtmfReceived, TranscriptionReceived) as events:
        with anyio.fail_after(WAIT_S):
            while not alice.remote_participants.get("bob") or sid not in (
                alice.remote_participants["bob"].track_publications
            ):
                await anyio.sleep(0.02)
        await bob.room.local_participant.publish_dtmf(code=5, digit="5")
        dtmf = await expect(events, SipDtmfReceived)
        assert (dtmf.code, dtmf.digit) == (5, "5")
        assert dtmf.participant is not None
        assert dtmf.participant.identity == "bob"

        segment = rtc.TranscriptionSegment(
            id="s1", text="hello", start_time=0, end_time=900, language="en", final=True
        )
        await bob.room.local_participant.publish_transcription(
            rtc.Transcription(participant_identity="bob", track_sid=sid, segments=[segment])
        )
        transcription = await expect(events, TranscriptionReceived)
        assert transcription.participant is not None
        assert transcription.participant.identity == "bob"
        assert transcription.publication is not None
        assert transcription.publication.sid == sid
        (got,) = transcription.segments
        assert (got.id, got.text, got.end_time, got.language, got.final) == (
            "s1",
            "hello",
            900,
            "en",
            True,
        )


async def test_data_track_published_and_unpublished(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with alice.events(DataTrackPublished, DataTrackUnpublished) as events:
        track = await bob.room.local_participant.publish_data_track(name="telemetry")
        published = await expect(events, DataTrackPublished)
        assert (published.publisher_identity, published.name) == ("bob", "telemetry")
        assert published.sid.startswith("DTR_")
        assert not published.uses_e2ee
        assert isinstance(published.sdk_track, rtc.RemoteDataTrack)
        await track.unpublish()
        unpublished = await expect(events, DataTrackUnpublished)
        assert unpublished.sid == published.sid


# -- speaking and quality ----------------------------------------------------------------


async def test_speaking_starts_with_a_tone_and_stops_with_silence(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    source, _ = await publish_mic(bob)
    async with (
        alice.events(participant="bob") as bobs,
        alice.events(ActiveSpeakersChanged) as speakers,
    ):
        heard = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(play, source, 20.0, 12_000, heard)  # ends once the start is seen
            started = await expect(bobs, IsSpeakingChanged)
            assert started.speaking
            assert started.participant.identity == "bob"
            heard.set()
        active = await expect(speakers, ActiveSpeakersChanged, lambda e: bool(e.speakers))
        assert [p.identity for p in active.speakers] == ["bob"]

        async with anyio.create_task_group() as tg:
            tg.start_soon(play, source, 4.0, 0)
            stopped = await expect(bobs, IsSpeakingChanged)
            assert not stopped.speaking
            assert stopped.participant.identity == "bob"
            tg.cancel_scope.cancel()
        quiet = await expect(speakers, ActiveSpeakersChanged, lambda e: not e.speakers)
        assert quiet.speakers == ()


async def test_connection_quality(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    await publish_mic(bob)
    async with alice.events(ConnectionQualityChanged) as events:
        local = await expect(
            events, ConnectionQualityChanged, lambda e: e.participant.is_local, QUALITY_WAIT_S
        )
        assert local.participant.identity == "alice"
        assert local.quality in set(lkkit.ConnectionQuality) - {lkkit.ConnectionQuality.UNKNOWN}
        remote = await expect(
            events,
            ConnectionQualityChanged,
            lambda e: e.participant.identity == "bob",
            QUALITY_WAIT_S,
        )
        # Over loopback the server rates bob's connection excellent.
        assert remote.quality is lkkit.ConnectionQuality.EXCELLENT


# -- connection --------------------------------------------------------------------------


async def test_reconnecting_and_reconnected(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.events(Reconnecting, Reconnected, ConnectionStateChanged) as events:
        await alice.room.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT)
        # (A CONNECTED from the join itself can still be buffered: skip it.)
        await expect(events, ConnectionStateChanged, lambda e: e.state.value == "reconnecting")
        await expect(events, Reconnecting)
        await expect(events, ConnectionStateChanged, lambda e: e.state.value == "connected")
        await expect(events, Reconnected)
    assert alice.is_connected


async def test_full_reconnect_republishes_local_tracks(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    _, sid = await publish_mic(alice)
    async with alice.events(Reconnecting, Reconnected, LocalTrackRepublished) as events:
        await alice.room.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT)
        await expect(events, Reconnecting)
        republished = await expect(events, LocalTrackRepublished)
        assert republished.previous_sid == sid
        assert republished.publication.sid != sid
        assert republished.participant.is_local
        await expect(events, Reconnected)


async def test_disconnected_when_removed_and_iteration_ends(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.events() as events:
        async with admin(livekit_room) as server:
            await server.remove_participant(livekit_room.name, "alice")
        seen = await drain(events, WAIT_S)
    disconnected = [e for e in seen if isinstance(e, Disconnected)]
    assert [e.reason for e in disconnected] == [lkkit.DisconnectReason.PARTICIPANT_REMOVED]
    # The state change to DISCONNECTED comes first; `Disconnected` is the last event.
    assert seen[-1] is disconnected[0]
    assert ConnectionStateChanged(lkkit.ConnectionState.DISCONNECTED) in seen[:-1]
    assert alice.disconnect_reason is lkkit.DisconnectReason.PARTICIPANT_REMOVED


async def test_disconnected_when_the_room_is_deleted(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    async with alice.events(Disconnected) as a_events, bob.events(Disconnected) as b_events:
        async with admin(livekit_room) as server:
            await server.delete_room(livekit_room.name)
        for events in (a_events, b_events):
            with anyio.fail_after(WAIT_S):
                got = [e async for e in events]
            assert [e.reason for e in got] == [lkkit.DisconnectReason.ROOM_DELETED]


async def test_disconnected_on_leave_is_the_last_event(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with alice.events(Disconnected, ConnectionStateChanged) as events:
        await alice.aclose()
        with anyio.fail_after(WAIT_S):
            got = [e async for e in events]
    # Always exactly one, and last (lkkit fills in for the SDK when it skips it).
    assert got[-1] == Disconnected(lkkit.DisconnectReason.CLIENT_INITIATED)
    assert len([e for e in got if isinstance(e, Disconnected)]) == 1


# -- what Python cannot deliver ----------------------------------------------------------


async def test_stream_state_and_subscription_permission_are_not_delivered(
    livekit_room: LiveKitRoom,
) -> None:
    """The server sends both updates; the SDK's native layer drops them (documented)."""
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    _, sid = await publish_mic(bob)
    async with alice.events(*NOT_DELIVERED) as missing, alice.events(TrackSubscribed) as subs:
        await expect(subs, TrackSubscribed)
        # Revoking alice's permission makes the server send a subscription-permission
        # update (and unsubscribe her).
        bob.room.local_participant.set_track_subscription_permissions(allow_all_participants=False)
        assert await drain(missing, 3.0) == []
    # No stream-state update reaches the SDK, so the publication keeps the state it was
    # subscribed with, even after the server unsubscribed alice.
    assert alice.remote_participants["bob"].track_publications[sid].stream_state is (
        lkkit.StreamState.ACTIVE
    )


async def test_end_to_end_encryption_events(livekit_room: LiveKitRoom) -> None:
    options = lkkit.ConnectOptions(e2ee_key=b"a shared key of the test room!!!")
    alice = await livekit_room.join("alice", options=options)
    bob = await livekit_room.join("bob", options=options)
    async with (
        bob.events(ParticipantEncryptionStatusChanged) as status,
        bob.events(E2eeStateChanged) as states,
    ):
        source, _ = await publish_mic(alice)
        async with anyio.create_task_group() as tg:
            tg.start_soon(play, source, 20.0, 8_000)  # ends once both events are seen
            encrypted = await expect(status, ParticipantEncryptionStatusChanged)
            assert encrypted.participant.identity == "alice"
            assert encrypted.encrypted
            state = await expect(states, E2eeStateChanged)
            assert state.participant.identity == "alice"
            assert state.state is lkkit.EncryptionState.OK
            tg.cancel_scope.cancel()


def test_e2ee_key_is_checked_and_not_shown() -> None:
    with pytest.raises(lkkit.ConfigurationError):
        lkkit.ConnectOptions(e2ee_key=b"")
    with pytest.raises(lkkit.ConfigurationError):
        lkkit.ConnectOptions(e2ee_key="text")  # type: ignore[arg-type]
    assert "secret-key" not in repr(lkkit.ConnectOptions(e2ee_key=b"secret-key"))
