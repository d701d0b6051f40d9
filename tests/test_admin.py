"""`RoomAdmin` against the real server: rooms, participants, data, and its errors."""

from __future__ import annotations

import random
from collections.abc import Awaitable

import anyio
import anyio.abc
import pytest
from livekit import rtc

import lkkit
from lkkit._admin import ParticipantInfo, PublishedTrackInfo, RoomAdmin, RoomInfo
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


async def test_get_participant_lists_its_tracks(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice", metadata="m")
    async with alice.audio.publish("mic") as mic, admin_for(livekit_room.server) as admin:
        # The server lists a track once its negotiation is done, a little after publish.
        with anyio.fail_after(WAIT_S):
            while not (info := await admin.get_participant(livekit_room.name, "alice")).tracks:
                await anyio.sleep(0.05)
        assert (info.identity, info.metadata) == ("alice", "m")
        (track,) = info.tracks
        assert track == PublishedTrackInfo(
            sid=mic.publication.sid,
            name="mic",
            kind=lkkit.TrackKind.AUDIO,
            source=lkkit.TrackSource.MICROPHONE,
            muted=False,
        )
        muted = await admin.mute_published_track(livekit_room.name, "alice", track.sid)
        assert (muted.sid, muted.muted) == (track.sid, True)


async def test_missing_rooms_participants_tracks_and_dispatches_are_not_found(
    livekit_room: LiveKitRoom,
) -> None:
    room = livekit_room.name
    ghost_room = f"{room}-missing"
    await livekit_room.join("alice")
    async with admin_for(livekit_room.server) as admin:
        calls: list[tuple[str, Awaitable[object]]] = [
            (f"no room {ghost_room!r}", admin.delete_room(ghost_room)),
            (f"no room {ghost_room!r}", admin.update_room_metadata(ghost_room, "m")),
            # The server answers these two for a missing room with a 503 after 3 s.
            (f"no room {ghost_room!r}", admin.send_data(ghost_room, b"x")),
            (f"no room {ghost_room!r}", admin.list_dispatches(ghost_room)),
            (f"no room {ghost_room!r}", admin.send_data(ghost_room, b"x" * 100_000)),
            (
                f"no participant 'alice' in room {ghost_room!r}",
                admin.get_participant(ghost_room, "alice"),
            ),
            (f"no participant 'ghost' in room {room!r}", admin.get_participant(room, "ghost")),
            (f"no participant 'ghost' in room {room!r}", admin.remove_participant(room, "ghost")),
            (
                f"no participant 'ghost' in room {room!r}",
                admin.update_participant(room, "ghost", metadata="x"),
            ),
            (
                f"no participant 'ghost' in room {room!r}",
                admin.mute_published_track(room, "ghost", "TR_nope"),
            ),
            (
                f"'alice' publishes no track 'TR_nope' in room {room!r}",
                admin.mute_published_track(room, "alice", "TR_nope"),
            ),
            (f"no dispatch 'AD_nope' in room {room!r}", admin.delete_dispatch(room, "AD_nope")),
        ]
        for what, call in calls:
            with pytest.raises(lkkit.ServerApiNotFound) as caught:
                await call
            assert str(caught.value) == f"not_found: {what}"
            assert (caught.value.status, caught.value.code) == (404, "not_found")
            assert isinstance(caught.value, LookupError)
        # Looking did not create the room (a join for the large send would have).
        assert await admin.list_rooms([ghost_room]) == ()
        assert await admin.list_participants(ghost_room) == ()


async def test_wrong_credentials_are_not_allowed(livekit_room: LiveKitRoom) -> None:
    right = livekit_room.credentials
    for wrong in (
        lkkit.Credentials(api_key=right.api_key, api_secret="x" * 40),
        lkkit.Credentials(api_key="no-such-key", api_secret=right.api_secret),
    ):
        async with RoomAdmin(livekit_room.url, wrong) as admin:
            for call in (
                admin.list_rooms(),
                admin.create_room(livekit_room.name),
                admin.get_participant(livekit_room.name, "alice"),
                admin.send_data(livekit_room.name, b"x" * 100_000),
            ):
                with pytest.raises(lkkit.ServerApiNotAllowed) as caught:
                    await call
                assert caught.value.status == 401
                assert isinstance(caught.value, PermissionError)
                assert wrong.api_secret not in str(caught.value)
    async with admin_for(livekit_room.server) as admin:
        assert await admin.list_rooms([livekit_room.name]) == ()


async def test_a_server_that_does_not_answer_is_unreachable() -> None:
    credentials = lkkit.Credentials(api_key="k", api_secret="s" * 40)
    async with RoomAdmin("ws://127.0.0.1:1", credentials) as admin:
        with pytest.raises(
            lkkit.ServerUnreachable, match=r"^cannot reach the server API at ws://127\.0\.0\.1:1: "
        ):
            await admin.list_rooms()
    # A listener that accepts and never answers: the request timeout makes it unreachable.
    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
    ):
        accepted: list[anyio.abc.SocketStream] = []

        async def hold(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                accepted.append(stream)
                await anyio.sleep_forever()

        tg.start_soon(listener.serve, hold)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with RoomAdmin(f"http://127.0.0.1:{port}", credentials, timeout=0.5) as admin:
            with pytest.raises(lkkit.ServerUnreachable, match=r"no answer within 0\.5 s"):
                await admin.create_room("r")
        assert accepted  # the request did reach the listener
        tg.cancel_scope.cancel()


async def test_large_server_data_goes_as_a_native_stream_from_a_hidden_sender(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    big = random.randbytes(256_000)  # incompressible: the SDK may compress streams
    text = "héllo wörld " * 20_000  # 260,000 UTF-8 bytes, 240,000 characters
    progress: list[tuple[int, int]] = []
    async with (
        alice.data.messages() as to_alice,
        bob.data.messages() as to_bob,
        admin_for(livekit_room.server) as admin,
    ):
        sender = await admin.send_data(
            livekit_room.name,
            big,
            topic="big",
            to=["alice"],
            on_progress=lambda *p: progress.append(p),
        )
        assert sender is not None
        assert sender.startswith("lkkit-server-")
        text_sender = await admin.send_data(livekit_room.name, text, topic="text")
        assert text_sender != sender
        with anyio.fail_after(WAIT_S):
            got = await to_alice.__anext__()
            got_text = await to_alice.__anext__()
            bob_text = await to_bob.__anext__()
        # The hidden sender left, and nobody saw it join.
        identities = {p.identity for p in await admin.list_participants(livekit_room.name)}
        assert identities == {"alice", "bob"}
    # The hidden sender is never announced: receivers see no sender, as for a packet.
    assert (got.payload, got.topic, got.sender) == (big, "big", None)
    assert got.kind is lkkit.DataKind.BYTE_STREAM
    assert (got_text.text, got_text.topic, got_text.kind) == (
        text,
        "text",
        lkkit.DataKind.TEXT_STREAM,
    )
    assert bob_text.text == text  # and bob got no byte stream: it was to alice only
    assert not [i for i in alice.remote_participants if i.startswith("lkkit-server-")]
    assert progress[-1] == (len(big), len(big))
    assert [sent for sent, _ in progress] == sorted({sent for sent, _ in progress})
    assert len(progress) == 4  # 64 KiB writes


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
            await admin.send_data("r", b"x" * 15_361, reliable=False)
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", b"x" * 15_361, on_progress=5)  # type: ignore[arg-type]
        # The same checks and errors as session.data.send.
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", 42)  # type: ignore[arg-type]
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", b"x", to="alice")
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", b"x", to=[])  # empty: refused, as in sessions
        with pytest.raises(lkkit.InvalidDataArgument):
            await admin.send_data("r", b"x", topic=7)  # type: ignore[arg-type]
