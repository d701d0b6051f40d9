"""The local participant updating its own metadata, name and attributes, against a real
server (`lkkit._self_updates`): peers see typed events, a token without
`canUpdateOwnMetadata` gets a typed error (the SDK alone reports success), and values
of the wrong type are refused before sending."""

from __future__ import annotations

from typing import Any, TypeVar

import anyio
import pytest

import lkkit
from lkkit import _self_updates
from lkkit._event_bus import EventSubscription
from lkkit._events import Event
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

WAIT = 30.0  # a guard on every wait, never a performance assertion
_E = TypeVar(
    "_E",
    bound=lkkit.ParticipantMetadataChanged
    | lkkit.ParticipantNameChanged
    | lkkit.ParticipantAttributesChanged,
)


async def next_of(events: EventSubscription[Event], kind: type[_E], identity: str) -> _E:
    with anyio.fail_after(WAIT):
        async for event in events:
            if isinstance(event, kind) and event.participant.identity == identity:
                return event
    raise AssertionError("the subscription ended")


async def test_updates_reach_a_peer_as_typed_events(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join(
        "alice", name="Alice", metadata="m0", attributes={"k": "1"}, can_update_own_metadata=True
    )
    bob = await livekit_room.join("bob")
    await bob.wait_for_participant("alice")
    kinds = (
        lkkit.ParticipantMetadataChanged,
        lkkit.ParticipantNameChanged,
        lkkit.ParticipantAttributesChanged,
    )
    async with bob.events(*kinds) as events:
        await alice.set_metadata('{"mood": "curious"}')
        metadata = await next_of(events, lkkit.ParticipantMetadataChanged, "alice")
        assert (metadata.old_metadata, metadata.metadata) == ("m0", '{"mood": "curious"}')
        # The local view follows the server's participant update, which may come just
        # after the server accepted the change.
        with anyio.fail_after(WAIT):
            while alice.local_participant.metadata != '{"mood": "curious"}':
                await anyio.sleep(0.01)

        await alice.set_name("Alice Liddell")
        name = await next_of(events, lkkit.ParticipantNameChanged, "alice")
        assert (name.old_name, name.name) == ("Alice", "Alice Liddell")

        # The server merges attributes; "" removes one.
        await alice.set_attributes({"room": "kitchen"})
        added = await next_of(events, lkkit.ParticipantAttributesChanged, "alice")
        assert dict(added.changed) == {"room": "kitchen"}
        await alice.set_attributes({"k": ""})
        removed = await next_of(events, lkkit.ParticipantAttributesChanged, "alice")
        assert dict(removed.changed) == {"k": ""}
    assert dict(bob.remote_participants["alice"].attributes) == {"room": "kitchen"}
    assert bob.remote_participants["alice"].name == "Alice Liddell"


@pytest.mark.parametrize(
    ("method", "value"),
    [("set_metadata", "m1"), ("set_name", "n1"), ("set_attributes", {"k": "v"})],
)
async def test_without_can_update_own_metadata_the_server_refuses(
    livekit_room: LiveKitRoom, method: str, value: Any
) -> None:
    alice = await livekit_room.join("alice", metadata="m0", name="Alice")
    with pytest.raises(lkkit.ParticipantUpdateDenied) as info:
        await getattr(alice, method)(value)
    assert isinstance(info.value, PermissionError)
    assert info.value.reason == "NotAllowed"
    assert "canUpdateOwnMetadata" in str(info.value)
    participant = alice.local_participant
    assert (participant.metadata, participant.name, dict(participant.attributes)) == (
        "m0",
        "Alice",
        {},
    )


async def test_metadata_over_the_server_limit(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice", can_update_own_metadata=True)
    with pytest.raises(lkkit.ParticipantUpdateError) as info:
        await alice.set_metadata("m" * 1_000_000)
    assert not isinstance(info.value, lkkit.ParticipantUpdateDenied)
    assert info.value.reason == "LimitExceeded"


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("set_metadata", None),
        ("set_metadata", b"bytes"),
        ("set_metadata", "\udc80"),
        ("set_name", 5),
        ("set_attributes", [("k", "v")]),
        ("set_attributes", {"k": 1}),
        ("set_attributes", {1: "v"}),
        ("set_attributes", {"k": None}),
    ],
)
async def test_values_of_the_wrong_type_are_refused_before_sending(
    livekit_room: LiveKitRoom, monkeypatch: pytest.MonkeyPatch, method: str, value: Any
) -> None:
    alice = await livekit_room.join("alice", can_update_own_metadata=True)

    async def update(*args: object, **kwargs: object) -> str:
        raise AssertionError("sent")

    monkeypatch.setattr(_self_updates, "update_local_participant", update)
    with pytest.raises(lkkit.InvalidParticipantUpdate):
        await getattr(alice, method)(value)


async def test_not_connected(livekit_room: LiveKitRoom) -> None:
    session = lkkit.connect(livekit_room.url, livekit_room.token("x"))
    with pytest.raises(lkkit.NotConnected):
        await session.set_metadata("m")
