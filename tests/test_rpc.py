"""RPC against a real server (`lkkit._rpc`): lkkit to lkkit, lkkit and the raw Python SDK
both ways, LiveKit's error codes as exception classes, payload limits and argument
checks before anything is sent, timeouts, and handlers ending with their session."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from livekit import rtc

import lkkit
from data_helpers import raw_peer
from lkkit import _rpc
from lkkit._exceptions import _RPC_ERRORS
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

WAIT = 30.0  # a guard on every wait, never a performance assertion


async def wait_known(session: lkkit.Session, *identities: str) -> None:
    with anyio.fail_after(WAIT):
        for identity in identities:
            await session.wait_for_participant(identity)


@asynccontextmanager
async def pair(livekit_room: LiveKitRoom) -> AsyncIterator[tuple[lkkit.Session, lkkit.Session]]:
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    await wait_known(alice, "bob")
    await wait_known(bob, "alice")
    yield alice, bob


async def raw_call(room: rtc.Room, identity: str, method: str, payload: str) -> str:
    with anyio.fail_after(WAIT):
        return await room.local_participant.perform_rpc(
            destination_identity=identity, method=method, payload=payload
        )


# -- calls between participants ----------------------------------------------------------


async def test_async_handler_by_decorator(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        seen: list[lkkit.RpcInvocation] = []

        @bob.rpc.method("greet")
        async def greet(call: lkkit.RpcInvocation) -> str:
            seen.append(call)
            await asyncio.sleep(0)
            return f"hello {call.caller_identity}: {call.payload}"

        assert bob.rpc.methods == {"greet"}
        answer = await alice.rpc.call("bob", "greet", "héllo ✓", timeout=20)
        assert answer == "hello alice: héllo ✓"
        (call,) = seen
        assert call.method == "greet"
        assert call.caller_identity == "alice"
        assert call.payload == "héllo ✓"
        assert call.request_id
        # LiveKit keeps 7 s of the timeout for the round trip.
        assert call.response_timeout == pytest.approx(13.0)
        assert greet.__name__ == "greet"  # the decorator returns the function


async def test_sync_handler_by_register_and_unregister(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):

        def shout(call: lkkit.RpcInvocation) -> str:
            return call.payload.upper()

        bob.rpc.register("shout", shout)
        assert await alice.rpc.call("bob", "shout", "quiet") == "QUIET"
        assert await alice.rpc.call("bob", "shout") == ""  # the payload defaults to ""
        bob.rpc.unregister("shout")
        assert bob.rpc.methods == frozenset()
        with pytest.raises(lkkit.RpcUnsupportedMethod):
            await alice.rpc.call("bob", "shout", "again")


async def test_large_payloads_to_a_data_stream_peer(livekit_room: LiveKitRoom) -> None:
    # Python SDK 1.2 peers take RPC over data streams (client protocol 2): no 15 KiB limit.
    async with pair(livekit_room) as (alice, bob):
        bob.rpc.register("echo", lambda call: call.payload + "!")
        payload = "ü" * 100_000
        assert await alice.rpc.call("bob", "echo", payload) == payload + "!"


async def test_lkkit_calls_a_raw_sdk_peer(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with raw_peer(livekit_room, "raw") as raw:

        async def add(data: rtc.RpcInvocationData) -> str:
            a, b = data.payload.split(",")
            return str(int(a) + int(b))

        async def refuse(data: rtc.RpcInvocationData) -> str:
            raise rtc.RpcError(3001, "refused", '{"why": "tests"}')

        raw.local_participant.register_rpc_method("add", add)
        raw.local_participant.register_rpc_method("refuse", refuse)

        await wait_known(alice, "raw")
        assert await alice.rpc.call("raw", "add", "2,3") == "5"
        with pytest.raises(lkkit.RemoteCallError) as info:
            await alice.rpc.call("raw", "refuse")
        assert type(info.value) is lkkit.RemoteCallError
        assert (info.value.code, info.value.message, info.value.data) == (
            3001,
            "refused",
            '{"why": "tests"}',
        )
        assert isinstance(info.value.__cause__, rtc.RpcError)


async def test_a_raw_sdk_peer_calls_lkkit(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")

    @bob.rpc.method("double")
    async def double(call: lkkit.RpcInvocation) -> str:
        return call.payload * 2

    @bob.rpc.method("out-of-stock")
    def out_of_stock(call: lkkit.RpcInvocation) -> str:
        raise lkkit.RemoteCallError("out of stock", code=2001, data='{"sku": 12}')

    async with raw_peer(livekit_room, "raw") as raw:
        with anyio.fail_after(WAIT):
            while "bob" not in raw.remote_participants:
                await anyio.sleep(0.05)
        assert await raw_call(raw, "bob", "double", "ab") == "abab"
        with pytest.raises(rtc.RpcError) as info:
            await raw_call(raw, "bob", "out-of-stock", "")
        assert (info.value.code, info.value.message, info.value.data) == (
            2001,
            "out of stock",
            '{"sku": 12}',
        )


# -- errors --------------------------------------------------------------------------------


async def test_unknown_method(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, _bob):
        with pytest.raises(lkkit.RpcUnsupportedMethod) as info:
            await alice.rpc.call("bob", "nothing-here")
        assert info.value.code == 1400
        assert isinstance(info.value, LookupError)
        assert info.value.message == "Method not supported at destination"


async def test_handler_error_with_code_and_data_reaches_the_caller(
    livekit_room: LiveKitRoom,
) -> None:
    async with pair(livekit_room) as (alice, bob):

        @bob.rpc.method("charge")
        async def charge(call: lkkit.RpcInvocation) -> str:
            raise lkkit.RemoteCallError("card declined", code=4242, data='{"retry": false}')

        @bob.rpc.method("long-error")
        async def long_error(call: lkkit.RpcInvocation) -> str:
            raise lkkit.RemoteCallError("é" * 300, code=4243, data="d" * 20_000)

        @bob.rpc.method("busy")
        async def busy(call: lkkit.RpcInvocation) -> str:
            raise lkkit.RpcUnsupportedMethod("not today")

        with pytest.raises(lkkit.RemoteCallError) as info:
            await alice.rpc.call("bob", "charge", "{}")
        assert type(info.value) is lkkit.RemoteCallError
        assert info.value.code == 4242
        assert info.value.message == "card declined"
        assert info.value.data == '{"retry": false}'
        assert "card declined" in str(info.value)
        assert "4242" in str(info.value)

        with pytest.raises(lkkit.RemoteCallError) as info:
            await alice.rpc.call("bob", "long-error")
        # Cut to LiveKit's limits (256 and 15,360 UTF-8 bytes), never inside a character.
        assert info.value.message == "é" * 128
        assert info.value.data == "d" * 15_360

        with pytest.raises(lkkit.RpcUnsupportedMethod) as unsupported:
            await alice.rpc.call("bob", "busy")
        assert unsupported.value.message == "not today"


async def test_handler_raising_anything_else_is_an_application_error(
    livekit_room: LiveKitRoom, caplog: pytest.LogCaptureFixture
) -> None:
    async with pair(livekit_room) as (alice, bob):

        @bob.rpc.method("leaky")
        async def leaky(call: lkkit.RpcInvocation) -> str:
            raise KeyError("secret-database-password")

        @bob.rpc.method("not-a-str")
        def not_a_str(call: lkkit.RpcInvocation) -> Any:
            return {"a": 1}

        with caplog.at_level(logging.ERROR, logger="lkkit"):
            with pytest.raises(lkkit.RpcApplicationError) as info:
                await alice.rpc.call("bob", "leaky")
            assert info.value.code == 1500
            assert info.value.message == "Application error in method handler"
            assert "secret" not in str(info.value)
            assert info.value.data is None
            with pytest.raises(lkkit.RpcApplicationError):
                await alice.rpc.call("bob", "not-a-str")
        logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
        assert "secret-database-password" in logged  # the details stay on this side
        assert "returned dict, not a str" in logged


async def test_response_timeout_cancels_the_handler(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        started = asyncio.Event()
        cancelled = asyncio.Event()

        @bob.rpc.method("slow")
        async def slow(call: lkkit.RpcInvocation) -> str:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "too late"

        begun = time.monotonic()
        with pytest.raises(lkkit.RpcResponseTimeout) as info:
            await alice.rpc.call("bob", "slow", timeout=0.5)
        assert time.monotonic() - begun < 5
        assert info.value.code == 1502
        assert isinstance(info.value, TimeoutError)
        assert started.is_set()
        with anyio.fail_after(WAIT):
            # The handler had max(0.5 - 7, 1) s: the SDK cancels it then.
            await cancelled.wait()


async def test_recipient_not_found(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    begun = time.monotonic()
    with pytest.raises(lkkit.RpcRecipientNotFound) as info:
        await alice.rpc.call("nobody", "anything", "x")
    # LiveKit answers a missing recipient with its 7 s connection timeout.
    assert 6 < time.monotonic() - begun < WAIT
    assert info.value.code == 1401
    assert isinstance(info.value.__cause__, lkkit.RpcConnectionTimeout)


async def test_payload_limits_for_a_peer_without_data_stream_rpc(
    livekit_room: LiveKitRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pair(livekit_room) as (alice, bob):
        calls: list[str] = []

        @bob.rpc.method("echo")
        async def echo(call: lkkit.RpcInvocation) -> str:
            calls.append(call.payload)
            return "r" * int(call.payload) if call.payload.isdigit() else call.payload

        # The participants act as clients from before data-stream RPC (client protocol 0).
        monkeypatch.setattr(_rpc, "client_protocol", lambda participant: 0)
        limit = lkkit.MAX_RPC_PAYLOAD_BYTES
        at_limit = "é" * (limit // 2)  # 15,360 UTF-8 bytes in 7,680 characters
        assert await alice.rpc.call("bob", "echo", at_limit) == at_limit

        with pytest.raises(lkkit.RpcRequestTooLarge) as info:
            await alice.rpc.call("bob", "echo", at_limit + "x")
        assert info.value.code == 1402
        assert isinstance(info.value, ValueError)
        assert len(calls) == 1  # nothing was sent

        assert await alice.rpc.call("bob", "echo", str(limit)) == "r" * limit
        with pytest.raises(lkkit.RpcResponseTooLarge) as too_large:
            await alice.rpc.call("bob", "echo", str(limit + 1))
        assert too_large.value.code == 1504


@pytest.mark.parametrize(
    ("identity", "method", "payload", "timeout"),
    [
        ("", "m", "", 1.0),
        (b"bob", "m", "", 1.0),
        ("alice", "m", "", 1.0),  # oneself
        ("bob", "", "", 1.0),
        ("bob", None, "", 1.0),
        ("bob", "m" * 257, "", 1.0),
        ("bob", "m", b"bytes", 1.0),
        ("bob", "m", None, 1.0),
        ("bob", "m", "\ud800", 1.0),
        ("bob", "m", "", 0),
        ("bob", "m", "", -1.0),
        ("bob", "m", "", math.nan),
        ("bob", "m", "", math.inf),
        ("bob", "m", "", True),
        ("bob", "m", "", "5"),
        ("bob", "m", "", 5e6),  # over what the wire carries (uint32 milliseconds)
    ],
)
async def test_bad_call_arguments_are_refused_before_sending(
    livekit_room: LiveKitRoom,
    monkeypatch: pytest.MonkeyPatch,
    identity: Any,
    method: Any,
    payload: Any,
    timeout: Any,
) -> None:
    alice = await livekit_room.join("alice")

    async def perform_rpc(*args: object, **kwargs: object) -> str:
        raise AssertionError("sent")

    monkeypatch.setattr(alice.room.local_participant, "perform_rpc", perform_rpc)
    with pytest.raises(lkkit.InvalidRpcArgument):
        await alice.rpc.call(identity, method, payload, timeout=timeout)


async def test_bad_registrations(livekit_room: LiveKitRoom) -> None:
    bob = await livekit_room.join("bob")
    bob.rpc.register("m", lambda call: "")
    with pytest.raises(lkkit.InvalidRpcArgument, match="already has a handler"):
        bob.rpc.register("m", lambda call: "")
    with pytest.raises(lkkit.InvalidRpcArgument):
        bob.rpc.register("other", "not callable")  # type: ignore[arg-type]
    with pytest.raises(lkkit.InvalidRpcArgument):
        bob.rpc.method("")
    with pytest.raises(lkkit.InvalidRpcArgument):
        bob.rpc.unregister("never-registered")
    with pytest.raises(lkkit.InvalidRpcArgument):
        lkkit.RemoteCallError("bad code", code=-1)
    assert bob.rpc.methods == {"m"}


async def test_not_connected(livekit_room: LiveKitRoom) -> None:
    session = lkkit.connect(livekit_room.url, livekit_room.token("x"))
    with pytest.raises(lkkit.NotConnected):
        await session.rpc.call("bob", "m")
    with pytest.raises(lkkit.NotConnected):
        session.rpc.register("m", lambda call: "")


# -- the end of a session ------------------------------------------------------------------


async def test_handlers_end_with_an_owned_session(livekit_room: LiveKitRoom) -> None:
    async with pair(livekit_room) as (alice, bob):
        bob.rpc.register("m", lambda call: "ok")
        assert await alice.rpc.call("bob", "m") == "ok"
        await bob.aclose()
        assert bob.rpc.methods == frozenset()
        with pytest.raises(lkkit.NotConnected):
            bob.rpc.register("m", lambda call: "ok")


async def test_handlers_end_with_an_attached_session(livekit_room: LiveKitRoom) -> None:
    alice = await livekit_room.join("alice")
    async with raw_peer(livekit_room, "agent") as room:
        options = lkkit.ConnectOptions(shutdown_timeout=0.5)
        session = lkkit.Session.attach(room, options)
        await session.__aenter__()
        started = asyncio.Event()

        @session.rpc.method("ping")
        def ping(call: lkkit.RpcInvocation) -> str:
            return "pong"

        @session.rpc.method("hang")
        async def hang(call: lkkit.RpcInvocation) -> str:
            started.set()
            await asyncio.sleep(60)
            return ""

        await wait_known(alice, "agent")
        assert await alice.rpc.call("agent", "ping") == "pong"
        hanging = asyncio.create_task(alice.rpc.call("agent", "hang", timeout=20))
        with anyio.fail_after(WAIT):
            await started.wait()
        await session.aclose()  # the room stays connected: it is not the session's
        assert room.isconnected()
        # The call in progress is answered; the methods are gone.
        with pytest.raises(lkkit.RpcRecipientDisconnected):
            await hanging
        with pytest.raises(lkkit.RpcUnsupportedMethod):
            await alice.rpc.call("agent", "ping")


async def test_rpc_streams_are_not_data_messages(livekit_room: LiveKitRoom) -> None:
    # RPC over data streams uses LiveKit's reserved `lk.rpc_*` topics; a subscription to
    # every topic must not see them.
    async with pair(livekit_room) as (alice, bob):
        bob.rpc.register("echo", lambda call: call.payload)
        async with alice.data.messages() as alice_messages, bob.data.messages() as bob_messages:
            assert await alice.rpc.call("bob", "echo", "x" * 20_000) == "x" * 20_000
            await alice.data.send(b"after", topic="marker")
            with anyio.fail_after(WAIT):
                message = await bob_messages.receive()
            assert message.topic == "marker"
            with anyio.move_on_after(0.2):
                unexpected = await alice_messages.receive()
                pytest.fail(f"alice received {unexpected!r}")


# -- the error classes -----------------------------------------------------------------------


def test_every_livekit_error_code_has_its_class() -> None:
    for code in rtc.RpcError.ErrorCode:
        error = lkkit.RemoteCallError.from_code(int(code), "")
        assert _RPC_ERRORS[int(code)] is type(error)
        assert error.code == int(code) == type(error).CODE
        assert error.message == rtc.RpcError.ErrorMessage[code]
        assert isinstance(error, lkkit.RemoteCallError)
    assert set(_RPC_ERRORS) == {int(code) for code in rtc.RpcError.ErrorCode}
    custom = lkkit.RemoteCallError.from_code(7, "custom", "")
    assert type(custom) is lkkit.RemoteCallError
    assert custom.data is None
