"""Data a browser reads with its standard handlers (livekit-client in headless
Chromium): lkkit's default wire for large messages, text streamed token by token both
ways, files with their name and MIME type, and the browser's streams on any topic."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
import pytest

from browser_helpers import WAIT, b64, join, receive
from lkkit._data import DataKind
from lkkit.testing import BrowserEvent, BrowserPeer, LiveKitRoom

pytestmark = pytest.mark.anyio


async def test_large_sends_reach_the_browsers_stream_handlers_by_default(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await join(livekit_room, browser_peer, alice)
    await browser_peer.call("registerByteStream", "big")
    await browser_peer.call("registerTextStream", "long")
    payload = os.urandom(1024 * 1024)
    text = "ünïcode text ✓ " * 3_000  # 45,000 characters, above one packet

    await alice.data.send(payload, topic="big")  # no option: the default wire
    await alice.data.send(text, topic="long")
    blob = await browser_peer.wait_for("byteStream", timeout=WAIT)
    received_text = await browser_peer.wait_for("textStream", timeout=WAIT)

    assert (blob["topic"], blob["identity"], blob["size"]) == ("big", "alice", len(payload))
    assert blob["sha256"] == hashlib.sha256(payload).hexdigest()
    assert received_text["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert received_text["identity"] == "alice"


async def test_text_streamed_by_lkkit_reaches_the_browser_token_by_token(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await join(livekit_room, browser_peer, alice)
    await browser_peer.call("registerTextChunks", "lk.chat")
    tokens = ["The ", "answer ", "is ", "42."]
    async with await alice.data.open_text_stream(
        topic="lk.chat", attributes={"lk.transcribed": "false"}
    ) as stream:
        for token in tokens:
            await stream.write(token)
            # Each token is in the browser before the next is written.

            def is_token(event: BrowserEvent, token: str = token) -> bool:
                return bool(event["chunk"] == token)

            await browser_peer.wait_for("textChunk", is_token, timeout=WAIT)
    end = await browser_peer.wait_for("textStreamEnd", timeout=WAIT)
    assert end["identity"] == "alice"
    assert end["attributes"]["lk.transcribed"] == "false"


async def test_the_browsers_streamed_text_is_read_incrementally_by_lkkit(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    bob = await livekit_room.join("bob")
    await join(livekit_room, browser_peer, bob)
    tokens = ["to", "ken", "s ✓"]
    written = anyio.Event()

    async def write() -> None:
        await browser_peer.call("streamText", "lk.chat", tokens, 300)
        written.set()

    async with bob.data.streams("lk.chat") as streams, bob.data.messages() as everything:
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            with anyio.fail_after(WAIT):
                stream = await streams.receive()
                reading = stream.chunks()
                first = await anext(reading)
                # Read while the browser is still writing (its tokens are 300 ms apart).
                assert not written.is_set()
                chunks = [first, *[chunk async for chunk in reading]]
        whole = await receive(everything)
    assert "".join(chunks) == "".join(tokens)
    assert (stream.sender, stream.kind) == ("web", DataKind.TEXT_STREAM)
    assert (whole.text, whole.kind, whole.topic) == (
        "".join(tokens),
        DataKind.TEXT_STREAM,
        "lk.chat",
    )


async def test_a_file_reaches_the_browser_with_its_name_and_mime_type(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer, tmp_path: Path
) -> None:
    alice = await livekit_room.join("alice")
    await join(livekit_room, browser_peer, alice)
    await browser_peer.call("registerByteStream", "files")
    path = tmp_path / "report.pdf"
    content = os.urandom(70_000)
    path.write_bytes(content)

    await alice.data.send_file(path, topic="files", attributes={"pages": "3"})
    event = await browser_peer.wait_for("byteStream", timeout=WAIT)

    assert (event["name"], event["mimeType"]) == ("report.pdf", "application/pdf")
    assert event["attributes"] == {"pages": "3"}
    assert event["sha256"] == hashlib.sha256(content).hexdigest()
    assert event["declaredSize"] == len(content)


async def test_the_browsers_streams_on_any_topic_reach_an_all_topics_subscription(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    bob = await livekit_room.join("bob")
    await join(livekit_room, browser_peer, bob)
    async with bob.data.messages() as everything:
        await browser_peer.call("sendText", "hello from the web", {"topic": "chat"})
        await browser_peer.call("sendBytes", b64(b"\x00\x01\x02"), {"topic": "bin"})
        received = [await receive(everything) for _ in range(2)]
    assert [(m.topic, m.kind, m.sender) for m in received] == [
        ("chat", DataKind.TEXT_STREAM, "web"),
        ("bin", DataKind.BYTE_STREAM, "web"),
    ]
    assert received[0].text == "hello from the web"
    assert received[1].payload == b"\x00\x01\x02"
    assert bob.data.stats.streams_received >= 2
