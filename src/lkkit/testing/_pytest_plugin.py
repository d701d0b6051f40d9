"""lkkit's pytest plugin (entry point `pytest11`): a real livekit-server for your tests.

Fixtures:

- `livekit_server` (session scope): one [`LocalLiveKitServer`][lkkit.testing.LocalLiveKitServer]
  for the whole test session.
- `livekit_room` (function scope, async): a fresh room name per test, a token minter
  and a `join()` that connects sessions, all closed when the test ends.
- `livekit_cluster` (session scope): one two-node
  [`LocalLiveKitCluster`][lkkit.testing.LocalLiveKitCluster] (two livekit-servers sharing
  a Redis) for the whole test session, started on first use; it needs
  `python -m lkkit.testing install-redis`. A test that kills a node starts a cluster of
  its own.
- `chromium` (session scope): one headless [`Chromium`][lkkit.testing.Chromium] for the
  whole test session, started on first use; it needs
  `python -m lkkit.testing install-browser` and fails (never skips) without it.
- `browser_peer` (function scope, async): a fresh page of that browser running
  livekit-client, a [`BrowserPeer`][lkkit.testing.BrowserPeer], closed when the test ends.

When a test fails, the server's log lines written during that test are attached to
the report as the section "livekit-server log" (with the cluster's, one section per node,
"livekit-server log (node i)"), and the browser page's console and last events (if the
test used `browser_peer`) as "browser console".

pytest loads this module in every run of every project that installs lkkit, so at
module level it imports only pytest and the standard library; the fixtures import the
server and the session machinery (the SDK, numpy, pydantic) when a test first uses one
(`tests/test_pytest_plugin.py` checks this).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._browser import BrowserPeer, Chromium
    from ._cluster import LocalLiveKitCluster
    from ._livekit_room import LiveKitRoom
    from ._server import LocalLiveKitServer

_server_key: pytest.StashKey[LocalLiveKitServer] = pytest.StashKey()
_log_offset_key = pytest.StashKey[int]()
_peer_key: pytest.StashKey[BrowserPeer] = pytest.StashKey()
_cluster_key: pytest.StashKey[LocalLiveKitCluster] = pytest.StashKey()
_cluster_offsets_key = pytest.StashKey[list[int]]()


def _room_name(nodeid: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", nodeid.split("::")[-1])[:40].strip("-")
    return f"{slug}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def livekit_server(pytestconfig: pytest.Config) -> Iterator[LocalLiveKitServer]:
    """A real livekit-server on loopback, shared by the whole test session."""
    from ._server import LocalLiveKitServer

    with LocalLiveKitServer() as server:
        pytestconfig.stash[_server_key] = server
        yield server
        del pytestconfig.stash[_server_key]


@pytest.fixture
async def livekit_room(
    livekit_server: LocalLiveKitServer, request: pytest.FixtureRequest
) -> AsyncIterator[LiveKitRoom]:
    """A fresh room on the shared server; sessions joined through it close at teardown."""
    from ._livekit_room import LiveKitRoom

    room = LiveKitRoom(livekit_server, _room_name(request.node.nodeid))
    try:
        yield room
    finally:
        await room.aclose()


@pytest.fixture(scope="session")
def livekit_cluster(pytestconfig: pytest.Config) -> Iterator[LocalLiveKitCluster]:
    """Two livekit-server nodes sharing a Redis, shared by the whole test session."""
    from ._cluster import LocalLiveKitCluster

    with LocalLiveKitCluster(nodes=2) as cluster:
        pytestconfig.stash[_cluster_key] = cluster
        yield cluster
        del pytestconfig.stash[_cluster_key]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """One headless Chromium for the whole test session, killed at its end."""
    from ._browser import Chromium

    with Chromium() as browser:
        yield browser


@pytest.fixture
async def browser_peer(
    chromium: Chromium, request: pytest.FixtureRequest
) -> AsyncIterator[BrowserPeer]:
    """A fresh livekit-client page of the session's Chromium, closed at teardown."""
    peer = await chromium.new_peer()
    request.node.stash[_peer_key] = peer
    try:
        yield peer
    finally:
        await peer.aclose()


def _browser_section(peer: BrowserPeer) -> str:
    events = [f"{e.kind} {dict(e.fields)}"[:300] for e in peer.events[-50:]]
    return "\n".join(["console:", *peer.console[-100:], "last events:", *events])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    server = item.config.stash.get(_server_key, None)
    item.stash[_log_offset_key] = server.log_size() if server is not None else 0
    cluster = item.config.stash.get(_cluster_key, None)
    if cluster is not None:
        item.stash[_cluster_offsets_key] = [node.log_size() for node in cluster.nodes]


def _log_section(text: str) -> str:
    # Lines can hold whole SDPs; keep the section readable.
    return "\n".join(line[:400] for line in text.splitlines()[-200:])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        server = item.config.stash.get(_server_key, None)
        if server is not None:
            text = server.log_text(start=item.stash.get(_log_offset_key, 0))
            report.sections.append(("livekit-server log", _log_section(text)))
        cluster = item.config.stash.get(_cluster_key, None)
        if cluster is not None:
            # A cluster started during this test (the fixture's first use) logged from 0.
            offsets = item.stash.get(_cluster_offsets_key, [])
            for index, node in enumerate(cluster.nodes):
                start = offsets[index] if index < len(offsets) else 0
                text = node.log_text(start=start)
                if text:
                    section = f"livekit-server log (node {index})"
                    report.sections.append((section, _log_section(text)))
        peer = item.stash.get(_peer_key, None)
        if peer is not None:
            report.sections.append(("browser console", _browser_section(peer)))
    return report
