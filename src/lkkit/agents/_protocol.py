"""LiveKit's agent worker protocol on the wire: binary protobuf frames over the
WebSocket at `/agent` (livekit-server's `pkg/agent`, `livekit.protocol.agent`).

Pure functions: what the worker sends, built from plain values, and what the server
sends, decoded with a typed error for anything that is not a server message.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import urllib.parse
from collections.abc import Mapping

from google.protobuf.message import DecodeError
from livekit.protocol import agent as proto_agent

from .._exceptions import ProtocolError

__all__ = [
    "ProtocolError",
    "agent_url",
    "availability",
    "decode_server_message",
    "job_status",
    "ping",
    "register",
    "registration_token",
    "worker_status",
]


def agent_url(url: str) -> str:
    """The worker endpoint of a server: `ws(s)://host:port/agent`."""
    parsed = urllib.parse.urlparse(url)
    scheme = {"http": "ws", "https": "wss"}.get(parsed.scheme, parsed.scheme)
    path = parsed.path.rstrip("/") + "/agent"
    return urllib.parse.urlunparse((scheme, parsed.netloc, path, "", "", ""))


def decode_server_message(data: bytes) -> proto_agent.ServerMessage:
    """A binary frame from the server.

    Raises:
        ProtocolError: not a `ServerMessage` with one of its known messages.
    """
    message = proto_agent.ServerMessage()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ProtocolError(f"undecodable agent protocol frame ({len(data)} bytes)") from exc
    if message.WhichOneof("message") is None:
        raise ProtocolError(f"agent protocol frame without a message ({len(data)} bytes)")
    return message


def _frame(message: proto_agent.WorkerMessage) -> bytes:
    return message.SerializeToString()


def register(job_type: int, agent_name: str, version: str, ping_interval: int) -> bytes:
    message = proto_agent.WorkerMessage()
    request = message.register
    request.type = job_type  # type: ignore[assignment]
    request.agent_name = agent_name
    request.version = version
    request.ping_interval = ping_interval
    return _frame(message)


def availability(
    job_id: str,
    *,
    available: bool,
    identity: str = "",
    name: str = "",
    metadata: str = "",
    attributes: Mapping[str, str] | None = None,
) -> bytes:
    message = proto_agent.WorkerMessage()
    response = message.availability
    response.job_id = job_id
    response.available = available
    if available:
        response.participant_identity = identity
        response.participant_name = name
        response.participant_metadata = metadata
        response.participant_attributes.update(attributes or {})
    return _frame(message)


def job_status(job_id: str, status: int, error: str = "") -> bytes:
    message = proto_agent.WorkerMessage()
    update = message.update_job
    update.job_id = job_id
    update.status = status  # type: ignore[assignment]
    update.error = error
    return _frame(message)


def worker_status(*, full: bool, load: float, job_count: int) -> bytes:
    message = proto_agent.WorkerMessage()
    update = message.update_worker
    update.status = (
        proto_agent.WorkerStatus.WS_FULL if full else proto_agent.WorkerStatus.WS_AVAILABLE
    )
    update.load = load
    update.job_count = job_count
    return _frame(message)


def ping(timestamp_ms: int) -> bytes:
    message = proto_agent.WorkerMessage()
    message.ping.timestamp = timestamp_ms
    return _frame(message)


def registration_token(api_key: str, api_secret: str, ttl_s: int = 600) -> str:
    """The worker's JWT: an `agent` video grant, no room, no identity (HS256).

    Signed here with `hmac` rather than by [`Token`][lkkit.Token], which needs
    pydantic, PyJWT and livekit-api: half a second of imports before a worker could
    register. A test checks that `Token.verify` reads it as an agent grant.
    """
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iss": api_key, "nbf": now, "exp": now + ttl_s, "video": {"agent": True}}
    signing_input = f"{_b64_json(header)}.{_b64_json(claims)}"
    signature = hmac.digest(api_secret.encode(), signing_input.encode(), "sha256")
    return f"{signing_input}.{_b64(signature)}"


def _b64_json(value: object) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
