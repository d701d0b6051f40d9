"""SPEC's tone agent: joins every new room and plays a constant 440 Hz sine in 10 ms frames.

    LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... \\
        python examples/tone_agent.py
    # or: lkkit agent run examples.tone_agent:entrypoint
"""

from __future__ import annotations

import asyncio

import lkkit
from lkkit.agents import JobContext, Worker

RATE = 48_000
SECOND = RATE  # samples per write: one second, written as 100 frames of 10 ms


async def entrypoint(ctx: JobContext) -> None:
    async with ctx.session.audio.publish("tone", sample_rate=RATE, frame_ms=10) as tone:
        written = 0
        while not ctx.ended:
            # The phase continues across writes: one unbroken sine.
            await tone.write(lkkit.sine_tone(440.0, 1.0, sample_rate=RATE, start_sample=written))
            written += SECOND


if __name__ == "__main__":
    asyncio.run(Worker(entrypoint).run())
