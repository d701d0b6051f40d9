"""`LocalLiveKitCluster`: several livekit-server nodes sharing one Redis, on loopback."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import anyio.to_thread

from .._exceptions import ConfigurationError, ServerStartError
from .._tokens import Credentials
from ._redis_install import ensure_redis_server
from ._sandbox import check_loopback_only
from ._server import LocalLiveKitServer

__all__ = ["LocalLiveKitCluster"]

_HOST = "127.0.0.1"
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_START_ATTEMPTS = 3
_KILL_TIMEOUT_S = 5.0
_REGION_PREFIX = "node-"
# livekit-server's Redis keys (pkg/routing/redisrouter.go): node id -> `livekit.Node`
# (protobuf; its field 7 is the region), and room name -> node id.
_NODES_KEY = "nodes"
_ROOM_NODE_KEY = "room_node_map"
_NODE_REGION_FIELD = 7


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


_Reply = bytes | int | None | list["_Reply"]  # RESP: simple/bulk string, integer, nil, array


def _read_reply(reply: BinaryIO) -> _Reply:
    line = reply.readline()
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reply.read(size + 2)[:size]
    if kind == b"*":
        return [_read_reply(reply) for _ in range(int(rest))]
    raise OSError(f"Redis answered {line!r}")


def _redis_call(port: int, *words: str, timeout: float = 1.0) -> _Reply:
    """One command to the Redis on `port` (RESP, the standard library is enough)."""
    encoded = [w.encode() for w in words]
    request = b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded)
    with socket.create_connection((_HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        with sock.makefile("rb") as reply:
            return _read_reply(reply)


def _protobuf_string(message: bytes, field: int) -> str | None:
    """The string field `field` of a protobuf message's top level (no schema needed)."""

    def varint(position: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = message[position]
            value |= (byte & 0x7F) << shift
            position += 1
            shift += 7
            if not byte & 0x80:
                return value, position

    position = 0
    while position < len(message):
        tag, position = varint(position)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, position = varint(position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        elif wire_type == 2:
            size, position = varint(position)
            if number == field:
                return message[position : position + size].decode(errors="replace")
            position += size
        else:
            return None
    return None


class LocalLiveKitCluster:
    """Several livekit-server nodes on 127.0.0.1 sharing one Redis: LiveKit's
    multi-node deployment in one sandbox, for tests.

    ```python
    async with LocalLiveKitCluster(nodes=2) as cluster:
        alice = await LiveKitRoom(cluster.nodes[0], "demo").join("alice")  # via node 0
        bob = await LiveKitRoom(cluster.nodes[1], "demo").join("bob")  # via node 1
        cluster.kill(1)  # SIGKILL node 1
    ```

    or `with`. It starts one `redis-server` (found or installed by
    `python -m lkkit.testing install-redis`) on a free port of 127.0.0.1, with no
    config file, no persistence (`--save ''`, `--appendonly no`) and its files in a
    temporary folder, then `nodes` [`LocalLiveKitServer`][lkkit.testing.LocalLiveKitServer]s,
    each on its own ports, all with the same API key and secret and that Redis as
    their shared state (`redis.address`).

    **Where a room lives.** A LiveKit room is hosted by one node; a participant
    connected through another node has its signalling relayed to it through Redis
    and sends its media to the hosting node directly. Each node here is its own
    region (`node-0`, `node-1`, ...) under LiveKit's region-aware node selector, so a
    room is hosted by the node it was first created or joined through: a test
    decides where its rooms live. [`room_node`][lkkit.testing.LocalLiveKitCluster.room_node]
    says which node holds one.

    Stopping stops every node (as `LocalLiveKitServer.stop` does), then Redis
    (SIGTERM, SIGKILL after 5 s). The nodes' logs stay readable.
    """

    def __init__(
        self,
        nodes: int = 2,
        *,
        binary: Path | str | None = None,
        redis_server: Path | str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        log_level: str = "info",
        check_network: bool = True,
    ) -> None:
        if nodes < 1:
            raise ConfigurationError(f"a cluster needs at least one node, got nodes={nodes}")
        self._size = nodes
        self._binary = binary
        self._redis_binary = Path(redis_server) if redis_server is not None else None
        self._credentials = Credentials(
            api_key=api_key or f"lkkit_{secrets.token_hex(6)}",
            api_secret=api_secret or secrets.token_urlsafe(36),
        )
        self._log_level = log_level
        self._check_network = check_network
        self._nodes: tuple[LocalLiveKitServer, ...] = ()
        self._redis: subprocess.Popen[bytes] | None = None
        self._redis_port = 0
        self._workdir: Path | None = None
        self._node_ids: dict[bytes, int] = {}

    # -- what a test needs ---------------------------------------------------------------

    @property
    def nodes(self) -> tuple[LocalLiveKitServer, ...]:
        """The nodes, in order: `nodes[i]` is region `node-i`."""
        self._require_started()
        return self._nodes

    @property
    def urls(self) -> tuple[str, ...]:
        """Each node's WebSocket URL, `ws://127.0.0.1:<port>`, in node order."""
        return tuple(node.url for node in self.nodes)

    @property
    def credentials(self) -> Credentials:
        """The API key and secret every node accepts."""
        return self._credentials

    @property
    def api_key(self) -> str:
        return self._credentials.api_key

    @property
    def api_secret(self) -> str:
        return self._credentials.api_secret

    @property
    def redis_address(self) -> str:
        """The shared Redis, `127.0.0.1:<port>`."""
        self._require_started()
        return f"{_HOST}:{self._redis_port}"

    def kill(self, node: int) -> None:
        """SIGKILL node `node` (a crash: no goodbye to clients or to Redis) and wait
        until it is gone. The others go on; it is not restarted."""
        server = self.nodes[node]
        pid = server.pid
        if pid is None or not server.is_running:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_TIMEOUT_S
        while server.is_running:  # `is_running` polls, which reaps the process
            if time.monotonic() > deadline:
                raise ServerStartError(f"node {node} (pid {pid}) survived SIGKILL")
            time.sleep(0.01)

    def room_node(self, room: str) -> int | None:
        """The index of the node hosting `room`, as recorded in Redis, or `None` when
        no node holds it (not created yet, or closed).

        A room hosted by a node that was killed stays recorded there until someone
        joins it again (through a surviving node, which then hosts it).
        """
        self._require_started()
        node_id = _redis_call(self._redis_port, "HGET", _ROOM_NODE_KEY, room)
        if not isinstance(node_id, bytes):
            return None
        if node_id not in self._node_ids:
            self._map_node_ids()  # a node restarted under a new id
        return self._node_ids.get(node_id)

    def _map_node_ids(self) -> None:
        """Learn which node id is which node, from the region each node registered."""
        reply = _redis_call(self._redis_port, "HGETALL", _NODES_KEY)
        pairs = zip(reply[::2], reply[1::2], strict=True) if isinstance(reply, list) else ()
        for node_id, node in pairs:
            if not isinstance(node_id, bytes) or not isinstance(node, bytes):
                continue
            region = _protobuf_string(node, _NODE_REGION_FIELD) or ""
            index = region.removeprefix(_REGION_PREFIX)
            if region.startswith(_REGION_PREFIX) and index.isdigit():
                self._node_ids[node_id] = int(index)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start Redis, then the nodes, and wait until all answer (blocking)."""
        if self._workdir is not None:
            raise ServerStartError("this LocalLiveKitCluster was already started")
        if self._check_network:
            check_loopback_only()
        redis_binary = self._redis_binary or ensure_redis_server(install=False)
        self._workdir = Path(tempfile.mkdtemp(prefix="lkkit-cluster-"))
        weakref.finalize(self, shutil.rmtree, self._workdir, ignore_errors=True)
        self._start_redis(redis_binary, self._workdir)
        redis = {"address": f"{_HOST}:{self._redis_port}"}
        regions = [f"{_REGION_PREFIX}{i}" for i in range(self._size)]
        nodes = []
        for region in regions:
            node = LocalLiveKitServer(
                binary=self._binary,
                api_key=self.api_key,
                api_secret=self.api_secret,
                log_level=self._log_level,
                check_network=False,  # checked above
                extra_config={
                    "redis": redis,
                    "region": region,
                    "node_selector": {
                        "kind": "regionaware",
                        # Far apart: each node's own region is the nearest to it.
                        "regions": [
                            {"name": name, "lat": 0.0, "lon": 10.0 * i}
                            for i, name in enumerate(regions)
                        ],
                    },
                },
            )
            nodes.append(node)
            self._nodes = tuple(nodes)
            node.start()
        self._map_node_ids()

    def _start_redis(self, binary: Path, workdir: Path) -> None:
        log_path = workdir / "redis.log"
        error = ""
        for _ in range(_START_ATTEMPTS):
            self._redis_port = _free_port()
            with open(log_path, "ab") as log:
                argv = [str(binary), "--bind", _HOST, "--port", str(self._redis_port)]
                # No persistence, no config file; its files (none) in our folder.
                argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
                self._redis = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=workdir,
                    start_new_session=True,
                )
            deadline = time.monotonic() + _START_TIMEOUT_S
            while self._redis.poll() is None and time.monotonic() < deadline:
                try:
                    if _redis_call(self._redis_port, "PING") == b"PONG":
                        return
                except OSError:
                    time.sleep(0.02)
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            error = f"redis-server did not start on port {self._redis_port}:\n{tail}"
            self._stop_redis()
        raise ServerStartError(error)

    def stop(self) -> None:
        """Stop every node, then Redis; safe to call twice."""
        for node in self._nodes:
            node.stop()
        self._stop_redis()

    def _stop_redis(self) -> None:
        process = self._redis
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _require_started(self) -> None:
        if not self._nodes:
            raise ServerStartError("the LocalLiveKitCluster is not started")

    # -- context managers ----------------------------------------------------------------

    def __enter__(self) -> LocalLiveKitCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalLiveKitCluster:
        try:
            await anyio.to_thread.run_sync(self.start)
        except BaseException:
            await anyio.to_thread.run_sync(self.stop)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    def __repr__(self) -> str:
        if not self._nodes:
            return f"<LocalLiveKitCluster nodes={self._size} not started>"
        return f"<LocalLiveKitCluster urls={list(self.urls)!r} redis={self.redis_address}>"
