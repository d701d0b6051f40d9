"""Nothing leaves 127.0.0.0/8: a full scenario, traced with strace, addresses no socket
outside loopback and looks up no name; the sandbox's interfaces carry loopback
addresses only (no IPv6 link-local); the server hands clients only a loopback STUN
server (`testing/_server.py`, `testing/_sandbox.py`)."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from livekit.protocol import rtc as proto

from lkkit.testing import LiveKitRoom

STRACE = shutil.which("strace")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# libwebrtc's BasicNetworkManager::QueryDefaultLocalAddress connect()s a UDP socket to
# these (Google's public DNS servers) to learn which local address the default route
# uses: a route lookup that sends no packet. Inside the sandbox there is no route, so
# the connect fails.
ROUTE_PROBES = {("8.8.8.8", 53), ("2001:4860:4860::8888", 53)}
NAME_SERVICE_CACHE = "/var/run/nscd/socket"
# Socket addresses the scenario may use: IP (checked one by one), netlink (the kernel's
# routing and link tables) and Unix sockets (local by nature).
FAMILIES = {"AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"}

# A server and two lkkit sessions, all under one trace: the sessions join a room,
# exchange data both ways and audio one way, and leave. It prints what happened.
SCENARIO = r"""
import asyncio, json
import numpy as np
import lkkit
from lkkit.testing import LocalLiveKitServer


async def exchange(sender, receiver, payload):
    async with receiver.data.messages("hygiene") as messages:
        async def repeat():
            while True:
                await sender.data.send(payload, topic="hygiene")
                await asyncio.sleep(0.2)

        task = asyncio.ensure_future(repeat())
        try:
            return (await asyncio.wait_for(messages.receive(), 20)).payload.decode()
        finally:
            task.cancel()


async def main():
    async with LocalLiveKitServer() as server:
        def token(identity):
            grants = lkkit.Grants(room_join=True, room="hygiene")
            return lkkit.Token(identity=identity, grants=grants).sign(server.credentials)

        async with lkkit.connect(server.url, token("alice")) as alice:
            async with lkkit.connect(server.url, token("bob")) as bob:
                await asyncio.wait_for(bob.wait_for_participant("alice"), 20)
                await asyncio.wait_for(alice.wait_for_participant("bob"), 20)
                data = [
                    await exchange(alice, bob, b"to bob"),
                    await exchange(bob, alice, b"to alice"),
                ]
                loud = 0
                async with alice.audio.publish("voice") as publisher:
                    track = await asyncio.wait_for(
                        bob.wait_for_track("alice", kind=lkkit.TrackKind.AUDIO), 20
                    )
                    async with bob.audio.stream(track, frame_ms=10) as chunks:
                        writer = asyncio.ensure_future(
                            publisher.write(lkkit.sine_tone(440.0, 10.0, amplitude=0.5))
                        )

                        async def listen():
                            nonlocal loud
                            async for chunk in chunks:
                                loud += int(np.abs(chunk.samples).max() > 1000)
                                if loud >= 50:
                                    return

                        try:
                            await asyncio.wait_for(listen(), 20)
                        finally:
                            writer.cancel()
        ports = server.ports
    print(json.dumps({"ports": ports, "data": data, "loud_chunks": loud}))


asyncio.run(main())
"""


@dataclass(frozen=True, slots=True)
class Destination:
    """A socket address one traced system call was given."""

    line: str
    call: str
    family: str
    address: str | None = None
    port: int | None = None

    @property
    def failed(self) -> bool:
        return bool(re.search(r"\) += -1 ", self.line))


_LINE = re.compile(r"^(\d+) +(.*)$")
_CALL = re.compile(r"^\d+ +(\w+)\(")
_SOCKADDR = re.compile(r"\{sa_family=(AF_\w+)([^{}]*)\}")
_FIELDS = {
    "AF_INET": re.compile(r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)'),
    "AF_INET6": re.compile(r'sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"'),
}
_UNIX_PATH = re.compile(r'sun_path=(@?"[^"]*")')


def whole_calls(trace: str) -> list[str]:
    """strace's lines, each call that another thread interrupted joined again."""
    calls: list[str] = []
    unfinished: dict[str, str] = {}
    for line in trace.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        pid, rest = match.groups()
        if rest.endswith("<unfinished ...>"):
            unfinished[pid] = f"{pid} {rest.removesuffix('<unfinished ...>').rstrip()}"
        elif rest.startswith("<..."):
            calls.append(unfinished.pop(pid, f"{pid} ?(") + rest.split("resumed>", 1)[-1])
        else:
            calls.append(line)
    return calls


def _address(family: str, fields: str) -> tuple[str | None, int | None]:
    if family == "AF_UNIX":
        path = _UNIX_PATH.search(fields)
        return (path.group(1) if path else None), None
    pattern = _FIELDS.get(family)
    if pattern is None:
        return None, None
    match = pattern.search(fields)
    if match is None:
        return fields, None  # not decoded: counts as outside loopback
    return match.group(2), int(match.group(1))


def destinations(trace: str) -> list[Destination]:
    """Every socket address in the traced connect/sendto/sendmsg/sendmmsg calls."""
    found: list[Destination] = []
    for line in whole_calls(trace):
        call = _CALL.match(line)
        if call is None or call.group(1) not in {"connect", "sendto", "sendmsg", "sendmmsg"}:
            continue
        for family, fields in _SOCKADDR.findall(line):
            address, port = _address(family, fields)
            found.append(Destination(line, call.group(1), family, address, port))
    return found


def on_loopback(host: str | None) -> bool:
    """Whether `host` is an IP address on loopback (a name is not)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        return address == ipaddress.IPv6Address("::1") or (
            mapped is not None and mapped in LOOPBACK
        )
    return address in LOOPBACK


def is_route_probe(destination: Destination) -> bool:
    """Whether this is libwebrtc's default-route lookup (see `ROUTE_PROBES`)."""
    return destination.call == "connect" and (destination.address, destination.port) in ROUTE_PROBES


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (apt-get install strace)")
def test_a_full_scenario_addresses_nothing_outside_loopback_and_looks_up_no_name(
    tmp_path: Path,
) -> None:
    assert STRACE is not None
    trace_path = tmp_path / "trace.txt"
    traced = [
        STRACE,
        "-f",
        "-qq",
        "-e",
        "signal=none",
        "-e",
        "trace=connect,sendto,sendmsg,sendmmsg,openat",
        "-o",
        str(trace_path),
        sys.executable,
        "-c",
        SCENARIO,
    ]
    # The scenario's own server runs under the same trace. The sandbox command reuses
    # the sandbox it runs in, or makes one.
    result = subprocess.run(
        [sys.executable, "-m", "lkkit.testing", "sandbox", "--", *traced],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-4000:]}"
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["data"] == ["to bob", "to alice"]
    assert outcome["loud_chunks"] >= 50
    http_port, _, rtc_udp_port = outcome["ports"]

    trace = trace_path.read_text()
    found = destinations(trace)
    internet = [d for d in found if d.family in {"AF_INET", "AF_INET6"}]
    # The trace saw the media: sends to the server's RTC UDP port.
    assert any(d.port == rtc_udp_port for d in internet), "no media in the trace"

    # No DNS either: nothing addressed to port 53 but the probe, nobody read the
    # resolver's configuration (every resolver reads it before it queries), and nobody
    # asked the name service cache.
    problems = {
        "addressed outside 127.0.0.0/8": [
            d.line for d in internet if not on_loopback(d.address) and not is_route_probe(d)
        ],
        # The probe sends nothing: a connect that failed (no route in the sandbox).
        "route probe that was not a failed connect": [
            d.line
            for d in internet
            if (d.address, d.port) in ROUTE_PROBES and not (is_route_probe(d) and d.failed)
        ],
        "address of another family": [d.line for d in found if d.family not in FAMILIES],
        "DNS query": [d.line for d in internet if d.port == 53 and not is_route_probe(d)],
        "resolver configuration read": [
            line for line in trace.splitlines() if '"/etc/resolv.conf"' in line
        ],
        "name service cache asked": [
            d.line for d in found if d.address == f'"{NAME_SERVICE_CACHE}"'
        ],
    }
    found_problems = {kind: lines for kind, lines in problems.items() if lines}
    assert not found_problems, "\n".join(
        f"{kind} ({len(lines)}):\n  " + "\n  ".join(lines[:5])
        for kind, lines in found_problems.items()
    )

    # The clients' STUN requests go to the loopback STUN server the launcher names.
    assert any(
        d.call != "connect" and (d.address, d.port) == ("127.0.0.1", http_port) for d in internet
    ), "no STUN request to the loopback STUN server"


def test_the_sandbox_has_only_loopback_addresses_and_no_ipv6_link_local() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lkkit.testing", "sandbox", "--", "ip", "-j", "addr"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    addresses = {
        link["ifname"]: [
            ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            for info in link.get("addr_info", [])
        ]
        for link in json.loads(result.stdout)
    }
    everything = [a for found in addresses.values() for a in found]
    assert not [a for a in everything if a.ip.is_link_local], f"link-local: {addresses}"
    assert set(addresses) == {"lo", "lkkit0", "lkkit1"}
    assert addresses["lkkit0"] == [ipaddress.ip_interface("127.0.1.1/8")]
    assert addresses["lkkit1"] == []
    assert set(addresses["lo"]) <= {
        ipaddress.ip_interface("127.0.0.1/8"),
        ipaddress.ip_interface("::1/128"),
    }


@pytest.mark.anyio
async def test_the_join_response_offers_only_a_loopback_stun_server(
    livekit_room: LiveKitRoom,
) -> None:
    # A bare signalling client: the first message is the join response.
    params = {"access_token": livekit_room.token("probe"), "protocol": "16"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{livekit_room.url}/rtc", params=params) as ws,
    ):
        message = await ws.receive(timeout=20)
    response = proto.SignalResponse.FromString(message.data)
    assert response.WhichOneof("message") == "join"
    urls = [url for server in response.join.ice_servers for url in server.urls]
    assert urls, "the server offered no ICE server"
    for url in urls:
        scheme, _, rest = url.partition(":")
        host = urlsplit(f"//{rest.split('?')[0]}").hostname or ""
        assert scheme in {"stun", "turn"}, url
        assert on_loopback(host), f"not on loopback: {url}"
