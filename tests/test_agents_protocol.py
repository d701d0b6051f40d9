"""The agent protocol codec and the agents' value checks: pure unit tests, no server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from livekit.protocol import agent as proto_agent

import lkkit
from lkkit.agents import Job, JobRequest, JobType, ProcessPoolOptions
from lkkit.agents import _protocol as wire
from lkkit.agents import _websocket as websocket


def worker_message(frame: bytes) -> proto_agent.WorkerMessage:
    message = proto_agent.WorkerMessage()
    message.ParseFromString(frame)
    return message


def test_the_agent_endpoint_of_a_server_url() -> None:
    assert wire.agent_url("ws://127.0.0.1:7880") == "ws://127.0.0.1:7880/agent"
    assert wire.agent_url("http://host:7880/") == "ws://host:7880/agent"
    assert wire.agent_url("https://example.livekit.cloud") == "wss://example.livekit.cloud/agent"


def test_worker_messages_carry_what_was_given() -> None:
    register = worker_message(wire.register(1, "helper", "1.0", 3)).register
    assert (register.type, register.agent_name, register.version) == (1, "helper", "1.0")
    accepted = worker_message(
        wire.availability("AJ_1", available=True, identity="a", attributes={"k": "v"})
    ).availability
    assert (accepted.job_id, accepted.available, accepted.participant_identity) == (
        "AJ_1",
        True,
        "a",
    )
    assert dict(accepted.participant_attributes) == {"k": "v"}
    refused = worker_message(wire.availability("AJ_2", available=False, identity="x"))
    assert not refused.availability.available
    assert refused.availability.participant_identity == ""  # nothing leaks into a refusal
    status = worker_message(wire.worker_status(full=True, load=0.5, job_count=3)).update_worker
    assert (status.status, status.load, status.job_count) == (
        proto_agent.WorkerStatus.WS_FULL,
        0.5,
        3,
    )
    failed = worker_message(wire.job_status("AJ_1", proto_agent.JobStatus.JS_FAILED, "boom"))
    assert (failed.update_job.job_id, failed.update_job.error) == ("AJ_1", "boom")


def test_a_server_message_decodes_and_anything_else_is_a_protocol_error() -> None:
    message = proto_agent.ServerMessage()
    message.register.worker_id = "AW_1"
    assert wire.decode_server_message(message.SerializeToString()).register.worker_id == "AW_1"
    with pytest.raises(lkkit.ProtocolError):
        wire.decode_server_message(b"")  # a message with nothing in it
    with pytest.raises(lkkit.ProtocolError):
        wire.decode_server_message(b"\xff\xff\xff\xff")


@given(st.binary(max_size=512))
def test_no_frame_crashes_the_decoder(frame: bytes) -> None:
    with contextlib.suppress(lkkit.ProtocolError):  # the only error a frame may cause
        wire.decode_server_message(frame)


def test_job_values() -> None:
    proto = proto_agent.Job(id="AJ_1", type=proto_agent.JobType.JT_PUBLISHER, agent_name="x")
    proto.room.name = "r"
    proto.participant.identity = "alice"
    job = Job._from_proto(proto)
    assert (job.type, job.room_name, job.participant_identity) == (JobType.PUBLISHER, "r", "alice")
    request = JobRequest(job)
    with pytest.raises(lkkit.ConfigurationError):
        request.accept(attributes={"k": 1})  # type: ignore[dict-item]
    assert not request.answered  # a refused accept leaves it unanswered
    request.reject()
    with pytest.raises(lkkit.SessionStateError):
        request.accept()


def test_bad_values_are_refused() -> None:
    with pytest.raises(lkkit.ConfigurationError):
        ProcessPoolOptions(idle_processes=-1)
    with pytest.raises(lkkit.ConfigurationError):
        ProcessPoolOptions(jobs_per_process=0)
    with pytest.raises(lkkit.InvalidGrant):
        lkkit.RoomAgent("")
    with pytest.raises(lkkit.InvalidGrant):
        lkkit.RoomAgent("helper", metadata=3)  # type: ignore[arg-type]


def test_lkkit_agent_run_refuses_a_bad_target() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lkkit",
            "agent",
            "run",
            "no_colon",
            "--url",
            "ws://127.0.0.1:1",
            "--api-key",
            "k",
            "--api-secret",
            "s" * 32,
        ],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 2
    assert b"MODULE:ENTRYPOINT" in result.stderr
    assert b"s" * 32 not in result.stderr + result.stdout


# -- the worker's token, WebSocket client and imports -----------------------------------


def test_the_registration_token_is_an_agent_grant_without_room_or_identity() -> None:
    credentials = lkkit.Credentials(api_key="worker-key", api_secret="s" * 32)
    token = lkkit.Token.verify(wire.registration_token("worker-key", "s" * 32), credentials)
    assert token.grants.agent
    assert (token.identity, token.grants.room, token.grants.room_join) == ("", None, False)
    other = lkkit.Credentials(api_key="worker-key", api_secret="t" * 32)
    with pytest.raises(lkkit.TokenSignatureInvalid):
        lkkit.Token.verify(wire.registration_token("worker-key", "s" * 32), other)


def test_a_worker_registers_before_the_sdk_pydantic_or_aiohttp_are_imported() -> None:
    # What `lkkit agent run` imports before it registers; the rest loads afterwards,
    # in a thread (worker start-up goal: 0.5 s, and these take over a second).
    code = (
        "import sys, lkkit, lkkit.agents, lkkit.cli\n"
        "from lkkit.agents import _protocol as wire\n"
        "wire.registration_token('k', 's')\n"
        "lkkit.Credentials.from_env\n"
        "from lkkit.agents._worker import _credentials_from_env\n"
        "import os\n"
        "os.environ.update(LIVEKIT_API_KEY='k', LIVEKIT_API_SECRET='s')\n"
        "_credentials_from_env()\n"
        "heavy = ('aiohttp', 'livekit.rtc', 'livekit.api', 'pydantic', 'jwt', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def _serve_websocket(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frames: list[bytes]
) -> bytes:
    """Answer the handshake, send `frames` raw, then return the client's first frame's
    (unmasked) payload and send a close."""
    head = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    for frame in frames:
        writer.write(frame)
    await writer.drain()
    _, second = await reader.readexactly(2)
    mask = await reader.readexactly(4)
    payload = await reader.readexactly(second & 0x7F)
    writer.write(b"\x88\x02\x03\xe8")  # close, 1000
    await writer.drain()
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.anyio
async def test_the_websocket_client_reassembles_fragments_and_answers_pings() -> None:
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    frames = [
        b"\x89\x01p",  # ping "p": the client must answer pong "p"
        b"\x02\x02ab",  # binary "ab", not final
        b"\x80\x02cd",  # continuation "cd", final
        b"\x81\x02hi",  # text "hi"
    ]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await _serve_websocket(reader, writer, frames))
        await reader.read()  # the client closes its end
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ws = await websocket.connect(f"ws://127.0.0.1:{port}/agent", {"X-Test": "1"})
        assert await ws.receive() == b"abcd"
        assert await ws.receive() == "hi"
        assert await asyncio.wait_for(received, 5) == b"p"  # the pong, unmasked
        assert await ws.receive() is None  # the server's close
        assert ws.closed
        with pytest.raises(websocket.WebSocketError):
            await ws.send(b"late")


@pytest.mark.anyio
async def test_a_refused_websocket_handshake_names_the_status() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\n\r\ninvalid token")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(websocket.WebSocketError, match="401 Unauthorized: invalid token"):
            await websocket.connect(f"ws://127.0.0.1:{port}/agent", {})
    with pytest.raises(websocket.WebSocketError, match="not a WebSocket URL"):
        await websocket.connect("http://127.0.0.1/agent", {})
