"""Incremental native streams: writing text and bytes as they are produced, files with a
name, MIME type and progress, reading streams chunk by chunk, with lkkit and the raw
Python SDK as peers, against the real server. Bad input is refused before sending."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import anyio
import pytest
from livekit import rtc

import lkkit
from data_helpers import WAIT, raw_peer, receive, wait_raw_to_lkkit, wait_ready
from lkkit._data import DataKind, DataOptions
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio


async def pair(room: LiveKitRoom) -> tuple[lkkit.Session, lkkit.Session]:
    alice = await room.join("alice")
    bob = await room.join("bob")
    await wait_ready(alice, bob)
    return alice, bob


async def test_text_written_token_by_token_is_read_as_it_arrives(
    livekit_room: LiveKitRoom,
) -> None:
    alice, bob = await pair(livekit_room)
    tokens = ["Hel", "lo, ", "wörld", " ✓"]
    async with bob.data.streams("lk.chat") as streams, bob.data.messages("lk.chat") as whole:
        async with await alice.data.open_text_stream(
            topic="lk.chat", attributes={"model": "tiny"}
        ) as writer:
            await writer.write(tokens[0])
            with anyio.fail_after(WAIT):
                stream = await streams.receive()
            chunks = stream.chunks()
            with anyio.fail_after(WAIT):
                # The first token is readable while the stream is still open.
                assert await anext(chunks) == tokens[0]
            for token in tokens[1:]:
                await writer.write(token)
        rest = [chunk async for chunk in chunks]
        message = await receive(whole)
    assert "".join([tokens[0], *rest]) == "".join(tokens)
    assert (stream.topic, stream.sender, stream.kind) == ("lk.chat", "alice", DataKind.TEXT_STREAM)
    assert stream.attributes["model"] == "tiny"
    assert writer.bytes_written == len("".join(tokens).encode())
    assert message.text == "".join(tokens)
    assert message.kind is DataKind.TEXT_STREAM
    assert message.attributes["model"] == "tiny"


async def test_a_byte_stream_carries_name_mime_type_and_attributes_to_a_raw_peer(
    livekit_room: LiveKitRoom,
) -> None:
    alice = await livekit_room.join("alice")
    async with raw_peer(livekit_room) as raw:
        await wait_raw_to_lkkit(raw, alice)
        got: asyncio.Queue[tuple[rtc.ByteStreamInfo, bytes]] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        def on_bytes(reader: rtc.ByteStreamReader, identity: str) -> None:
            async def read() -> None:
                data = b"".join([chunk async for chunk in reader])
                await got.put((reader.info, data))

            tasks.add(asyncio.get_running_loop().create_task(read()))

        raw.register_byte_stream_handler("files", on_bytes)
        parts = [os.urandom(20_000), os.urandom(5), os.urandom(40_000)]
        async with await alice.data.open_byte_stream(
            topic="files",
            name="scan.png",
            mime_type="image/png",
            attributes={"page": "1"},
            total_size=sum(map(len, parts)),
        ) as writer:
            for part in parts:
                await writer.write(part)
        with anyio.fail_after(WAIT):
            info, data = await got.get()
        await asyncio.gather(*tasks)
    assert data == b"".join(parts)
    assert (info.name, info.mime_type, info.topic) == ("scan.png", "image/png", "files")
    assert info.attributes == {"page": "1"}
    assert info.size == len(data)


async def test_send_file_reports_progress_and_arrives_with_its_name(
    livekit_room: LiveKitRoom, tmp_path: Path
) -> None:
    alice, bob = await pair(livekit_room)
    path = tmp_path / "map.png"
    content = os.urandom(100_000)
    path.write_bytes(content)
    progress: list[tuple[int, int]] = []
    async with bob.data.messages("files") as messages:
        sent = await alice.data.send_file(
            path,
            topic="files",
            attributes={"kind": "map"},
            on_progress=lambda *p: progress.append(p),
        )
        message = await receive(messages)
    assert message.payload == content
    assert (message.name, message.mime_type) == ("map.png", "image/png")
    assert message.attributes["kind"] == "map"
    assert message.kind is DataKind.BYTE_STREAM
    assert sent.size == len(content)
    assert progress[-1] == (len(content), len(content))
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})
    assert len(progress) == -(-len(content) // 15_000)


async def test_a_raw_peers_stream_text_is_read_incrementally(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    async with raw_peer(livekit_room) as raw:
        await wait_raw_to_lkkit(raw, bob)
        async with bob.data.streams() as streams:
            writer = await raw.local_participant.stream_text(topic="tokens")
            await writer.write("first ")
            with anyio.fail_after(WAIT):
                stream = await streams.receive()
                chunks = stream.chunks()
                assert await anext(chunks) == "first "
            await writer.write("second")
            await writer.aclose()
            with anyio.fail_after(WAIT):
                assert [chunk async for chunk in chunks] == ["second"]
    assert stream.sender == "raw"


async def test_a_stream_closed_by_an_exception_fails_for_its_readers(
    livekit_room: LiveKitRoom,
) -> None:
    alice, bob = await pair(livekit_room)
    async with bob.data.streams("t") as streams:
        with pytest.raises(RuntimeError, match="the model crashed"):
            async with await alice.data.open_text_stream(topic="t") as writer:
                await writer.write("partial")
                raise RuntimeError("the model crashed")
        with anyio.fail_after(WAIT):
            stream = await streams.receive()
            with pytest.raises(lkkit.StreamError):
                await stream.read()
    with pytest.raises(lkkit.StreamError, match="closed"):
        await writer.write("late")


async def test_a_reader_that_falls_behind_loses_only_its_stream(
    livekit_room: LiveKitRoom,
) -> None:
    alice, bob = await pair(livekit_room)
    bob.data.configure(DataOptions(max_pending_bytes=60_000))
    async with bob.data.streams("s") as slow, bob.data.streams("s") as fast:
        await alice.data.send(os.urandom(200_000), topic="s", native_stream=True)
        with anyio.fail_after(WAIT):
            slow_stream = await slow.receive()
            fast_stream = await fast.receive()
            fast_data = await fast_stream.read()
            with pytest.raises(lkkit.SubscriptionOverflow):
                await slow_stream.read()
    assert len(fast_data) == 200_000


async def test_bad_stream_input_is_refused_before_sending(
    livekit_room: LiveKitRoom, tmp_path: Path
) -> None:
    alice, bob = await pair(livekit_room)
    async with bob.data.messages() as messages:
        with pytest.raises(lkkit.InvalidDataArgument):
            await alice.data.send_file(tmp_path, topic="f")  # a directory
        with pytest.raises(lkkit.InvalidDataArgument):
            await alice.data.send_file(tmp_path / "missing.bin", topic="f")
        with pytest.raises(lkkit.InvalidDataArgument):
            await alice.data.open_text_stream(topic="t", attributes={"n": 1})  # type: ignore[dict-item]
        with pytest.raises(lkkit.InvalidDataArgument):
            await alice.data.open_byte_stream(topic="t", total_size=-1)
        with pytest.raises(lkkit.InvalidDataArgument):
            await alice.data.open_byte_stream(topic=7)  # type: ignore[arg-type]
        async with await alice.data.open_text_stream(topic="t") as writer:
            with pytest.raises(lkkit.InvalidDataArgument):
                await writer.write(b"bytes")  # type: ignore[arg-type]
            await writer.write("ok")
        async with await alice.data.open_byte_stream(topic="b") as byte_writer:
            with pytest.raises(lkkit.InvalidDataArgument):
                await byte_writer.write("text")  # type: ignore[arg-type]
        # Only the two streams opened left: their content is what was accepted.
        received = [await receive(messages) for _ in range(2)]
    assert sorted((m.topic, m.payload) for m in received) == [("b", b""), ("t", b"ok")]
