"""A loopback-only network for tests: the server, the SDK and their media stay on 127/8.

libwebrtc (inside the SDK) never gathers ICE candidates on the loopback *interface*,
so on an ordinary machine it sends media from the machine's LAN address even when the
server listens on 127.0.0.1. The sandbox fixes that without leaving 127.0.0.0/8:

- a new network namespace (`unshare --net`), so no other interface exists at all;
- `lo` up (127.0.0.1 and ::1), plus a veth pair whose only address is `127.0.1.1/8`
  (no IPv6 link-local address: its address generation mode is `none`): libwebrtc
  gathers its host candidate there, and every packet, signalling and media, goes
  between 127.0.0.1 and 127.0.1.1 inside the namespace.

`python -m lkkit.testing sandbox -- CMD...` runs CMD in such a namespace (as root, or
through a user namespace where unprivileged ones are allowed).
[`check_loopback_only`][lkkit.testing.check_loopback_only] is what the local server
runs first: it refuses to start where media could leave loopback.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .._exceptions import ServerStartError

__all__ = [
    "SANDBOX_ADDRESS",
    "check_loopback_only",
    "inside_sandbox",
    "local_addresses",
    "run_in_sandbox",
]

SANDBOX_ADDRESS = "127.0.1.1"
"""The address the sandbox gives libwebrtc to gather its candidates on."""

_ENV_INSIDE = "LKKIT_SANDBOX"
_ENV_ALLOW = "LKKIT_ALLOW_NON_LOOPBACK"
_VETH = ("lkkit0", "lkkit1")


def local_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The IPv4 and global IPv6 addresses of this network namespace (Linux `/proc`)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    fib = Path("/proc/net/fib_trie")
    if fib.exists():
        previous = ""
        for line in fib.read_text().splitlines():
            stripped = line.strip()
            # "|-- 10.0.0.5" followed by "/32 host LOCAL" marks a local address.
            if stripped.startswith("/32 host LOCAL") and previous.startswith("|--"):
                found.add(ipaddress.IPv4Address(previous.split()[1]))
            previous = stripped
    inet6 = Path("/proc/net/if_inet6")
    if inet6.exists():
        for line in inet6.read_text().splitlines():
            fields = line.split()
            address = ipaddress.IPv6Address(int(fields[0], 16))
            if not (address.is_link_local or address.is_loopback):
                found.add(address)
    return sorted(found, key=str)


def check_loopback_only() -> None:
    """Refuse when WebRTC media could reach an address outside 127.0.0.0/8.

    Passes inside the lkkit sandbox, or where `LKKIT_ALLOW_NON_LOOPBACK=1` says that
    traffic to the machine's own other addresses is fine.

    Raises:
        ServerStartError: this network has a non-loopback address, or no address that
            libwebrtc can gather a candidate on.
    """
    if os.environ.get(_ENV_ALLOW) == "1":
        return
    if not Path("/proc/net/fib_trie").exists():
        raise ServerStartError(
            "cannot check this machine's addresses (not Linux). "
            f"Set {_ENV_ALLOW}=1 to allow WebRTC media over non-loopback addresses."
        )
    addresses = local_addresses()
    outside = [a for a in addresses if not a.is_loopback]
    if outside:
        raise ServerStartError(
            "WebRTC media would leave 127.0.0.0/8: this network has the addresses "
            f"{', '.join(map(str, outside))}, and libwebrtc gathers candidates on them. "
            "Run the tests in lkkit's loopback sandbox "
            "(`python -m lkkit.testing sandbox -- pytest ...`), "
            f"or set {_ENV_ALLOW}=1 to allow it."
        )
    if not any(a.is_loopback and str(a) != "127.0.0.1" for a in addresses):
        raise ServerStartError(
            "no interface here carries an address libwebrtc can use (it ignores the "
            "loopback interface): run inside `python -m lkkit.testing sandbox -- ...`"
        )


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _set_up_inside() -> None:
    ip = shutil.which("ip")
    if ip is None:
        raise ServerStartError("the sandbox needs `ip` (iproute2)")
    _run(ip, "link", "set", "lo", "up")
    _run(ip, "link", "add", _VETH[0], "type", "veth", "peer", "name", _VETH[1])
    for veth in _VETH:
        # No IPv6 link-local address (and so no router solicitation, duplicate address
        # detection or MLD report from the kernel): set before the link goes up.
        _run(ip, "link", "set", veth, "addrgenmode", "none")
    _run(ip, "addr", "add", f"{SANDBOX_ADDRESS}/8", "dev", _VETH[0])
    _run(ip, "link", "set", _VETH[0], "up")
    _run(ip, "link", "set", _VETH[1], "up")


def inside_sandbox() -> bool:
    """Whether this process runs inside lkkit's loopback sandbox."""
    return os.environ.get(_ENV_INSIDE) == "1"


def run_in_sandbox(command: Sequence[str]) -> int:
    """Run `command` in a new loopback-only network namespace; return its exit code."""
    if not command:
        raise ValueError("no command to run")
    if inside_sandbox():
        return subprocess.call(list(command))
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ServerStartError("the sandbox needs `unshare` (util-linux)")
    outer = [unshare, "--net"]
    if os.geteuid() != 0:
        outer.append("--map-root-user")
    inner = [sys.executable, "-m", "lkkit.testing", "_sandbox-inside", "--", *command]
    return subprocess.call([*outer, *inner])


def sandbox_inside_main(command: Sequence[str]) -> int:
    """Entry point inside the new namespace: set up the network, then run `command`."""
    _set_up_inside()
    os.environ[_ENV_INSIDE] = "1"
    return subprocess.call(list(command))
