from __future__ import annotations

import asyncio
import time

import anyio
import pytest

import lkkit
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio


async def wait_until(predicate: object, timeout: float = 5.0) -> float:
    """Poll `predicate` until true; return the seconds it took."""
    assert callable(predicate)
    start = time.monotonic()
    with anyio.fail_after(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_connect_and_leave(livekit_room: LiveKitRoom) -> None:
    token = livekit_room.token("alice", name="Alice", metadata="m1")
    async with lkkit.connect(livekit_room.url, token) as session:
        assert session.is_connected
        assert session.connection_state is lkkit.ConnectionState.CONNECTED
        assert session.room_name == livekit_room.name
        assert session.room_sid.startswith("RM_")
        me = session.local_participant
        assert (me.identity, me.name, me.metadata) == ("alice", "Alice", "m1")
        assert me.kind is lkkit.ParticipantKind.STANDARD
        assert me.permissions.can_publish
    assert not session.is_connected
    assert session.connection_state is lkkit.ConnectionState.DISCONNECTED
    assert session.disconnect_reason is lkkit.DisconnectReason.CLIENT_INITIATED
    with pytest.raises(lkkit.NotConnected):
        session.require_connected()
