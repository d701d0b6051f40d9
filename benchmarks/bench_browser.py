"""Data with the browser as the peer (livekit-client in headless Chromium), lkkit vs
the raw SDK in the same room, taking turns:

1. Round trip of 1 KiB reliable packets, the browser echoing to the sender: p50 / p99.
   Goal <= 1.10.
2. 1 MiB to the browser's byte stream handler (read whole and hashed there): lkkit's
   default `send` vs raw `send_bytes`. Goal >= 1.0 (throughput).
3. Text streamed token by token to the browser: time to the first token at the
   browser, and tokens per second (200 tokens of ~5 bytes, written back to back):
   lkkit's `open_text_stream` vs raw `stream_text`.

The browser reports through the DevTools protocol, which adds the same delay to both.
"""

from __future__ import annotations

import functools
import hashlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import anyio
from livekit import rtc

import lkkit
from lkkit.testing import BrowserEvent, BrowserPeer, Chromium, LocalLiveKitServer

from ._harness import Comparison, percentile, report, room_name, token

WAIT = 30.0
KIB = 1024
MIB = 1024 * 1024

_ECHO = """
window.lkkit.room.on("dataReceived", (payload, participant, kind, topic) => {
  if (topic === "echo" && participant) {
    window.lkkit.room.localParticipant.publishData(payload, {
      reliable: true, topic: "echo-back", destinationIdentities: [participant.identity],
    });
  }
});
"installed";
"""


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110 (SDK state, no event to await)
            await anyio.sleep(0.05)


async def _echo_rtt(session: lkkit.Session, raw: rtc.Room, count: int) -> list[list[float]]:
    lk_times: list[float] = []
    raw_times: list[float] = []
    raw_inbox: list[bytes] = []
    raw_arrived = anyio.Event()

    def on_raw(packet: rtc.DataPacket) -> None:
        nonlocal raw_arrived
        if packet.topic == "echo-back":
            raw_inbox.append(packet.data)
            raw_arrived.set()

    raw.on("data_received", on_raw)
    async with session.data.messages("echo-back") as echoes:
        for i in range(count + 5):  # the first five warm up
            payload = i.to_bytes(4, "big") + os.urandom(KIB - 4)
            start = time.perf_counter()
            await session.data.send(payload, topic="echo")
            with anyio.fail_after(WAIT):
                while (await echoes.receive()).payload != payload:
                    pass
            if i >= 5:
                lk_times.append(time.perf_counter() - start)

            raw_arrived = anyio.Event()
            raw_inbox.clear()
            start = time.perf_counter()
            await raw.local_participant.publish_data(payload, topic="echo", reliable=True)
            with anyio.fail_after(WAIT):
                while payload not in raw_inbox:
                    await raw_arrived.wait()
                    raw_arrived = anyio.Event()
            if i >= 5:
                raw_times.append(time.perf_counter() - start)
    raw.off("data_received", on_raw)
    return [lk_times, raw_times]


async def _timed(peer: BrowserPeer, send: Callable[[], Awaitable[object]], kind: str,
                 where: Callable[[BrowserEvent], bool]) -> float:  # fmt: skip
    start = time.perf_counter()
    await send()
    await peer.wait_for(kind, where, timeout=WAIT)
    return time.perf_counter() - start


async def _to_browser(
    peer: BrowserPeer, session: lkkit.Session, raw: rtc.Room, count: int
) -> list[list[float]]:
    await peer.call("registerByteStream", "big", 0)

    async def lkkit_send(payload: bytes) -> None:
        await session.data.send(payload, topic="big")  # the default wire

    async def raw_send(payload: bytes) -> None:
        await raw.local_participant.send_bytes(payload, topic="big")

    times: list[list[float]] = [[], []]
    for run in range(count):
        order = ((0, lkkit_send), (1, raw_send))
        for index, send in order if run % 2 == 0 else order[::-1]:  # neither always first
            payload = os.urandom(MIB)
            digest = hashlib.sha256(payload).hexdigest()

            def arrived(event: BrowserEvent, digest: str = digest) -> bool:
                return bool(event["sha256"] == digest)

            times[index].append(
                await _timed(peer, functools.partial(send, payload), "byteStream", arrived)
            )
    return times


async def _streamed_text(
    peer: BrowserPeer, session: lkkit.Session, raw: rtc.Room, count: int
) -> tuple[list[list[float]], list[list[float]]]:
    await peer.call("registerTextChunks", "tokens")
    tokens = [f"w{i:03d} " for i in range(200)]
    first: list[list[float]] = [[], []]
    rate: list[list[float]] = [[], []]
    for run in range(count):
        for index in (0, 1) if run % 2 == 0 else (1, 0):  # neither always first
            marker = f"<{run}-{index}> "
            start = time.perf_counter()
            if index == 0:
                writer: (
                    lkkit.DataStreamWriter[str] | rtc.TextStreamWriter
                ) = await session.data.open_text_stream(topic="tokens")
            else:
                writer = await raw.local_participant.stream_text(topic="tokens")
            await writer.write(marker)

            def is_marker(event: BrowserEvent, marker: str = marker) -> bool:
                return bool(event["chunk"] == marker)

            await peer.wait_for("textChunk", is_marker, timeout=WAIT)
            first[index].append(time.perf_counter() - start)
            stream_start = time.perf_counter()
            for token_text in tokens:
                await writer.write(token_text)
            end_marker = f"</{run}-{index}>"
            await writer.write(end_marker)

            def is_end(event: BrowserEvent, end_marker: str = end_marker) -> bool:
                return bool(event["chunk"] == end_marker)

            await peer.wait_for("textChunk", is_end, timeout=WAIT)
            rate[index].append(len(tokens) / (time.perf_counter() - stream_start))
            await writer.aclose()
    return first, rate


async def main(server: LocalLiveKitServer, quick: bool) -> None:
    room = room_name("browser")
    with Chromium() as chromium:
        peer = await chromium.new_peer()
        raw = rtc.Room()
        try:
            await peer.connect(server.url, token(server, room, "web"))
            session = await lkkit.connect(server.url, token(server, room, "lk"))
            await raw.connect(server.url, token(server, room, "raw"))
            await peer.evaluate(_ECHO)
            await _until(
                lambda: "web" in session.remote_participants and "web" in raw.remote_participants
            )
            # The browser sees a participant that publishes nothing up to ~3 s late, and
            # gets its packets without a sender until then.
            with anyio.fail_after(WAIT):
                while not {"lk", "raw"} <= set(await peer.call("remoteIdentities")):  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            lk, plain = await _echo_rtt(session, raw, 50 if quick else 300)
            ms = 1000.0
            report(
                "Browser: round trip of 1 KiB reliable packets (the browser echoes)",
                [
                    Comparison("RTT p50", "ms", percentile(lk, 50) * ms,
                               percentile(plain, 50) * ms, "raw publish_data", "<= 1.10"),
                    Comparison("RTT p99", "ms", percentile(lk, 99) * ms,
                               percentile(plain, 99) * ms, "raw publish_data", "<= 1.10"),
                ],
            )  # fmt: skip
            lk_tp, raw_tp = await _to_browser(peer, session, raw, 3 if quick else 10)
            first, rate = await _streamed_text(peer, session, raw, 3 if quick else 10)
            report(
                "Browser: 1 MiB to its byte stream handler; text streamed token by token",
                [
                    Comparison("1 MiB throughput", "MB/s", MIB / statistics.median(lk_tp) / 1e6,
                               MIB / statistics.median(raw_tp) / 1e6, "raw send_bytes",
                               ">= 1.0", lower_is_better=False),
                    Comparison("first token at the browser", "ms",
                               statistics.median(first[0]) * ms,
                               statistics.median(first[1]) * ms, "raw stream_text", "<= 1.10"),
                    Comparison("tokens per second", "tok/s", statistics.median(rate[0]),
                               statistics.median(rate[1]), "raw stream_text", ">= 0.90",
                               lower_is_better=False),
                ],
            )  # fmt: skip
            await session.aclose()
        finally:
            await raw.disconnect()
            await peer.aclose()
