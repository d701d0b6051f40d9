"""RPC between an lkkit session and LiveKit's JavaScript client (livekit-client in
headless Chromium), both directions, against the real server: responses, errors with
code, message and data, and payloads above 15 KiB (RPC over data streams)."""

from __future__ import annotations

import json

import pytest

import lkkit
from browser_helpers import WAIT, join
from lkkit.testing import BrowserPeer, LiveKitRoom

pytestmark = pytest.mark.anyio


async def browser_call(peer: BrowserPeer, identity: str, method: str, payload: str) -> object:
    """`performRpc` in the browser: `{"ok": response}` or `{"code", "message", "data"}`."""
    params = json.dumps({"destinationIdentity": identity, "method": method, "payload": payload})
    return await peer.evaluate(
        f"""window.lkkit.room.localParticipant.performRpc({params}).then(
            (response) => ({{ok: response}}),
            (e) => ({{code: e.code, message: e.message, data: e.data ?? null}}),
        )""",
        timeout=WAIT,
    )


async def test_the_browser_calls_lkkit(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")

    @alice.rpc.method("greet")
    async def greet(call: lkkit.RpcInvocation) -> str:
        return f"hello {call.caller_identity}: {call.payload}"

    @alice.rpc.method("refuse")
    def refuse(call: lkkit.RpcInvocation) -> str:
        raise lkkit.RemoteCallError("not allowed", code=2403, data='{"role": "guest"}')

    @alice.rpc.method("crash")
    def crash(call: lkkit.RpcInvocation) -> str:
        raise RuntimeError("internal detail")

    @alice.rpc.method("echo")
    def echo(call: lkkit.RpcInvocation) -> str:
        return call.payload

    await join(livekit_room, browser_peer, alice)
    assert await browser_call(browser_peer, "alice", "greet", "héllo ✓") == {
        "ok": "hello web: héllo ✓"
    }
    assert await browser_call(browser_peer, "alice", "refuse", "") == {
        "code": 2403,
        "message": "not allowed",
        "data": '{"role": "guest"}',
    }
    crashed = await browser_call(browser_peer, "alice", "crash", "")
    assert crashed == {
        "code": 1500,
        "message": "Application error in method handler",
        "data": None,
    }
    assert await browser_call(browser_peer, "alice", "missing", "") == {
        "code": 1400,
        "message": "Method not supported at destination",
        "data": None,
    }
    large = "ü" * 50_000  # 100,000 UTF-8 bytes: a data stream both ways
    assert await browser_call(browser_peer, "alice", "echo", large) == {"ok": large}


async def test_lkkit_calls_the_browser(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await join(livekit_room, browser_peer, alice)
    await browser_peer.evaluate(
        """(() => {
            const room = window.lkkit.room;
            room.registerRpcMethod("reverse", async (data) =>
                `${[...data.payload].reverse().join("")}|${data.callerIdentity}`);
            room.registerRpcMethod("refuse", async () => {
                throw new window.LivekitClient.RpcError(2001, "out of stock", '{"sku": 12}');
            });
            room.registerRpcMethod("crash", async () => { throw new Error("internal"); });
            room.registerRpcMethod("size", async (data) => String(data.payload.length));
        })()"""
    )
    assert await alice.rpc.call("web", "reverse", "abc✓") == "✓cba|alice"

    with pytest.raises(lkkit.RemoteCallError) as info:
        await alice.rpc.call("web", "refuse")
    assert type(info.value) is lkkit.RemoteCallError
    assert (info.value.code, info.value.message, info.value.data) == (
        2001,
        "out of stock",
        '{"sku": 12}',
    )
    with pytest.raises(lkkit.RpcApplicationError):
        await alice.rpc.call("web", "crash")
    with pytest.raises(lkkit.RpcUnsupportedMethod):
        await alice.rpc.call("web", "missing")
    assert await alice.rpc.call("web", "size", "x" * 100_000) == "100000"
