"""Data interop with plain LiveKit peers (a raw `rtc.Room`) and the server API:
unframed packets both ways, chunked messages as seen by a plain peer, and native
text and byte streams both ways."""

from __future__ import annotations

import asyncio
import os

import anyio
import pytest
from livekit import api, rtc

import lkkit
from data_helpers import WAIT, raw_peer, receive, wait_raw_to_lkkit, wait_ready
from lkkit._chunking import MAGIC, MAX_PACKET_BYTES, Complete, Reassembler, Stored
from lkkit._data import DataKind
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio


class RawInbox:
    """What a raw peer receives through `data_received`."""

    def __init__(self, room: rtc.Room) -> None:
        self.packets: list[rtc.DataPacket] = []
        self._arrived = asyncio.Event()
        room.on("data_received", self._on_data)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != "_ready":
            self.packets.append(packet)
            self._arrived.set()

    async def wait_for(self, count: int) -> list[rtc.DataPacket]:
        with anyio.fail_after(WAIT):
            while len(self.packets) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.packets[:count]


async def wait_lkkit_to_raw(session: lkkit.Session, raw: rtc.Room) -> None:
    got = asyncio.Event()

    def on_data(packet: rtc.DataPacket) -> None:
        if packet.topic == "_ready":
            got.set()

    raw.on("data_received", on_data)
    try:
        with anyio.fail_after(WAIT):
            while not got.is_set():
                await session.data.send(b"ping", topic="_ready")
                with anyio.move_on_after(0.3):
                    await got.wait()
    finally:
        raw.off("data_received", on_data)


# -- packets from a plain peer ---------------------------------------------------------


async def test_plain_publish_data_arrives_untouched(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    async with raw_peer(livekit_room) as raw:
        await wait_raw_to_lkkit(raw, bob)
        payloads = [
            b"",
            b"\x00",
            b'{"type": "chat", "text": "hi"}',
            os.urandom(MAX_PACKET_BYTES),
            MAGIC + os.urandom(100),  # the magic, but no valid header: not a chunk
            os.urandom(40_000),  # above lkkit's limit: a plain peer may still send it
        ]
        async with bob.data.messages("p") as messages:
            for payload in payloads:
                await raw.local_participant.publish_data(payload, topic="p")
            await raw.local_participant.publish_data(b"lossy", topic="p", reliable=False)
            received = [await receive(messages) for _ in range(len(payloads) + 1)]
    reliable = [m for m in received if m.reliable]
    assert [m.payload for m in reliable] == payloads
    assert [(m.kind, m.sender) for m in received] == [(DataKind.PACKET, "raw")] * len(received)
    lossy = [m for m in received if not m.reliable]
    assert [m.payload for m in lossy] == [b"lossy"]
    assert bob.data.stats.total_dropped == 0


# -- packets to a plain peer -----------------------------------------------------------


async def test_single_packet_messages_reach_a_plain_peer_byte_identical(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    async with raw_peer(livekit_room) as raw:
        await wait_lkkit_to_raw(alice, raw)
        inbox = RawInbox(raw)
        payloads: list[bytes | str] = [b"", b"x", os.urandom(MAX_PACKET_BYTES), "text ✓"]
        for payload in payloads:
            await alice.data.send(payload, topic="plain")
        await alice.data.send(b"fast", topic="plain", reliable=False)
        packets = await inbox.wait_for(len(payloads) + 1)
    by_kind = {p.kind for p in packets}
    assert by_kind <= {rtc.DataPacketKind.KIND_RELIABLE, rtc.DataPacketKind.KIND_LOSSY}
    reliable = [p for p in packets if p.kind == rtc.DataPacketKind.KIND_RELIABLE]
    assert [p.data for p in reliable] == [p.encode() if isinstance(p, str) else p for p in payloads]
    assert all(p.topic == "plain" for p in packets)
    assert all(p.participant is not None and p.participant.identity == "alice" for p in packets)
    assert [p.data for p in packets if p.kind == rtc.DataPacketKind.KIND_LOSSY] == [b"fast"]


async def test_chunked_message_reaches_a_plain_peer_as_documented_chunks(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    payload = os.urandom(MAX_PACKET_BYTES + 1)
    async with raw_peer(livekit_room) as raw:
        await wait_lkkit_to_raw(alice, raw)
        inbox = RawInbox(raw)
        sent = await alice.data.send(payload, topic="big", native_stream=False)
        packets = await inbox.wait_for(2)
    assert sent.packets == 2
    assert all(len(p.data) <= MAX_PACKET_BYTES for p in packets)
    assert all(p.data.startswith(MAGIC) and p.topic == "big" for p in packets)
    # Anyone can reassemble them from the wire format page (here: with lkkit's codec).
    reassembler = Reassembler()
    results = [reassembler.feed("alice", p.data) for p in packets]
    assert isinstance(results[0], Stored)
    assert isinstance(results[1], Complete)
    assert results[1].payload == payload
    assert results[1].message_id == sent.message_id


# -- native streams --------------------------------------------------------------------


async def test_native_streams_from_a_plain_peer_arrive_as_messages(
    livekit_room: LiveKitRoom,
) -> None:
    bob = await livekit_room.join("bob")
    blob = os.urandom(1024 * 1024)
    async with raw_peer(livekit_room) as raw:
        await wait_raw_to_lkkit(raw, bob)
        async with bob.data.messages(["s", "other"]) as messages, bob.data.messages() as every:
            await raw.local_participant.send_text("héllo stream", topic="s")
            text = await receive(messages)
            await raw.local_participant.send_bytes(blob, topic="s", name="blob.bin")
            data = await receive(messages)
            # An incremental stream written in several pieces.
            writer = await raw.local_participant.stream_bytes("parts", topic="other")
            for piece in (b"one,", b"two,", b"three"):
                await writer.write(piece)
            await writer.aclose()
            parts = await receive(messages)
            seen_by_all = [await receive(every) for _ in range(3)]
    assert text.kind is DataKind.TEXT_STREAM
    assert text.text == "héllo stream"
    assert text.sender == "raw"
    assert text.participant is not None
    assert text.participant.identity == "raw"
    assert text.topic == "s"
    assert text.reliable
    assert data.kind is DataKind.BYTE_STREAM
    assert data.payload == blob
    assert parts.payload == b"one,two,three"
    assert parts.topic == "other"
    assert [m.payload for m in seen_by_all] == [text.payload, blob, b"one,two,three"]
    assert bob.data.stats.streams_received == 3
    assert bob.data.stats.pending_bytes == 0


async def test_large_sends_reach_plain_stream_handlers_in_chunks_within_15_kib(
    livekit_room: LiveKitRoom,
) -> None:
    """The default wire for a large message is a native stream, which a plain peer
    reads with its stream handlers; every chunk the SDK put on the wire (one per
    reader item for uncompressed bytes) stays within the 15 KiB packet budget."""
    alice = await livekit_room.join("alice")
    blob = os.urandom(1024 * 1024)
    long_text = "a text ✓ " * 5_000  # 50,000 characters, 60,000 UTF-8 bytes
    async with raw_peer(livekit_room) as raw:
        await wait_lkkit_to_raw(alice, raw)
        texts: asyncio.Queue[tuple[list[str], str, str]] = asyncio.Queue()
        blobs: asyncio.Queue[tuple[list[bytes], str, str]] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
            async def read() -> None:
                await texts.put(([chunk async for chunk in reader], identity, reader.info.topic))

            task = asyncio.get_running_loop().create_task(read())
            tasks.add(task)

        def on_bytes(reader: rtc.ByteStreamReader, identity: str) -> None:
            async def read() -> None:
                await blobs.put(([chunk async for chunk in reader], identity, reader.info.topic))

            task = asyncio.get_running_loop().create_task(read())
            tasks.add(task)

        raw.register_text_stream_handler("files", on_text)
        raw.register_byte_stream_handler("files", on_bytes)
        sent_small = await alice.data.send("a text ✓", topic="files", native_stream=True)
        sent_text = await alice.data.send(long_text, topic="files")
        sent_blob = await alice.data.send(blob, topic="files")
        with anyio.fail_after(WAIT):
            small = await texts.get()
            text = await texts.get()
            data = await blobs.get()
        await asyncio.gather(*tasks)
    assert ("".join(small[0]), small[1], small[2]) == ("a text ✓", "alice", "files")
    assert ("".join(text[0]), text[1], text[2]) == (long_text, "alice", "files")
    assert (b"".join(data[0]), data[1], data[2]) == (blob, "alice", "files")
    assert len(data[0]) >= len(blob) // 15_000
    assert max(len(chunk) for chunk in data[0]) <= 15_000
    # Text is compressed by the SDK when that helps, chunked at 15,000 compressed bytes
    # on the wire and decompressed whole at the receiver: its reader chunks are not
    # wire chunks, so only the (incompressible) bytes show the wire's chunking here.
    for sent in (sent_small, sent_text, sent_blob):
        assert (sent.packets, sent.chunked) == (None, False)
    assert sent_blob.size == len(blob)


async def test_lkkit_to_lkkit_native_stream(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    # A stream sent before bob's subscriber connection is up could be lost: wait until
    # alice's packets reach bob, then send each stream once.
    await wait_ready(alice, bob)
    async with bob.data.messages("n") as messages:
        await alice.data.send(b"first", topic="n", native_stream=True)
        first = await receive(messages)
        await alice.data.send(b"second", topic="n", native_stream=True, to=["bob"])
        second = await receive(messages)
    assert first.payload == b"first"
    assert second.payload == b"second"
    assert second.kind is DataKind.BYTE_STREAM


async def test_topic_whose_streams_the_application_handles(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    app_streams: list[str] = []

    def app_handler(reader: rtc.ByteStreamReader, identity: str) -> None:
        app_streams.append(identity)
        reader.close()

    bob.room.register_byte_stream_handler("shared", app_handler)
    async with raw_peer(livekit_room) as raw:
        await wait_raw_to_lkkit(raw, bob)
        async with bob.data.messages("shared") as messages:
            await raw.local_participant.send_bytes(b"for the app", topic="shared")
            await raw.local_participant.send_text("for lkkit", topic="shared")
            await raw.local_participant.publish_data(b"packet", topic="shared")
            received = [await receive(messages) for _ in range(2)]
        assert sorted(m.payload for m in received) == [b"for lkkit", b"packet"]
        assert app_streams == ["raw"]
    # lkkit registered nothing on the room: the application's handlers are its own.
    with pytest.raises(ValueError, match="already set"):
        bob.room.register_byte_stream_handler("shared", app_handler)
    bob.room.register_text_stream_handler("shared", lambda reader, identity: reader.close())


async def test_streams_on_every_topic_reach_an_all_topics_subscription(
    livekit_room: LiveKitRoom,
) -> None:
    bob = await livekit_room.join("bob")
    async with raw_peer(livekit_room) as raw:
        await wait_raw_to_lkkit(raw, bob)
        async with bob.data.messages() as everything, bob.data.messages(["b", "c"]) as some:
            await raw.local_participant.send_text("text on a", topic="a")
            await raw.local_participant.send_bytes(b"bytes on b", topic="b")
            await raw.local_participant.send_text("text, no topic")
            await raw.local_participant.send_bytes(os.urandom(40_000), topic="c")
            received = [await receive(everything) for _ in range(4)]
            received_some = [await receive(some) for _ in range(2)]
        assert [(m.topic, m.kind) for m in received] == [
            ("a", DataKind.TEXT_STREAM),
            ("b", DataKind.BYTE_STREAM),
            ("", DataKind.TEXT_STREAM),
            ("c", DataKind.BYTE_STREAM),
        ]
        assert [m.topic for m in received_some] == ["b", "c"]
        assert bob.data.stats.streams_received == 4
        # A stream no subscription wants is counted, not read and not lost silently.
        async with bob.data.messages("wanted") as wanted:
            unrouted = bob.data.stats.messages_unrouted
            await raw.local_participant.send_text("nobody wants this", topic="unwanted")
            await raw.local_participant.send_text("marker", topic="wanted")
            assert (await receive(wanted)).text == "marker"
        assert bob.data.stats.messages_unrouted == unrouted + 1
        assert bob.data.stats.streams_received == 5


# -- the server API --------------------------------------------------------------------


async def test_data_from_the_server_api_has_no_sender(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    server = livekit_room.server
    async with bob.data.messages("srv") as messages:
        lkapi = api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
        try:
            with anyio.fail_after(WAIT):
                while True:
                    await lkapi.room.send_data(
                        api.SendDataRequest(
                            room=livekit_room.name,
                            data=b"from the server",
                            kind=api.DataPacket.Kind.RELIABLE,
                            topic="srv",
                        )
                    )
                    with anyio.move_on_after(0.5):
                        message = await messages.receive()
                        break
        finally:
            await lkapi.aclose()
    assert message.payload == b"from the server"
    assert message.sender is None
    assert message.participant is None
    assert message.origin is lkkit.DataOrigin.UNKNOWN
    assert message.kind is DataKind.PACKET
