"""lkkit demo: a local livekit-server, two sessions in one room, one message, two leaves.

Run it with `nox -s demo` (it builds the server and runs in the loopback sandbox).
"""

from __future__ import annotations

import asyncio

from livekit import rtc

import lkkit
from lkkit.testing import LocalLiveKitServer

ROOM = "demo-room"


async def main() -> None:
    async with LocalLiveKitServer() as server:
        print(f"server: {server.url}")

        def token(identity: str) -> str:
            grants = lkkit.Grants(room_join=True, room=ROOM)
            return lkkit.Token(identity=identity, name=identity.title(), grants=grants).sign(
                server.credentials
            )

        async with lkkit.connect(server.url, token("alice")) as alice:
            alice.add_shutdown_callback(lambda: print("alice: session ended"))
            async with lkkit.connect(server.url, token("bob")) as bob:
                bob.add_shutdown_callback(lambda: print("bob: session ended"))
                loop = asyncio.get_running_loop()
                received: asyncio.Future[rtc.DataPacket] = loop.create_future()
                bob.room.on("data_received", lambda p: received.done() or received.set_result(p))
                print(f"alice sees: {sorted(alice.remote_participants) or ['(nobody yet)']}")
                print(f"bob sees:   {sorted(bob.remote_participants)}")

                await alice.room.local_participant.publish_data(
                    b"hello from alice", topic="chat", reliable=True
                )
                packet = await asyncio.wait_for(received, timeout=10)
                sender = packet.participant.identity if packet.participant else "server"
                print(f"bob got on {packet.topic!r} from {sender}: {packet.data.decode()}")
            print(f"alice sees after bob left: {sorted(alice.remote_participants) or ['nobody']}")
        print(f"alice left ({alice.disconnect_reason.value if alice.disconnect_reason else '?'})")


if __name__ == "__main__":
    asyncio.run(main())
