"""A minimal WebSocket client (RFC 6455) on asyncio streams, for the worker's one
connection to `/agent`.

Standard library only: aiohttp alone takes half a second to import, and a worker
should be registered by then. It speaks what the agent protocol needs: binary messages
both ways, fragmented messages, ping / pong and the closing handshake; no extensions,
no subprotocols.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
import urllib.parse
from collections.abc import Mapping

import anyio

__all__ = ["WebSocket", "WebSocketError", "connect"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_MESSAGE = 16 * 1024 * 1024  # a server message is a few KiB; refuse absurd sizes
_MAX_HEADER = 64 * 1024

_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(ConnectionError):
    """The handshake was refused, or the peer broke the protocol or the connection."""


class WebSocket:
    """One client connection. `receive()` from one task; `send()` from any."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._receiving = False
        self._close_seen = asyncio.Event()
        self._aborted = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, payload: bytes) -> None:
        """Send one binary message.

        Raises:
            WebSocketError: the connection is closed or broken.
        """
        await self._send_frame(_BINARY, payload)

    async def receive(self) -> bytes | str | None:
        """The next message (`bytes` or `str`), or `None` once the connection closed.
        Answers pings and the peer's close on the way.

        Raises:
            WebSocketError: the peer broke the protocol.
        """
        self._receiving = True
        try:
            return await self._receive()
        finally:
            self._receiving = False

    async def _receive(self) -> bytes | str | None:
        # A fragmented message grows in one buffer: a list of fragments would hold one
        # entry per empty fragment, and summing it per fragment took time in n^2.
        buffer = bytearray()
        kind: int | None = None  # of the fragmented message being received
        while not self._closed:
            try:
                fin, opcode, payload = await self._read_frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                await self._abort()
                return None
            if opcode == _PING:
                await self._send_frame(_PONG, payload)
            elif opcode == _PONG:
                pass
            elif opcode == _CLOSE:
                if not self._close_seen.is_set():  # the server began: echo its close
                    self._close_seen.set()
                    await self._send_frame(_CLOSE, payload[:2])
                await self._abort()
                return None
            elif opcode in (_TEXT, _BINARY, _CONTINUATION):
                if opcode != _CONTINUATION:
                    if kind is not None:
                        raise WebSocketError("a new message began inside a fragmented one")
                    kind = opcode
                elif kind is None:
                    if not fin:
                        raise WebSocketError("a continuation frame without a message")
                    kind = _BINARY
                if fin and not buffer:  # one frame: no copy
                    return _message(kind, payload)
                if len(buffer) + len(payload) > _MAX_MESSAGE:
                    raise WebSocketError("message larger than 16 MiB")
                buffer += payload
                if fin:
                    return _message(kind, bytes(buffer))
            else:
                raise WebSocketError(f"unknown opcode {opcode:#x}")
        return None

    async def close(self, code: int = 1000) -> None:
        """The closing handshake (bounded), then the TCP connection. Idempotent."""
        if self._closed:
            return
        try:
            self._close_seen.set()  # from here on, the server's close is the echo
            await self._send_frame(_CLOSE, struct.pack("!H", code))
            with anyio.move_on_after(1.0):
                if self._receiving:  # the reading task sees the echo and aborts
                    await self._aborted.wait()
                else:
                    while (await self._read_frame())[1] != _CLOSE:
                        pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        await self._abort()

    async def _abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._aborted.set()
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self._closed:
            raise WebSocketError("the WebSocket is closed")
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        async with self._write_lock:
            try:
                self._writer.write(header + mask + _masked(payload, mask))
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                await self._abort()
                raise WebSocketError(f"the connection broke: {exc}") from exc

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = await self._reader.readexactly(2)
        if first & 0x70:
            raise WebSocketError("reserved bits set (no extension was negotiated)")
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if length > _MAX_MESSAGE:
            raise WebSocketError(f"frame of {length} bytes")
        mask = await self._reader.readexactly(4) if second & 0x80 else b""
        payload = await self._reader.readexactly(length)
        return bool(first & 0x80), first & 0x0F, _masked(payload, mask) if mask else payload


def _message(kind: int, data: bytes) -> bytes | str:
    if kind != _TEXT:
        return data
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise WebSocketError("a text message that is not UTF-8") from exc


def _masked(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


async def connect(url: str, headers: Mapping[str, str]) -> WebSocket:
    """Open `ws://` or `wss://` `url` with extra request `headers` (bound it with
    `anyio.fail_after`).

    Raises:
        WebSocketError: the server did not switch protocols (its status and the start
            of its answer are in the message).
        OSError, TimeoutError: the TCP or TLS connection failed.
    """
    parsed = urllib.parse.urlsplit(url)
    secure = parsed.scheme == "wss"
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise WebSocketError(f"not a WebSocket URL: {url!r}")
    port = parsed.port or (443 if secure else 80)
    ssl_context = None
    if secure:
        import ssl  # only for wss: it is not free to import

        ssl_context = ssl.create_default_context()
    reader, writer = await asyncio.open_connection(
        parsed.hostname, port, ssl=ssl_context, limit=_MAX_HEADER
    )
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        host = parsed.netloc.rpartition("@")[2]
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise WebSocketError("the server closed or garbled the handshake") from exc
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 101:
            body = await _read_some(reader)
            raise WebSocketError(f"{status_line.strip()}: {body}".rstrip(": "))
        answer = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        if answer.get("sec-websocket-accept") != accept:
            raise WebSocketError("the server's Sec-WebSocket-Accept does not match")
    except BaseException:
        writer.close()
        raise
    return WebSocket(reader, writer)


async def _read_some(reader: asyncio.StreamReader) -> str:
    data = b""
    with anyio.move_on_after(0.5):
        with contextlib.suppress(ConnectionError):
            data = await reader.read(512)
    return data.decode("utf-8", "replace").strip()
