"""`LocalLiveKitServer`: a real livekit-server on loopback, for tests and demos."""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio.to_thread

from .._exceptions import ServerStartError
from .._tokens import Credentials
from ._binary import LIVEKIT_SERVER_VERSION, ensure_server_binary
from ._sandbox import check_loopback_only

__all__ = ["LocalLiveKitServer"]

_HOST = "127.0.0.1"
_START_TIMEOUT_S = 30.0
_GRACEFUL_S = 1.0
_FORCED_S = 5.0
_START_ATTEMPTS = 3


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _pick_ports() -> tuple[int, int, int]:
    # Ports come from the kernel's ephemeral range, so two runs at once (each asking
    # the kernel) do not pick the same ones; a lost race is retried by `start`.
    return (
        _free_port(socket.SOCK_STREAM),
        _free_port(socket.SOCK_STREAM),
        _free_port(socket.SOCK_DGRAM),
    )


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it: mappings merge key by key, other values replace."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


class LocalLiveKitServer:
    """A livekit-server process on 127.0.0.1, configured for tests.

    ```python
    with LocalLiveKitServer() as server:
        print(server.url, server.api_key)
    ```

    or `async with`. The server gets its own config: it listens on 127.0.0.1 only,
    on free HTTP, RTC TCP and RTC UDP ports, advertises 127.0.0.1 as its node IP with
    loopback candidates on and no external-IP discovery, names a STUN server on
    127.0.0.1 for clients (it would otherwise hand them public ones), and has a fresh
    API key with a 48-character secret. It refuses to start where WebRTC media could leave
    127.0.0.0/8 (see [`check_loopback_only`][lkkit.testing.check_loopback_only]).
    Stopping sends SIGTERM, a second (forcing) SIGTERM after 1 s, then SIGKILL after
    5 s more. The log stays readable after stop.

    `extra_config` is laid over the generated config (mappings merge key by key, other
    values replace), for what a test needs beyond it: a `redis` address and `region`
    for a node of a cluster (see [`LocalLiveKitCluster`][lkkit.testing.LocalLiveKitCluster]),
    `room` or `limit` settings. Leave the ports and `keys` alone: `url` and `credentials`
    report the server's own.
    """

    def __init__(
        self,
        *,
        binary: Path | str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        log_level: str = "info",
        check_network: bool = True,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._binary = Path(binary) if binary is not None else None
        self._credentials = Credentials(
            api_key=api_key or f"lkkit_{secrets.token_hex(6)}",
            api_secret=api_secret or secrets.token_urlsafe(36),
        )
        self._log_level = log_level
        self._check_network = check_network
        self._extra_config = copy.deepcopy(dict(extra_config or {}))
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_path: Path | None = None
        self._http_port = 0
        self._rtc_tcp_port = 0
        self._rtc_udp_port = 0

    # -- what a test needs ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to, `ws://127.0.0.1:<port>`."""
        self._require_running()
        return f"ws://{_HOST}:{self._http_port}"

    @property
    def http_url(self) -> str:
        """The HTTP URL of the server API, `http://127.0.0.1:<port>`."""
        self._require_running()
        return f"http://{_HOST}:{self._http_port}"

    @property
    def api_key(self) -> str:
        return self._credentials.api_key

    @property
    def api_secret(self) -> str:
        return self._credentials.api_secret

    @property
    def credentials(self) -> Credentials:
        """The API key and secret as an lkkit [`Credentials`][lkkit.Credentials]."""
        return self._credentials

    @property
    def ports(self) -> tuple[int, int, int]:
        """`(http, rtc_tcp, rtc_udp)` ports of the running server."""
        self._require_running()
        return self._http_port, self._rtc_tcp_port, self._rtc_udp_port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        """The server's log file (kept after stop until the object is collected)."""
        return self._log_path

    def log_text(self, *, start: int = 0) -> str:
        """The server's log from byte offset `start`."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with open(self._log_path, "rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        """The log's current size in bytes, to read what a test added with `log_text`."""
        if self._log_path is None or not self._log_path.exists():
            return 0
        return self._log_path.stat().st_size

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers (blocking)."""
        if self._process is not None:
            raise ServerStartError("this LocalLiveKitServer was already started")
        if self._check_network:
            check_loopback_only()
        binary = self._binary or ensure_server_binary(LIVEKIT_SERVER_VERSION)
        self._workdir = Path(tempfile.mkdtemp(prefix="lkkit-server-"))
        # The log outlives stop() for post-mortems; the folder goes with this object.
        weakref.finalize(self, shutil.rmtree, self._workdir, ignore_errors=True)
        error: ServerStartError | None = None
        for _ in range(_START_ATTEMPTS):
            try:
                self._start_once(binary, self._workdir)
                return
            except ServerStartError as exc:
                error = exc
                self._kill()
        assert error is not None
        raise error

    def _start_once(self, binary: Path, workdir: Path) -> None:
        self._http_port, self._rtc_tcp_port, self._rtc_udp_port = _pick_ports()
        config = {
            "port": self._http_port,
            "bind_addresses": [_HOST],
            "rtc": {
                "tcp_port": self._rtc_tcp_port,
                "udp_port": self._rtc_udp_port,
                "use_external_ip": False,
                "node_ip": _HOST,
                "enable_loopback_candidate": True,
                # Given no STUN server (and no TURN), livekit-server v1.13.5 hands
                # clients public Google and Twilio STUN servers instead, which they
                # resolve and ping. This one is on loopback and never answers: UDP to
                # the HTTP port, where nothing listens. (Not the RTC UDP port:
                # libwebrtc takes every packet from a STUN server's address for a STUN
                # response, so media from there would be lost.)
                "stun_servers": [f"{_HOST}:{self._http_port}"],
            },
            "turn": {"enabled": False},
            "keys": {self.api_key: self.api_secret},
            "logging": {"level": self._log_level, "json": False},
        }
        config = _merged(config, self._extra_config)
        # YAML is a superset of JSON, so no YAML writer is needed.
        config_path = workdir / "livekit.yaml"
        config_path.write_text(json.dumps(config, indent=2))
        self._log_path = workdir / "livekit-server.log"
        self._launch(binary, config_path)

    def _launch(self, binary: Path, config_path: Path) -> None:
        assert self._log_path is not None
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(binary), "--config", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # The server reads LIVEKIT_* variables as config; ours must win.
                env={k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")},
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        url = f"http://{_HOST}:{self._http_port}/"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"livekit-server exited with code {self._process.returncode} during "
                    f"start-up; its log ends with:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise ServerStartError(
            f"livekit-server did not answer at {url} within {_START_TIMEOUT_S:.0f} s; "
            f"its log ends with:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server; safe to call twice.

        SIGTERM asks for a graceful shutdown, which livekit-server v1.13.5 does not
        finish on its own even when idle; a second SIGTERM (its "force" shutdown)
        after 1 s ends it cleanly; SIGKILL follows if it is still running 5 s later.
        """
        process = self._process
        if process is None or process.poll() is not None:
            return
        for signal_number, grace in ((signal.SIGTERM, _GRACEFUL_S), (signal.SIGTERM, _FORCED_S)):
            process.send_signal(signal_number)
            try:
                process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
        self._kill()

    def restart(self) -> None:
        """Start again on the same ports and keys, after stopping it when it runs (to
        test reconnection; after [`kill`][lkkit.testing.LocalLiveKitServer.kill], a
        restart after a crash)."""
        if self._process is None or self._workdir is None:
            raise ServerStartError("start the server before restarting it")
        self.stop()
        assert self._workdir is not None
        binary = self._binary or ensure_server_binary(LIVEKIT_SERVER_VERSION)
        self._launch(binary, self._workdir / "livekit.yaml")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): a crash, for fault tests. Its state is
        lost; [`restart`][lkkit.testing.LocalLiveKitServer.restart] brings it back on
        the same ports."""
        self._kill()

    def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()

    def _require_running(self) -> None:
        if self._process is None:
            raise ServerStartError("the LocalLiveKitServer is not started")

    # -- context managers ----------------------------------------------------------------

    def __enter__(self) -> LocalLiveKitServer:
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

    async def __aenter__(self) -> LocalLiveKitServer:
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
        state = f"url={self.url!r}" if self._process is not None else "not started"
        return f"<LocalLiveKitServer {LIVEKIT_SERVER_VERSION} {state}>"
