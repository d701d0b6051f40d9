"""The local server launcher, the binary discovery and the loopback guard."""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from pathlib import Path

import pytest

import lkkit
from lkkit.testing import (
    LIVEKIT_SERVER_VERSION,
    LocalLiveKitServer,
    cache_dir,
    check_loopback_only,
    ensure_server_binary,
    find_server_binary,
    local_addresses,
)
from lkkit.testing import _sandbox as sandbox

pytestmark = pytest.mark.anyio


def port_is_free(port: int, kind: int) -> bool:
    """Whether nothing holds `port` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state in /proc says it has exited.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_server_starts_answers_and_leaves_nothing_behind() -> None:
    with LocalLiveKitServer() as server:
        pid = server.pid
        assert pid is not None
        assert pid_alive(pid)
        http, rtc_tcp, rtc_udp = server.ports
        assert server.url == f"ws://127.0.0.1:{http}"
        assert not port_is_free(http, socket.SOCK_STREAM)
        assert not port_is_free(rtc_tcp, socket.SOCK_STREAM)
        assert not port_is_free(rtc_udp, socket.SOCK_DGRAM)
        assert len(server.api_secret) >= 32
        assert server.api_key
        assert "starting LiveKit server" in server.log_text()
    assert not server.is_running
    assert not pid_alive(pid)
    assert server._process is not None
    assert server._process.returncode == 0  # the forced shutdown, not SIGKILL
    assert port_is_free(http, socket.SOCK_STREAM)
    assert port_is_free(rtc_tcp, socket.SOCK_STREAM)
    assert port_is_free(rtc_udp, socket.SOCK_DGRAM)
    # The log outlives the process, for post-mortems.
    assert server.log_text()


def test_two_servers_at_once_do_not_collide() -> None:
    with LocalLiveKitServer() as one, LocalLiveKitServer() as two:
        assert set(one.ports).isdisjoint(two.ports)
        assert one.api_key != two.api_key


async def test_async_context_manager_and_restart() -> None:
    async with LocalLiveKitServer() as server:
        first_pid = server.pid
        ports = server.ports
        server.restart()
        assert server.pid != first_pid
        assert server.ports == ports
        assert server.is_running
    assert not server.is_running


def test_start_twice_is_refused() -> None:
    with LocalLiveKitServer() as server, pytest.raises(lkkit.ServerStartError):
        server.start()


def test_a_server_that_exits_at_once_is_reported_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "livekit-server"
    fake.write_text("#!/bin/sh\necho 'config is broken' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with (
        pytest.raises(lkkit.ServerStartError, match="config is broken"),
        LocalLiveKitServer(binary=fake),
    ):
        pass


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(lkkit.ServerStartError):
        _ = LocalLiveKitServer().url


# -- finding the binary ----------------------------------------------------------------


def test_env_var_takes_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "my-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LIVEKIT_SERVER_BIN", str(fake))
    assert find_server_binary() == fake


def test_env_var_pointing_nowhere_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_SERVER_BIN", "/nonexistent/livekit-server")
    with pytest.raises(lkkit.ServerBinaryNotFound, match="LIVEKIT_SERVER_BIN"):
        find_server_binary()


def test_path_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEKIT_SERVER_BIN", raising=False)
    monkeypatch.setenv("LKKIT_CACHE_DIR", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_server_binary() is None

    cached = tmp_path / "cache" / LIVEKIT_SERVER_VERSION / "livekit-server"
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    assert cache_dir() == tmp_path / "cache"
    assert find_server_binary() == cached

    on_path = bin_dir / "livekit-server"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert find_server_binary() == on_path


def test_no_binary_and_no_go_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIVEKIT_SERVER_BIN", raising=False)
    monkeypatch.setenv("LKKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lkkit.ServerBinaryNotFound) as caught:
        ensure_server_binary()
    message = str(caught.value)
    assert "Go is not installed" in message
    assert "install-server" in message
    assert "LIVEKIT_SERVER_BIN" in message
    assert "PATH" in message


def test_a_failing_build_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEKIT_SERVER_BIN", raising=False)
    monkeypatch.setenv("LKKIT_CACHE_DIR", str(tmp_path / "cache"))
    fake_go = tmp_path / "go"
    fake_go.write_text("#!/bin/sh\necho 'module lookup disabled' >&2\nexit 1\n")
    fake_go.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lkkit.ServerBinaryNotFound, match="module lookup disabled"):
        ensure_server_binary()


# -- the loopback guard ----------------------------------------------------------------


def test_the_suite_runs_in_the_loopback_sandbox() -> None:
    addresses = local_addresses()
    assert addresses, "no addresses found"
    assert all(a.is_loopback for a in addresses), addresses
    check_loopback_only()


def test_guard_refuses_a_non_loopback_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKKIT_ALLOW_NON_LOOPBACK", raising=False)
    monkeypatch.setattr(
        sandbox,
        "local_addresses",
        lambda: [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("192.0.2.7")],
    )
    with pytest.raises(lkkit.ServerStartError, match=r"192\.0\.2\.7"):
        check_loopback_only()
    monkeypatch.setenv("LKKIT_ALLOW_NON_LOOPBACK", "1")
    check_loopback_only()


def test_guard_refuses_a_network_libwebrtc_cannot_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKKIT_ALLOW_NON_LOOPBACK", raising=False)
    monkeypatch.setattr(sandbox, "local_addresses", lambda: [ipaddress.ip_address("127.0.0.1")])
    with pytest.raises(lkkit.ServerStartError, match="ignores the loopback interface"):
        check_loopback_only()


def test_guard_runs_before_the_server_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKKIT_ALLOW_NON_LOOPBACK", raising=False)
    monkeypatch.setattr(sandbox, "local_addresses", lambda: [ipaddress.ip_address("10.1.2.3")])
    server = LocalLiveKitServer()
    with pytest.raises(lkkit.ServerStartError, match=r"10\.1\.2\.3"):
        server.start()
    assert server.pid is None
