"""The example agents end to end: SPEC's tone agent and the echo agent, served by a
worker (in-process, and through `lkkit agent run`) and heard by a real user session."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import anyio
import numpy as np
import numpy.typing as npt
import pytest

import lkkit
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
RATE = 48_000


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peak_hz(samples: npt.NDArray[np.int16]) -> float:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x, n=8 * len(x)))
    return float(np.argmax(spectrum) * RATE / (8 * len(x)))


async def hear(user: lkkit.Session, identity: str, seconds: float) -> npt.NDArray[np.int16]:
    """`seconds` of the loud audio `identity` publishes, as heard by `user`."""
    with anyio.fail_after(10):
        speaker = await user.wait_for_participant(identity)
    collected: list[npt.NDArray[np.int16]] = []
    with anyio.fail_after(15):
        async with user.audio.stream(speaker, frame_ms=50) as chunks:
            async for chunk in chunks:
                if np.abs(chunk.samples).max() > 1000:
                    collected.append(chunk.samples)
                if len(collected) * 0.05 >= seconds:
                    break
    return np.concatenate(collected)


async def wait_for_agent(session: lkkit.Session) -> str:
    with anyio.fail_after(10):
        agent = await session.wait_for_participant(kind=lkkit.ParticipantKind.AGENT)
    return agent.identity


async def test_the_tone_agent_plays_440_hz(livekit_room: LiveKitRoom) -> None:
    # lkkit.testing's helper: a worker for this test's server, as users test agents.
    async with livekit_room.worker(example("tone_agent").entrypoint):
        user = await livekit_room.join("user")  # creates the room: the agent's job
        agent = await wait_for_agent(user)
        audio = await hear(user, agent, 1.0)
    assert abs(peak_hz(audio) - 440.0) < 5.0


async def test_the_echo_agent_answers_text_and_plays_the_users_audio_back(
    livekit_room: LiveKitRoom,
) -> None:
    # lkkit.testing's helper: a worker for this test's server, as users test agents.
    async with livekit_room.worker(example("echo_agent").entrypoint):
        user = await livekit_room.join("user")
        agent = await wait_for_agent(user)
        async with user.data.messages("chat") as replies:
            with anyio.fail_after(10):
                while True:  # until the agent's data channel is up
                    await user.data.send("hello", topic="chat")
                    with anyio.move_on_after(0.5):
                        reply = await replies.receive()
                        break
        assert reply.text == "echo: hello"
        assert reply.sender == agent
        async with anyio.create_task_group() as tg, user.audio.publish("mic") as mic:

            async def speak() -> None:
                written = 0
                while True:
                    await mic.write(lkkit.sine_tone(660.0, 0.5, start_sample=written))
                    written += RATE // 2

            tg.start_soon(speak)
            audio = await hear(user, agent, 0.5)
            tg.cancel_scope.cancel()
    assert abs(peak_hz(audio) - 660.0) < 5.0


async def test_lkkit_agent_run_serves_jobs_and_drains_on_sigterm(
    livekit_room: LiveKitRoom,
) -> None:
    server = livekit_room.server
    env = {
        **os.environ,
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": server.api_key,
        "LIVEKIT_API_SECRET": server.api_secret,
    }
    # A plain Popen: its output is read line by line in a thread until it registers.
    process = subprocess.Popen(  # noqa: ASYNC220
        [
            sys.executable,
            "-m",
            "lkkit",
            "agent",
            "run",
            "examples.tone_agent:entrypoint",
            "--drain-timeout",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            while b"registered" not in await anyio.to_thread.run_sync(process.stdout.readline):
                pass
        user = await livekit_room.join("user")
        audio = await hear(user, await wait_for_agent(user), 0.5)
        assert abs(peak_hz(audio) - 440.0) < 5.0
        process.send_signal(signal.SIGTERM)
        code = await anyio.to_thread.run_sync(lambda: process.wait(timeout=20))
        assert code == 0
        output = process.stdout.read().decode()
        assert "ended" in output  # the job's lifecycle is logged
        assert server.api_secret not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def test_lkkit_agent_dispatch(livekit_room: LiveKitRoom) -> None:
    server = livekit_room.server
    result = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "lkkit",
            "agent",
            "dispatch",
            livekit_room.name,
            "helper",
            "--metadata",
            "m",
            "--url",
            server.url,
            "--api-key",
            server.api_key,
            "--api-secret",
            server.api_secret,
        ],
    )
    dispatch_id = result.stdout.decode().strip()
    assert dispatch_id.startswith("AD_")
    async with lkkit.RoomAdmin(server.url, server.credentials) as admin:
        listed = {d.id: d for d in await admin.list_dispatches(livekit_room.name)}
    assert listed[dispatch_id].agent_name == "helper"
    assert listed[dispatch_id].metadata == "m"
    failed = await anyio.run_process(
        [sys.executable, "-m", "lkkit", "agent", "dispatch", livekit_room.name, "helper"],
        env={k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")},
        check=False,
    )
    assert failed.returncode == 2
    assert b"LIVEKIT_URL" in failed.stderr
