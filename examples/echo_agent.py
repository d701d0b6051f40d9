"""An echo agent: answers text on the "chat" topic and plays each user's audio back.

    LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... \\
        python examples/echo_agent.py
    # or: lkkit agent run examples.echo_agent:entrypoint
"""

from __future__ import annotations

import asyncio

import anyio

import lkkit
from lkkit.agents import JobContext, Worker

TOPIC = "chat"


async def echo_text(ctx: JobContext) -> None:
    async with ctx.session.data.messages(TOPIC) as messages:
        async for message in messages:
            reply = f"echo: {message.text}"
            to = [message.sender] if message.sender is not None else None
            await ctx.session.data.send(reply, topic=TOPIC, to=to)


async def echo_audio(ctx: JobContext, user: lkkit.RemoteParticipant) -> None:
    await ctx.session.wait_for_track(user, kind=lkkit.TrackKind.AUDIO)
    async with (
        ctx.session.audio.publish("echo") as echo,
        ctx.session.audio.stream(user, frame_ms=50) as chunks,
    ):
        async for chunk in chunks:
            await echo.write(chunk.samples)


async def entrypoint(ctx: JobContext) -> None:
    user = await ctx.wait_for_participant()
    async with anyio.create_task_group() as tg:
        tg.start_soon(echo_text, ctx)
        tg.start_soon(echo_audio, ctx, user)


if __name__ == "__main__":
    asyncio.run(Worker(entrypoint).run())
