"""Two livekit-server nodes sharing a Redis (`LocalLiveKitCluster`): participants on
different nodes share a room, data and audio; a worker on one node serves a room
created through the other; and what everyone sees when a node is killed (timings in
docs/testing.md, "A multi-node cluster")."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import numpy as np
import pytest

import lkkit
from data_helpers import receive, wait_ready
from lkkit.agents import JobContext, Worker
from lkkit.testing import LiveKitRoom, LocalLiveKitCluster
from test_audio import Collector, peak_hz, sounding, subscribed_publication

pytestmark = pytest.mark.anyio

WAIT_S = 20.0
# livekit-server v1.13.5 with the Rust SDK, measured (docs/testing.md): a session whose
# signalling node dies gives up after 17-25 s; the hosting node drops it ~25 s after
# the kill. Bounded generously, for a loaded machine.
GIVE_UP_S = 60.0


def room_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


@asynccontextmanager
async def rooms(cluster: LocalLiveKitCluster, name: str) -> AsyncIterator[list[LiveKitRoom]]:
    """One room, joinable through each node: `rooms[i].join(...)` goes through node i."""
    per_node = [LiveKitRoom(node, name) for node in cluster.nodes]
    try:
        yield per_node
    finally:
        for room in per_node:
            await room.aclose()


def worker(cluster: LocalLiveKitCluster, node: int, entrypoint: Any, **options: Any) -> Worker:
    return Worker(
        entrypoint,
        url=cluster.urls[node],
        credentials=cluster.credentials,
        drain_timeout=2.0,
        shutdown_timeout=2.0,
        **options,
    )


class Jobs:
    """An entrypoint that records its jobs (kept running until their room ends)."""

    def __init__(self) -> None:
        self.contexts: list[JobContext] = []
        self.ended: list[str] = []

    async def __call__(self, ctx: JobContext) -> None:
        self.contexts.append(ctx)
        ctx.add_shutdown_callback(lambda: self.ended.append(ctx.job.room_name))

    def in_room(self, room: str) -> JobContext:
        (ctx,) = [c for c in self.contexts if c.job.room_name == room]
        return ctx


async def tone_heard(sender: lkkit.Session, receiver: lkkit.Session, hz: float) -> float:
    """`sender` plays a tone; the pitch `receiver` hears."""
    async with anyio.create_task_group() as tg:
        async with sender.audio.publish("voice") as voice:
            peer, _ = await subscribed_publication(receiver, sender.local_participant.identity)
            collector = Collector(receiver.audio.stream(peer, frame_ms=10))
            tg.start_soon(collector.run)
            await voice.write(lkkit.sine_tone(hz, 1.0, amplitude=0.5))
            await voice.flush()
            await voice.wait_for_playout()
            await anyio.sleep(0.3)  # network and jitter buffer
        with anyio.fail_after(10):
            await collector.ended.wait()  # unpublishing ends the stream
    return peak_hz(sounding(collector))


async def test_participants_on_different_nodes_share_a_room_data_and_audio(
    livekit_cluster: LocalLiveKitCluster,
) -> None:
    name = room_name("meet")
    async with rooms(livekit_cluster, name) as through:
        alice = await through[0].join("alice")
        bob = await through[1].join("bob")
        # Hosted by the node it was first joined through; bob's signalling is relayed.
        with anyio.fail_after(WAIT_S):
            assert (await alice.wait_for_participant("bob")).identity == "bob"
            assert (await bob.wait_for_participant("alice")).identity == "alice"
        assert livekit_cluster.room_node(name) == 0
        await wait_ready(alice, bob)
        await wait_ready(bob, alice)

        big = np.random.default_rng(5).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
        async with bob.data.messages("chat") as at_bob, alice.data.messages("chat") as at_alice:
            await alice.data.send("hello bob", topic="chat")
            await bob.data.send("hello alice", topic="chat")
            await bob.data.send(big, topic="chat")  # a native byte stream
            to_bob, to_alice, big_to_alice = (
                await receive(at_bob),
                await receive(at_alice),
                await receive(at_alice),
            )
        assert (to_bob.sender, to_bob.payload) == ("alice", b"hello bob")
        assert (to_alice.sender, to_alice.payload) == ("bob", b"hello alice")
        assert (big_to_alice.sender, big_to_alice.payload) == ("bob", big)

        assert abs(await tone_heard(alice, bob, 440.0) - 440.0) <= 5.0
        assert abs(await tone_heard(bob, alice, 660.0) - 660.0) <= 5.0


async def test_a_worker_on_one_node_serves_a_room_created_through_the_other(
    livekit_cluster: LocalLiveKitCluster,
) -> None:
    jobs = Jobs()

    async def greet(ctx: JobContext) -> None:
        await jobs(ctx)
        user = await ctx.wait_for_participant()
        await ctx.session.data.send(f"hello {user.identity}", topic="greeting")

    name = room_name("served")
    async with (
        worker(livekit_cluster, 0, greet) as running,
        lkkit.RoomAdmin(livekit_cluster.urls[1], livekit_cluster.credentials) as api,
        rooms(livekit_cluster, name) as through,
    ):
        await api.create_room(name)
        await until(lambda: len(jobs.contexts) == 1)
        assert livekit_cluster.room_node(name) == 1
        ctx = jobs.contexts[0]
        assert ctx.job.room_name == name
        assert ctx.session.is_connected
        assert ctx.job.id in running.running_jobs
        agent = ctx.session.local_participant.identity
        # The agent joined through node 0; the room's node (1) lists it.
        identities = {p.identity for p in await api.list_participants(name)}
        assert agent in identities

        bob = await through[1].join("bob")
        async with bob.data.messages("greeting") as greetings:
            message = await receive(greetings)
        assert (message.sender, message.payload) == (agent, b"hello bob")


class Seen:
    """The events one session saw, each with the time since `t0` (set at the kill)."""

    def __init__(self, session: lkkit.Session) -> None:
        self.session = session
        self.events: list[tuple[float, lkkit.Event]] = []
        self.t0 = 0.0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with self.session.events() as events:
            task_status.started()
            async for event in events:
                self.events.append((time.monotonic(), event))

    def first(
        self, kind: type[lkkit.Event], where: Callable[[Any], bool] = lambda _: True
    ) -> float | None:
        """When the first `kind` event (matching `where`) came, in s after `t0`."""
        for at, event in self.events:
            if isinstance(event, kind) and at >= self.t0 and where(event):
                return round(at - self.t0, 2)
        return None

    async def wait_for(
        self,
        kind: type[lkkit.Event],
        where: Callable[[Any], bool] = lambda _: True,
        *,
        within: float,
    ) -> float:
        """When it came, waiting until `within` s after `t0`."""
        with anyio.fail_after(max(0.0, self.t0 + within - time.monotonic())):
            while (at := self.first(kind, where)) is None:
                await anyio.sleep(0.05)
        return at


def left(identity: str) -> Callable[[Any], bool]:
    return lambda event: event.participant.identity == identity


async def test_killing_a_node_what_everyone_sees() -> None:
    """Room A is hosted by node 0 and room B by node 1; in each, one participant
    connected through each node, and an agent of the worker on the other node. Then
    node 1 is killed (SIGKILL)."""
    timings: dict[str, float] = {}
    async with AsyncExitStack() as stack:
        # A cluster of its own: the session's must survive.
        cluster = await stack.enter_async_context(LocalLiveKitCluster(nodes=2))
        jobs = Jobs()
        w0 = await stack.enter_async_context(worker(cluster, 0, jobs, agent_name="w0"))
        w1 = await stack.enter_async_context(worker(cluster, 1, jobs, agent_name="w1"))
        api = await stack.enter_async_context(lkkit.RoomAdmin(cluster.urls[0], cluster.credentials))
        a, b = room_name("a"), room_name("b")
        in_a = await stack.enter_async_context(rooms(cluster, a))
        in_b = await stack.enter_async_context(rooms(cluster, b))
        alice = await in_a[0].join("alice")  # first: room A lives on node 0
        bob = await in_a[1].join("bob")
        dave = await in_b[1].join("dave")  # first: room B lives on node 1
        erin = await in_b[0].join("erin")
        assert (cluster.room_node(a), cluster.room_node(b)) == (0, 1)
        await api.create_dispatch(a, "w1")  # joins through node 1
        await api.create_dispatch(b, "w0")  # joins through node 0
        await until(lambda: len(jobs.contexts) == 2)
        agent_a, agent_b = jobs.in_room(a).session, jobs.in_room(b).session
        for session, other in (
            (alice, bob),
            (bob, alice),
            (alice, agent_a),
            (dave, erin),
            (erin, dave),
            (erin, agent_b),
        ):
            with anyio.fail_after(WAIT_S):
                await session.wait_for_participant(other.local_participant.identity)
        seen = {
            name: Seen(session)
            for name, session in (
                ("alice", alice),
                ("bob", bob),
                ("agent_a", agent_a),
                ("dave", dave),
                ("erin", erin),
                ("agent_b", agent_b),
            )
        }
        tg = await stack.enter_async_context(anyio.create_task_group())
        for watcher in seen.values():
            await tg.start(watcher.run)

        t0 = time.monotonic()
        for watcher in seen.values():
            watcher.t0 = t0
        await anyio.to_thread.run_sync(cluster.kill, 1)

        # The worker on node 1 loses its registration at once and keeps retrying.
        await until(lambda: not w1.registered, timeout=5)
        timings["w1 unregistered"] = round(time.monotonic() - t0, 2)

        # Signalled through node 1: reconnecting at once (media to node 0 is fine, but
        # signalling is gone)...
        for name in ("bob", "agent_a", "dave"):
            timings[f"{name} reconnecting"] = await seen[name].wait_for(
                lkkit.Reconnecting, within=5
            )

        # Room B's node is gone: erin and agent B (through node 0) reconnect, and room
        # B is hosted by node 0 from then on.
        for name in ("erin", "agent_b"):
            timings[f"{name} reconnecting"] = await seen[name].wait_for(
                lkkit.Reconnecting, within=30
            )
            timings[f"{name} reconnected"] = await seen[name].wait_for(lkkit.Reconnected, within=30)
        assert cluster.room_node(b) == 0
        # A new room there: those who reconnected meet again, dave is gone.
        assert seen["erin"].first(lkkit.ParticipantDisconnected, left("dave")) is not None
        await until(lambda: agent_b.local_participant.identity in erin.remote_participants)
        assert "dave" not in erin.remote_participants
        frank = await in_b[0].join("frank")
        async with frank.data.messages("t") as at_frank:
            await wait_ready(erin, frank)
            await erin.data.send("still here", topic="t")
            assert (await receive(at_frank)).payload == b"still here"

        # The worker on node 0 stays registered and serves a new room.
        assert w0.registered
        assert w0.registrations == 1
        await api.create_dispatch(room_name("c"), "w0")
        await until(lambda: len(jobs.contexts) == 3)

        # Room A (node 0) goes on: alice talks to carol, who joins through node 0.
        carol = await in_a[0].join("carol")
        async with carol.data.messages("t") as at_carol:
            await wait_ready(alice, carol)
            await alice.data.send("still here", topic="t")
            assert (await receive(at_carol)).payload == b"still here"

        # Those signalled through node 1 give up (the SDK's ten attempts at node 1)...
        for name in ("bob", "agent_a", "dave"):
            timings[f"{name} disconnected"] = await seen[name].wait_for(
                lkkit.Disconnected, within=GIVE_UP_S
            )
        await until(lambda: a in jobs.ended, timeout=5)  # ... which ends agent A's job
        assert not bob.is_connected
        assert not dave.is_connected
        # ... and node 0 drops them once their media connection times out.
        for name in ("bob", "agent_a"):
            identity = seen[name].session.local_participant.identity
            timings[f"alice sees {name} leave"] = await seen["alice"].wait_for(
                lkkit.ParticipantDisconnected, left(identity), within=GIVE_UP_S
            )
        reasons = {
            event.participant.identity: event.reason
            for _, event in seen["alice"].events
            if isinstance(event, lkkit.ParticipantDisconnected)
        }
        assert reasons == {
            "bob": lkkit.DisconnectReason.CONNECTION_TIMEOUT,
            agent_a.local_participant.identity: lkkit.DisconnectReason.CONNECTION_TIMEOUT,
        }

        # Room A's people on node 0 never noticed; the worker on node 1 is still retrying.
        assert seen["alice"].first(lkkit.Reconnecting) is None
        assert alice.is_connected
        assert erin.is_connected
        assert not w1.registered
        assert w1.registrations == 1
        tg.cancel_scope.cancel()
    print("\nafter killing node 1 (s):", timings)
