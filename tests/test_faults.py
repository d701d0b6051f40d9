"""Server faults against a real server of the test's own: the server killed (SIGKILL)
mid-session. Sessions see Reconnecting, then Disconnected once the SDK's reconnection
attempts fail (about 20 s); sends started meanwhile wait and then fail with
`NotConnected` instead of vanishing; every subscription and stream ends; writers get
typed errors; nothing hangs and no task or thread is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import anyio
import numpy as np
import pytest

import lkkit
from lkkit import DisconnectReason, Grants, Token
from lkkit.agents import JobContext, Worker
from lkkit.testing import LocalLiveKitServer

pytestmark = pytest.mark.anyio

FAILED_WITHIN_S = 60  # the SDK gives up after 10 reconnection attempts (~20-25 s here)


def _token(server: LocalLiveKitServer, identity: str, room: str = "faults") -> str:
    grants = Grants(room_join=True, room=room)
    return Token(identity=identity, grants=grants).sign(server.credentials)


def _python_threads() -> int:
    """Threads Python started (not the native runtime's workers that called into
    Python, which it registers as dummy threads and which belong to the SDK's pool)."""
    return sum(not t.name.startswith("Dummy-") for t in threading.enumerate())


async def _drain(subscription: lkkit.Subscription[object]) -> int:
    """Read `subscription` to its end; return how many items it gave."""
    count = 0
    async for _ in subscription:
        count += 1
    return count


async def test_a_killed_server_ends_every_part_with_typed_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with LocalLiveKitServer(log_level="warn") as server:
        alice = await lkkit.connect(server.url, _token(server, "alice"))
        bob = await lkkit.connect(server.url, _token(server, "bob"))
        peer = await alice.wait_for_participant("bob")
        tasks_before = len(asyncio.all_tasks())
        # The native layer's threads that call into Python, and anyio's worker pool,
        # exist once sessions are up; counted from here.
        await anyio.to_thread.run_sync(lambda: None)
        threads_before = _python_threads()
        async with (
            bob.audio.publish("voice") as voice,
            bob.video.publish("cam", width=160, height=120, fps=10) as cam,
            alice.events() as events,
            alice.data.messages() as messages,
            alice.audio.stream(peer) as chunks,
            alice.video.stream(peer) as frames,
            anyio.create_task_group() as tg,
        ):
            frame = np.zeros((120, 160, 4), np.uint8)
            errors: dict[str, BaseException] = {}

            async def keep(name: str, write: object) -> None:
                try:
                    while True:
                        await write()  # type: ignore[operator]
                except lkkit.LkkitError as exc:
                    errors[name] = exc

            tg.start_soon(keep, "audio", lambda: voice.write(lkkit.sine_tone(440.0, 0.1)))
            tg.start_soon(keep, "video", lambda: cam.write(frame))
            await bob.data.send(b"before", topic="t")
            with anyio.fail_after(15):
                await chunks.receive()
                await frames.receive()
                assert (await messages.receive()).payload == b"before"

            assert server.pid is not None
            killed = time.monotonic()
            os.kill(server.pid, signal.SIGKILL)
            seen: list[type[lkkit.Event]] = []
            with anyio.fail_after(FAILED_WITHIN_S):
                async for event in events:
                    seen.append(type(event))
                    if isinstance(event, lkkit.Reconnecting):
                        # Sent while reconnecting: waits for the outcome, then fails.
                        with pytest.raises(lkkit.NotConnected):
                            await alice.data.send(b"during", topic="t")
                        failed_after = time.monotonic() - killed
                # The events end after Disconnected: the session is over.
            assert lkkit.Reconnecting in seen
            assert seen[-1] is lkkit.Disconnected
            assert await alice.wait_closed() is DisconnectReason.UNKNOWN  # the SDK's
            with anyio.fail_after(10):
                assert await _drain(messages) == 0  # nothing was delivered meanwhile
                await _drain(chunks)
                await _drain(frames)
                await bob.wait_closed()
            with anyio.fail_after(10):
                while len(errors) < 2:
                    await anyio.sleep(0.05)
            assert isinstance(errors["audio"], lkkit.NotConnected)
            assert isinstance(errors["video"], lkkit.NotConnected)
            with pytest.raises(lkkit.NotConnected):
                await alice.data.send(b"after")
            tg.cancel_scope.cancel()
        assert 5 < failed_after < FAILED_WITHIN_S
        await alice.aclose()
        await bob.aclose()
        with anyio.fail_after(10):
            while len(asyncio.all_tasks()) > tasks_before:
                await anyio.sleep(0.05)
    assert _python_threads() <= threads_before, [t.name for t in threading.enumerate()]


async def test_a_server_restarted_on_its_port_gets_sessions_and_workers_back() -> None:
    jobs: list[str] = []

    async def entrypoint(ctx: JobContext) -> None:
        jobs.append(ctx.job.room_name)
        await ctx.session.wait_closed()

    async with LocalLiveKitServer(log_level="warn") as server:
        alice = await lkkit.connect(server.url, _token(server, "alice"))
        bob = await lkkit.connect(server.url, _token(server, "bob"))
        await alice.wait_for_participant("bob")
        async with (
            Worker(
                entrypoint,
                url=server.url,
                credentials=server.credentials,
                drain_timeout=2.0,
                shutdown_timeout=2.0,
            ) as worker,
            alice.events(lkkit.Reconnecting, lkkit.Reconnected) as alice_events,
            bob.data.messages("t") as messages,
        ):
            with anyio.fail_after(10):
                while not worker.registered:
                    await anyio.sleep(0.05)
            server.kill()
            with anyio.fail_after(5):
                assert isinstance(await alice_events.receive(), lkkit.Reconnecting)
            # Sent during the outage: waits for the reconnection, then goes (to whoever
            # is back in the room by then: LiveKit does not store messages).
            sending = asyncio.create_task(alice.data.send(b"during the outage", topic="t"))
            await anyio.sleep(1.0)
            assert not sending.done()
            await anyio.to_thread.run_sync(server.restart)
            with anyio.fail_after(20):
                assert isinstance(await alice_events.receive(), lkkit.Reconnected)
                await sending
                while "bob" not in alice.remote_participants:
                    await anyio.sleep(0.05)
                await alice.data.send(b"after the outage", topic="t")
                payloads = {(await messages.receive()).payload}
                if payloads == {b"during the outage"}:  # bob was back first
                    payloads.add((await messages.receive()).payload)
                assert b"after the outage" in payloads
                # The worker registers again and takes new jobs.
                while not worker.registered:
                    await anyio.sleep(0.05)
            async with lkkit.connect(server.url, _token(server, "carol", "after")):
                with anyio.fail_after(15):
                    while "after" not in jobs:
                        await anyio.sleep(0.05)
        await alice.aclose()
        await bob.aclose()
