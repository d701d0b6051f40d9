"""`lkkit demo`: a local livekit-server, two sessions in one room, a message, a large
message, two leaves; what each side saw is printed.

This module is also the demo's source to read: everything below is lkkit's public API
and `lkkit.testing`. `python3 -m nox -s demo` runs it too. Where WebRTC media could
leave 127.0.0.0/8 it runs inside lkkit's loopback sandbox.
"""

from __future__ import annotations

import argparse
import asyncio

import anyio

import lkkit

from ._common import CommandFailed, example, rerun_in_sandbox_if_needed

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` command to `commands`."""
    demo = commands.add_parser(
        "demo",
        help="run the demo: a local server, two sessions, messages, leaves",
        description="Start a local livekit-server (built on first use); alice and bob "
        "join one room, alice sends a text message and a 1 MiB message (a native "
        "stream), both print what they saw, both leave. Runs inside lkkit's loopback "
        "sandbox where WebRTC media could leave 127.0.0.0/8.",
        **example("lkkit demo"),
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    status = rerun_in_sandbox_if_needed(args)
    if status is not None:
        return status
    try:
        asyncio.run(main())
    except lkkit.LocalServerError as exc:
        raise CommandFailed(str(exc)) from None
    return 0


ROOM = "demo-room"


async def next_join_or_leave(events: lkkit.EventSubscription[lkkit.Event]) -> str:
    """The next join or leave in `events`, as text (waits at most 10 s)."""
    with anyio.fail_after(10):
        async for event in events:
            match event:
                case lkkit.ParticipantConnected(participant=who):
                    return f"{who.identity} joined"
                case lkkit.ParticipantDisconnected(participant=who, reason=reason):
                    return f"{who.identity} left ({reason.value})"
    raise RuntimeError("the session ended first")


async def main() -> None:
    # Imported here: `lkkit agent run` loads this module and must stay light.
    from lkkit.testing import LocalLiveKitServer

    async with LocalLiveKitServer() as server:
        print(f"server:  {server.url} (livekit-server, real)")

        def token(identity: str) -> str:
            grants = lkkit.Grants(room_join=True, room=ROOM)
            token = lkkit.Token(identity=identity, name=identity.title(), grants=grants)
            return token.sign(server.credentials)

        async with lkkit.connect(server.url, token("alice")) as alice:
            alice.add_shutdown_callback(lambda: print("alice:   session ended"))
            async with alice.events(
                lkkit.ParticipantConnected, lkkit.ParticipantDisconnected
            ) as room_events:
                async with lkkit.connect(server.url, token("bob")) as bob:
                    bob.add_shutdown_callback(lambda: print("bob:     session ended"))
                    print(f"bob:     joined, sees {sorted(bob.remote_participants)}")

                    async with bob.data.messages("chat") as inbox:
                        # Alice sees bob once the server announces him (it batches the
                        # joins of participants that publish nothing: up to 3 s).
                        print(f"alice:   saw {await next_join_or_leave(room_events)}")

                        sent = await alice.data.send("hello from alice", topic="chat")
                        print(f"alice:   sent {sent.size} bytes on 'chat' in {sent.packets} packet")
                        with anyio.fail_after(10):
                            message = await anext(aiter(inbox))
                        print(
                            f"bob:     got {message.payload.decode()!r} on {message.topic!r} "
                            f"from {message.sender}"
                        )
                        # 1 MiB: a LiveKit byte stream, which any client (a browser too)
                        # receives whole with its stream handler.
                        big = bytes(range(256)) * 4096
                        sent = await alice.data.send(big, topic="chat")
                        print(f"alice:   sent {sent.size:,} bytes as a native byte stream")
                        with anyio.fail_after(30):
                            large = await anext(aiter(inbox))
                        print(
                            f"bob:     got {len(large.payload):,} bytes ({large.kind.value}), "
                            f"intact: {large.payload == big}"
                        )
                print("bob:     left")
                print(f"alice:   saw {await next_join_or_leave(room_events)}")
        print(
            f"alice:   left ({alice.disconnect_reason.value if alice.disconnect_reason else '?'})"
        )
