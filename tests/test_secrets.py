"""Secrets stay secret: a full scenario against the real server (join, data, audio, RPC,
admin calls, a rejected join, failing verifications, the CLI) with every log record
captured at DEBUG, and the reprs and error messages it produces; neither the API
secret nor any token appears in any of them."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from datetime import timedelta

import anyio
import pytest

import lkkit
from lkkit import Credentials, Grants, Token
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio


async def test_no_secret_or_token_in_logs_reprs_errors_or_cli_output(
    livekit_room: LiveKitRoom, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, lkkit's and the SDK's
    credentials = livekit_room.credentials
    secret = credentials.api_secret
    tokens = [livekit_room.token(identity) for identity in ("alice", "bob")]
    texts: list[str] = []

    alice = lkkit.connect(livekit_room.url, tokens[0])
    bob = lkkit.connect(livekit_room.url, tokens[1])
    async with alice, bob:
        texts += [repr(alice), str(alice), repr(credentials), str(credentials)]
        peer = await bob.wait_for_participant("alice")
        texts += [repr(peer), repr(bob.local_participant)]
        bob.rpc.register("echo", lambda call: call.payload)
        assert await alice.rpc.call("bob", "echo", "hi") == "hi"
        async with bob.data.messages() as messages:
            await alice.data.send(b"x" * 40_000, topic="big")  # a native stream
            with anyio.fail_after(10):
                texts.append(repr(await messages.receive()))
        async with alice.audio.publish("voice") as voice:
            await voice.write(lkkit.sine_tone(440.0, 0.2))
            texts.append(repr(voice))
        async with lkkit.RoomAdmin(livekit_room.url, credentials) as admin:
            texts.append(repr(admin))
            texts += [repr(p) for p in await admin.list_participants(livekit_room.name)]

    # Failures: their messages must not quote what failed.
    wrong = Credentials(api_key=credentials.api_key, api_secret="x" * 40)
    forged = Token(identity="mallory", grants=Grants(room_join=True, room="r")).sign(wrong)
    expired = Token(identity="old", ttl=timedelta(seconds=1)).sign(credentials)
    tokens += [forged, expired]
    with pytest.raises(lkkit.ConnectionRejected) as rejected:
        await lkkit.connect(livekit_room.url, forged)
    texts += [str(rejected.value), repr(rejected.value), repr(rejected.value.__cause__)]
    with pytest.raises(lkkit.TokenSignatureInvalid) as invalid:
        Token.verify(forged, credentials)
    texts.append(str(invalid.value))
    await asyncio.sleep(2.1)
    with pytest.raises(lkkit.TokenExpired) as old:
        Token.verify(expired, credentials, leeway=timedelta(0))
    texts.append(str(old.value))

    # The CLI, as a user runs it (secrets from the environment).
    env = {"LIVEKIT_API_KEY": credentials.api_key, "LIVEKIT_API_SECRET": secret}
    for argv in (
        ["token", "create", "--join", "--room", "r", "--identity", "u"],
        ["token", "verify", forged],
        ["token", "verify", expired],
        ["token", "create", "--join"],  # a usage error
    ):
        done = await anyio.run_process(
            [sys.executable, "-m", "lkkit", *argv],
            env={**env, "PATH": "/usr/bin:/bin"},
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        texts.append(done.stderr.decode())
        if argv[1] == "verify":
            texts.append(done.stdout.decode())

    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records if record.args]
    assert len(caplog.records) > 10  # the scenario did log
    for text in texts:
        assert secret not in text, text
        for token in tokens:
            assert token not in text, text
            assert token.split(".")[2] not in text, text  # nor its signature
