"""Helpers shared by the tests with the browser as the peer (test_browser*.py)."""

from __future__ import annotations

import base64

import anyio

import lkkit
from lkkit._data import DataMessage, DataSubscription
from lkkit.testing import BrowserPeer, BrowserTimeout, LiveKitRoom

WAIT = 20.0  # a guard on every wait, never a performance assertion


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def receive(messages: DataSubscription[DataMessage]) -> DataMessage:
    """The next message, skipping readiness pings."""
    with anyio.fail_after(WAIT):
        while True:
            message = await messages.receive()
            if message.topic != "_ready":
                return message


async def join(
    room: LiveKitRoom, peer: BrowserPeer, session: lkkit.Session, identity: str = "web"
) -> None:
    """Connect the browser as `identity` and wait until data flows both ways with the
    sender known on each side (a participant that publishes nothing is announced to
    the others up to ~3 s after it joined; its packets carry no identity until then)."""
    token = room.token(identity, can_update_own_metadata=True)
    await peer.connect(room.url, token)
    with anyio.fail_after(WAIT):
        await session.wait_for_participant(identity)
        async with session.data.messages("_ready") as ready:
            while True:
                await peer.call("publishData", b64(b"ping"), {"topic": "_ready"})
                with anyio.move_on_after(0.3):
                    if (await ready.receive()).sender == identity:
                        break
        sender = session.local_participant.identity
        while True:
            await session.data.send(b"ping", topic="_ready")
            try:
                await peer.wait_for(
                    "data",
                    lambda e: e["topic"] == "_ready" and e["identity"] == sender,
                    timeout=0.3,
                )
                return
            except BrowserTimeout:
                continue
