"""`RoomAdmin` against the real server: rooms, participants, data, and its errors."""

from __future__ import annotations

import anyio
import pytest
from livekit import rtc

import lkkit
from lkkit._admin import ParticipantInfo, RoomAdmin, RoomInfo
from lkkit._events import DataReceived, TrackMuted
from lkkit.testing import LiveKitRoom, LocalLiveKitServer

pytestmark = pytest.mark.anyio

WAIT_S = 10.0


def admin_for(server: LocalLiveKitServer) -> RoomAdmin:
    return RoomAdmin(server.url, server.credentials)


async def test_create_list_update_delete_rooms(
    livekit_server: LocalLiveKitServer, livekit_room: LiveKitRoom
) -> None:
    name = livekit_room.name
    async with admin_for(livekit_server) as admin:
        created = await admin.create_room(name, metadata="m0", empty_timeout=60, max_participants=5)
        assert isinstance(created, RoomInfo)
        assert (created.name, created.metadata, created.max_participants) == (name, "m0", 5)
        assert created.sid.startswith("RM_")
        assert created.empty_timeout == 60
        listed = await admin.list_rooms([name])
        assert [r.sid for r in listed] == [created.sid]
        assert name in {r.name for r in await admin.list_rooms()}
        updated = await admin.update_room_metadata(name, "m1")
        assert updated.metadata == "m1"
        await admin.delete_room(name)
        assert await admin.list_rooms([name]) == ()


async def test_update_and_remove_participants(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice", metadata="before")
    async with admin_for(livekit_room.server) as admin:
        (info,) = await admin.list_participants(livekit_room.name)
        assert isinstance(info, ParticipantInfo)
        assert (info.identity, info.metadata, info.kind) == (
            "alice",
            "before",
            lkkit.ParticipantKind.STANDARD,
        )
        permissions = lkkit.ParticipantPermissions(
            can_subscribe=True,
            can_publish=False,
            can_publish_data=True,
            can_publish_sources=(),
            can_update_metadata=True,
            hidden=False,
        )
        updated = await admin.update_participant(
            livekit_room.name,
            "alice",
            metadata="after",
            name="Alice",
            attributes={"a": "1"},
            permissions=permissions,
        )
        assert (updated.metadata, updated.name, dict(updated.attributes)) == (
            "after",
            "Alice",
            {"a": "1"},
        )
        assert updated.permissions == permissions
        # The SDK applies the metadata and the permissions as two separate updates.
        mine = alice.local_participant
        with anyio.fail_after(WAIT_S):
            while (mine.metadata, mine.permissions.can_publish) != ("after", False):
                await anyio.sleep(0.02)
        await admin.remove_participant(livekit_room.name, "alice")
        with anyio.fail_after(WAIT_S):
            assert await alice.wait_closed() is lkkit.DisconnectReason.PARTICIPANT_REMOVED


async def test_mute_and_send_data(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    source = rtc.AudioSource(48_000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    publication = await bob.room.local_participant.publish_track(track)
    async with (
        alice.events(DataReceived) as data,
        bob.events(TrackMuted) as muted,
        admin_for(livekit_room.server) as admin,
    ):
        await admin.mute_published_track(livekit_room.name, "bob", publication.sid)
        with anyio.fail_after(WAIT_S):
            event = await muted.__anext__()
        assert event.publication.sid == publication.sid
        await admin.send_data(
            livekit_room.name,
            b"only alice",
            topic="direct",
            to=["alice"],
            reliable=False,
        )
        with anyio.fail_after(WAIT_S):
            got = await data.__anext__()
        assert (got.payload, got.topic, got.participant) == (b"only alice", "direct", None)
        assert got.reliability is lkkit.DataReliability.LOSSY


async def test_server_errors_are_typed(livekit_room: LiveKitRoom) -> None:
    async with admin_for(livekit_room.server) as admin:
        with pytest.raises(lkkit.ServerApiError) as caught:
            await admin.update_participant("no-such-room-xyz", "ghost", metadata="x")
        assert caught.value.code == "not_found"
        assert caught.value.status == 404
        with pytest.raises(lkkit.ServerApiError):
            await admin.remove_participant(livekit_room.name, "ghost")


async def test_wrong_credentials_are_a_server_error(livekit_room: LiveKitRoom) -> None:
    other = lkkit.Credentials(api_key=livekit_room.credentials.api_key, api_secret="x" * 40)
    async with RoomAdmin(livekit_room.url, other) as admin:
        with pytest.raises(lkkit.ServerApiError) as caught:
            await admin.list_rooms()
    assert caught.value.status == 401


async def test_bad_input_is_refused_before_sending() -> None:
    credentials = lkkit.Credentials(api_key="k", api_secret="s" * 40)
    with pytest.raises(lkkit.ConfigurationError):
        RoomAdmin("ftp://x", credentials)
    with pytest.raises(lkkit.ConfigurationError):
        RoomAdmin("http://127.0.0.1:1", credentials, timeout=0)
    # Port 1 answers nothing: a request would fail with a connection error, so the
    # errors below prove nothing was sent.
    async with RoomAdmin("ws://127.0.0.1:1", credentials) as admin:
        with pytest.raises(lkkit.ConfigurationError):
            await admin.create_room("")
        with pytest.raises(lkkit.ConfigurationError):
            await admin.create_room("r", max_participants=-1)
        with pytest.raises(lkkit.ConfigurationError):
            await admin.update_participant("r", "alice")
        with pytest.raises(lkkit.ConfigurationError):
            await admin.update_participant("r", "alice", metadata="")
        with pytest.raises(lkkit.ConfigurationError):
            await admin.remove_participant("r", "")
        with pytest.raises(lkkit.DataTooLarge):
            await admin.send_data("r", b"x" * 15_361)
        # The same checks and errors as session.data.send.
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", 42)  # type: ignore[arg-type]
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", b"x", to="alice")
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", b"x", to=[])  # empty: refused, as in sessions
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", b"x", topic=7)  # type: ignore[arg-type]
