"""Helpers shared by the data-message tests (test_data*.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from livekit import rtc

import lkkit
from lkkit._data import DataMessage, DataSubscription
from lkkit.testing import LiveKitRoom

WAIT = 60.0  # generous guard on every wait; never a performance assertion


async def receive(subscription: DataSubscription[DataMessage]) -> DataMessage:
    """The next message, skipping late readiness pings."""
    with anyio.fail_after(WAIT):
        while True:
            message = await subscription.receive()
            if message.topic != "_ready":
                return message


async def _ping_until_received(
    receiver: lkkit.Session, ping: Callable[[], Awaitable[object]]
) -> None:
    """Send pings on the `_ready` topic until `receiver` gets one."""
    async with receiver.data.messages("_ready") as ready:
        while True:
            await ping()
            with anyio.move_on_after(0.3):
                await ready.receive()
                return


async def _until_known(identity: str, session: lkkit.Session) -> None:
    while identity not in session.remote_participants:
        await anyio.sleep(0.05)


async def wait_ready(sender: lkkit.Session, *receivers: lkkit.Session) -> None:
    """Wait until each receiver sees the sender and gets its packets."""
    with anyio.fail_after(WAIT):
        for receiver in receivers:
            await _until_known(receiver.local_participant.identity, sender)
            await _ping_until_received(receiver, lambda: sender.data.send(b"ping", topic="_ready"))


@asynccontextmanager
async def raw_peer(livekit_room: LiveKitRoom, identity: str = "raw") -> AsyncIterator[rtc.Room]:
    """A plain SDK peer in the test's room, disconnected at the end."""
    room = rtc.Room()
    await room.connect(livekit_room.url, livekit_room.token(identity))
    try:
        yield room
    finally:
        await room.disconnect()


async def wait_raw_to_lkkit(raw: rtc.Room, session: lkkit.Session) -> None:
    """Until `session` knows the raw peer and receives its packets.

    A participant that publishes nothing is announced to others up to ~3 s after it
    joined; its packets arrive without identity until then (see docs/data.md).
    """
    with anyio.fail_after(WAIT):
        await _until_known(raw.local_participant.identity, session)
        await _ping_until_received(
            session, lambda: raw.local_participant.publish_data(b"ping", topic="_ready")
        )
