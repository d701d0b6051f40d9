"""The server commands of lkkit's command line (`room`, `participant`, `send`,
`listen`, `token decode`), each run through the real entry point (`python -m lkkit`)
as a subprocess against the real server, their effects observed by joined sessions."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

import lkkit
from lkkit._admin import RoomAdmin
from lkkit._events import (
    Disconnected,
    ParticipantAttributesChanged,
    ParticipantMetadataChanged,
    RoomMetadataChanged,
    TrackMuted,
)
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

WAIT_S = 15.0


def server_flags(room: LiveKitRoom) -> list[str]:
    credentials = room.credentials
    return [
        *("--url", room.url),
        *("--api-key", credentials.api_key),
        *("--api-secret", credentials.api_secret),
    ]


async def lkkit_cli(
    *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m lkkit ARGV`, its exit status, stdout and stderr (as text)."""
    with anyio.fail_after(WAIT_S * 2):
        done = await anyio.run_process(
            [sys.executable, "-m", "lkkit", *argv], input=stdin, check=False, env=env
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def ok(*argv: str, stdin: bytes = b"") -> str:
    done = await lkkit_cli(*argv, stdin=stdin)
    assert (done.returncode, done.stderr) == (0, ""), done
    return done.stdout


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


async def failure(room: LiveKitRoom, *argv: str) -> str:
    """Run a command expected to fail: exit status 1, one clean line on stderr."""
    done = await lkkit_cli(*argv)
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert done.stderr.startswith("lkkit: error: ")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert room.credentials.api_secret not in done.stderr
    return done.stderr


# -- token decode ------------------------------------------------------------------------


async def test_token_decode_prints_the_claims_and_never_the_jwt(
    livekit_room: LiveKitRoom,
) -> None:
    jwt = livekit_room.token("alice", name="Alice")
    out = await ok("token", "decode", jwt)
    claims = json.loads(out)
    assert (claims["sub"], claims["name"], claims["video"]["room"]) == (
        "alice",
        "Alice",
        livekit_room.name,
    )
    assert jwt not in out
    # Not verified: a token signed with another secret decodes just the same.
    other = lkkit.Credentials(api_key="devkey", api_secret="y" * 40)
    forged = lkkit.Token(identity="mallory").sign(other)
    assert json.loads(await ok("token", "decode", forged))["sub"] == "mallory"
    help_text = await ok("token", "decode", "--help")
    assert "NOT verified" in help_text
    assert "example:" in help_text
    done = await lkkit_cli("token", "decode", "not.a-jwt")
    assert done.returncode == 2
    assert done.stderr == "lkkit: error: not a JWT (three base64url parts, JSON claims)\n"


# -- rooms -------------------------------------------------------------------------------


async def test_room_create_list_update_delete(livekit_room: LiveKitRoom) -> None:
    name = livekit_room.name
    flags = server_flags(livekit_room)
    (created,) = json_lines(
        await ok(
            *("room", "create", name, "--metadata", "m0", "--empty-timeout", "60"),
            *("--max-participants", "5", "--json", *flags),
        )
    )
    assert (created["name"], created["metadata"], created["max_participants"]) == (
        name,
        "m0",
        5,
    )
    assert created["empty_timeout"] == 60
    listed = json_lines(await ok("room", "list", name, "--json", *flags))
    assert [room["sid"] for room in listed] == [created["sid"]]
    text = await ok("room", "list", *flags)
    assert any(line.startswith(f"{name}\t{created['sid']}\t") for line in text.splitlines())

    alice = await livekit_room.join("alice")
    async with alice.events(RoomMetadataChanged, Disconnected) as events:
        out = await ok("room", "update", name, "--metadata", "m1", *flags)
        assert out.startswith(f"{name}\t")
        assert "metadata='m1'" in out
        with anyio.fail_after(WAIT_S):
            changed = await events.__anext__()
        assert isinstance(changed, RoomMetadataChanged)
        assert (changed.old_metadata, changed.metadata) == ("m0", "m1")

        assert await ok("room", "delete", name, *flags) == f"deleted room {name}\n"
        with anyio.fail_after(WAIT_S):
            gone = await events.__anext__()
        assert gone == Disconnected(reason=lkkit.DisconnectReason.ROOM_DELETED)
    assert await ok("room", "list", name, *flags) == ""
    assert await failure(livekit_room, "room", "delete", name, *flags) == (
        f"lkkit: error: not_found: no room {name!r}\n"
    )


async def test_room_create_dispatches_agents(livekit_room: LiveKitRoom) -> None:
    flags = server_flags(livekit_room)
    await ok("room", "create", livekit_room.name, "--agent", "echo", *flags)
    async with RoomAdmin(livekit_room.url, livekit_room.credentials) as admin:
        dispatches = await admin.list_dispatches(livekit_room.name)
    assert [d.agent_name for d in dispatches] == ["echo"]


# -- participants ------------------------------------------------------------------------


async def test_participant_list_get_and_update(livekit_room: LiveKitRoom) -> None:
    flags = server_flags(livekit_room)
    room = livekit_room.name
    alice = await livekit_room.join("alice", metadata="before", can_update_own_metadata=True)
    (listed,) = json_lines(await ok("participant", "list", room, "--json", *flags))
    assert (listed["identity"], listed["metadata"], listed["kind"]) == (
        "alice",
        "before",
        "standard",
    )
    (got,) = json_lines(await ok("participant", "get", room, "alice", "--json", *flags))
    assert got == listed
    text = await ok("participant", "get", room, "alice", *flags)
    assert text.startswith("alice\tPA_")
    assert "metadata='before'" in text

    async with alice.events(ParticipantMetadataChanged, ParticipantAttributesChanged) as events:
        (updated,) = json_lines(
            await ok(
                *("participant", "update", room, "alice", "--metadata", "after"),
                *("--name", "Alice", "--attribute", "role=host", "--no-can-publish"),
                *("--json", *flags),
            )
        )
        seen: dict[type[object], object] = {}
        with anyio.fail_after(WAIT_S):
            while len(seen) < 2:
                event = await events.__anext__()
                seen[type(event)] = event
    assert (updated["metadata"], updated["name"], updated["attributes"]) == (
        "after",
        "Alice",
        {"role": "host"},
    )
    permissions = updated["permissions"]
    assert isinstance(permissions, dict)
    # Only the permission given changed; the others stayed as they were.
    assert (permissions["can_publish"], permissions["can_subscribe"]) == (False, True)
    assert permissions["can_update_metadata"] is True
    metadata = seen[ParticipantMetadataChanged]
    assert isinstance(metadata, ParticipantMetadataChanged)
    assert (metadata.old_metadata, metadata.metadata) == ("before", "after")
    attributes = seen[ParticipantAttributesChanged]
    assert isinstance(attributes, ParticipantAttributesChanged)
    assert dict(attributes.changed) == {"role": "host"}
    with anyio.fail_after(WAIT_S):
        while alice.local_participant.permissions.can_publish:
            await anyio.sleep(0.02)

    done = await lkkit_cli("participant", "update", room, "alice", *flags)
    assert done.returncode == 2
    assert "nothing to change" in done.stderr


async def test_participant_remove_disconnects_with_the_reason(livekit_room: LiveKitRoom) -> None:
    flags = server_flags(livekit_room)
    alice = await livekit_room.join("alice")
    out = await ok("participant", "remove", livekit_room.name, "alice", *flags)
    assert out == f"removed alice from {livekit_room.name}\n"
    with anyio.fail_after(WAIT_S):
        assert await alice.wait_closed() is lkkit.DisconnectReason.PARTICIPANT_REMOVED
    error = await failure(livekit_room, "participant", "remove", livekit_room.name, "alice", *flags)
    assert "not_found" in error


async def test_participant_mute_mutes_the_track(livekit_room: LiveKitRoom) -> None:
    flags = server_flags(livekit_room)
    bob = await livekit_room.join("bob")
    async with bob.audio.publish("mic") as mic, bob.events(TrackMuted) as muted:
        sid = mic.publication.sid
        out = await ok("participant", "mute", livekit_room.name, "bob", sid, *flags)
        assert out == f"muted {sid} of bob in {livekit_room.name}\n"
        with anyio.fail_after(WAIT_S):
            event = await muted.__anext__()
        assert event.publication.sid == sid


# -- send ----------------------------------------------------------------------------------


async def test_send_from_text_file_and_stdin(livekit_room: LiveKitRoom, tmp_path: Path) -> None:
    flags = server_flags(livekit_room)
    room = livekit_room.name
    alice = await livekit_room.join("alice")
    bob = await livekit_room.join("bob")
    path = tmp_path / "state.bin"
    path.write_bytes(bytes(range(256)) * 10)
    async with alice.data.messages() as to_alice, bob.data.messages() as to_bob:
        out = await ok("send", room, "--text", "héllo", "--topic", "chat", *flags)
        assert out == f"sent 6 bytes to everyone in {room}\n"
        await ok("send", room, "--file", str(path), "--topic", "state", "--to", "bob", *flags)
        (sent,) = json_lines(
            await ok("send", room, "-", "--to", "alice", "--json", *flags, stdin=b"from stdin")
        )
        assert sent == {"room": room, "topic": "", "bytes": 10, "to": ["alice"], "sender": None}
        with anyio.fail_after(WAIT_S):
            a1, a2 = await to_alice.__anext__(), await to_alice.__anext__()
            b1, b2 = await to_bob.__anext__(), await to_bob.__anext__()
    assert (a1.text, a1.topic, a1.sender) == ("héllo", "chat", None)
    assert (a2.payload, a2.topic) == (b"from stdin", "")
    assert (b1.text, b1.topic) == ("héllo", "chat")
    assert (b2.payload, b2.topic, b2.sender) == (path.read_bytes(), "state", None)

    done = await lkkit_cli("send", room, "--text", "x" * 15_361, "--lossy", *flags)
    assert done.returncode == 2
    assert "lossy data must fit one packet of 15360 bytes" in done.stderr


async def test_send_of_a_large_file_streams_it_with_a_progress_bar(
    livekit_room: LiveKitRoom, tmp_path: Path
) -> None:
    flags = server_flags(livekit_room)
    room = livekit_room.name
    alice = await livekit_room.join("alice")
    path = tmp_path / "large.bin"
    path.write_bytes(random.randbytes(200_000))
    async with alice.data.messages() as to_alice:
        done = await lkkit_cli("send", room, "--file", str(path), "--progress", *flags)
        assert done.returncode == 0, done
        assert re.fullmatch(
            rf"sent 200000 bytes to everyone in {room} as a stream from "
            r"lkkit-server-[0-9a-f]{8}\n",
            done.stdout,
        )
        bars = done.stderr.rstrip("\n").split("\r")[1:]
        assert [bar.split("]")[1].split("%")[0].strip() for bar in bars] == [
            "32",
            "65",
            "98",
            "100",
        ]
        assert bars[-1] == "[" + "#" * 30 + "] 100%  195.3 / 195.3 KiB"
        with anyio.fail_after(WAIT_S):
            got = await to_alice.__anext__()
    assert (got.payload, got.kind) == (path.read_bytes(), lkkit.DataKind.BYTE_STREAM)
    # Without a terminal and without --progress: no bar.
    done = await lkkit_cli("send", room, "--file", str(path), *flags)
    assert (done.returncode, done.stderr) == (0, "")


# -- listen --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(command: list[str]) -> AsyncIterator[Process]:
    """`command` as a process, terminated at the end if it still runs (a failed test)."""
    process = await anyio.open_process(command)
    async with process:
        try:
            yield process
        finally:
            if process.returncode is None:
                process.terminate()


async def _read_until(stream: TextReceiveStream, buffer: list[str], marker: str) -> None:
    with anyio.fail_after(WAIT_S):
        while marker not in "".join(buffer):
            buffer.append(await stream.receive())


async def test_listen_prints_events_and_messages_until_interrupted(
    livekit_room: LiveKitRoom,
) -> None:
    flags = server_flags(livekit_room)
    room = livekit_room.name
    bob = await livekit_room.join("bob")
    command = [sys.executable, "-m", "lkkit", "listen", room, "--json", *flags]
    async with running(command) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        stdout, stderr = TextReceiveStream(process.stdout), TextReceiveStream(process.stderr)
        err: list[str] = []
        await _read_until(stderr, err, "Ctrl-C to stop\n")
        assert "".join(err).startswith(f"listening to {room} as lkkit-listen-")
        # The listener is hidden: bob does not see it join.
        assert [p.identity for p in bob.remote_participants.values()] == []
        await ok("room", "update", room, "--metadata", "m1", *flags)
        await ok("send", room, "--text", "hi all", "--topic", "chat", *flags)
        await bob.data.send("from bob", topic="chat")
        out: list[str] = []
        await _read_until(stdout, out, '"from bob"')
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(WAIT_S):
            assert await process.wait() == 0
        async for rest in stdout:
            out.append(rest)
    records = json_lines("".join(out))
    assert {
        "type": "event",
        "event": "RoomMetadataChanged",
        "old_metadata": "",
        "metadata": "m1",
    } in records
    messages = [r for r in records if r["type"] == "message"]
    assert [(m["sender"], m["text"], m["topic"]) for m in messages] == [
        (None, "hi all", "chat"),
        ("bob", "from bob", "chat"),
    ]
    assert livekit_room.credentials.api_secret not in "".join(out + err)


async def test_listen_for_seconds_prints_text_lines(livekit_room: LiveKitRoom) -> None:
    flags = server_flags(livekit_room)
    bob = await livekit_room.join("bob")
    env = {
        **os.environ,
        "LIVEKIT_URL": livekit_room.url,
        "LIVEKIT_API_KEY": livekit_room.credentials.api_key,
        "LIVEKIT_API_SECRET": livekit_room.credentials.api_secret,
    }
    async with anyio.create_task_group() as tasks:

        async def talk() -> None:
            # The listener needs a moment to start and join; keep talking until then.
            for _ in range(20):
                await bob.data.send("ping", topic="t")
                await anyio.sleep(0.3)

        tasks.start_soon(talk)
        done = await lkkit_cli("listen", livekit_room.name, "--for", "4", env=env)
    assert done.returncode == 0, done
    assert "message topic='t' from=bob: 'ping'" in done.stdout.splitlines()
    assert flags  # the same server, reached through the environment


# -- server ------------------------------------------------------------------------------


async def test_server_prints_its_url_and_keys_and_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-m", "lkkit", "server"]
    async with running(command) as process:
        assert process.stdout is not None
        stdout = TextReceiveStream(process.stdout)
        out: list[str] = []
        await _read_until(stdout, out, "LIVEKIT_API_SECRET=")
        await _read_until(stdout, out, "\n")
        settings = dict(line.split("=", 1) for line in "".join(out).splitlines())
        assert set(settings) == {"LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"}
        assert settings["LIVEKIT_URL"].startswith("ws://127.0.0.1:")
        # The other commands find it through the environment.
        env = {**os.environ, **settings}
        done = await lkkit_cli("room", "create", "from-env", "--json", env=env)
        assert done.returncode == 0, done
        done = await lkkit_cli("room", "list", env=env)
        assert done.stdout.startswith("from-env\tRM_"), done
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(WAIT_S):
            assert await process.wait() == 0


async def test_server_runs_a_command_beside_it_and_exits_with_its_status() -> None:
    script = (
        "import os, sys; "
        "print('seen', os.environ['LIVEKIT_URL'], os.environ['LIVEKIT_API_KEY']); "
        "sys.exit(3)"
    )
    done = await lkkit_cli("server", "--", sys.executable, "-c", script)
    assert done.returncode == 3, done
    settings = dict(line.split("=", 1) for line in done.stdout.splitlines()[:3])
    assert done.stdout.splitlines()[3] == (
        f"seen {settings['LIVEKIT_URL']} {settings['LIVEKIT_API_KEY']}"
    )
    # The server stopped with the command.
    port = int(settings["LIVEKIT_URL"].rsplit(":", 1)[1])
    with pytest.raises(OSError, match="connect"):
        await anyio.connect_tcp("127.0.0.1", port)
    done = await lkkit_cli("server", "--", "/no/such/program")
    assert (done.returncode, done.stderr.splitlines()[-1]) == (
        1,
        "lkkit: error: cannot run '/no/such/program': No such file or directory",
    )


def outside_the_sandbox(*argv: str) -> list[str]:
    """`argv` in a fresh network namespace (no address libwebrtc could use), as on a
    machine where media could leave loopback, and not marked as lkkit's sandbox."""
    env = {k: v for k, v in os.environ.items() if k != "LKKIT_SANDBOX"}
    env_args = [f"{k}={v}" for k, v in env.items()]
    return ["unshare", "--net", "env", "-i", *env_args, *argv]


async def test_server_and_demo_enter_the_loopback_sandbox_where_it_is_needed() -> None:
    lkkit_argv = [sys.executable, "-m", "lkkit"]
    done = await anyio.run_process(
        outside_the_sandbox(*lkkit_argv, "server", "--", *lkkit_argv, "room", "list"),
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert stderr.startswith(
        "lkkit: no interface here carries an address libwebrtc can use (it ignores the "
        "loopback interface); running inside lkkit's loopback sandbox\n"
    )
    # Without a command, a server in the sandbox would serve nobody: refused.
    done = await anyio.run_process(outside_the_sandbox(*lkkit_argv, "server"), check=False)
    assert done.returncode == 1
    assert "`lkkit server -- COMMAND ...`" in done.stderr.decode()
    with anyio.fail_after(60):
        done = await anyio.run_process(outside_the_sandbox(*lkkit_argv, "demo"), check=False)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    for line in (
        "alice:   saw bob joined",
        "bob:     got 'hello from alice' on 'chat' from alice",
        "bob:     got 1,048,576 bytes (byte_stream), intact: True",
        "alice:   saw bob left (client_initiated)",
        "alice:   left (client_initiated)",
    ):
        assert line in out.splitlines(), out


# -- failures ------------------------------------------------------------------------------


async def test_failures_exit_1_with_one_clean_line(livekit_room: LiveKitRoom) -> None:
    flags = server_flags(livekit_room)
    room = livekit_room.name
    await livekit_room.join("alice")
    error = await failure(livekit_room, "participant", "get", room, "ghost", *flags)
    assert error == f"lkkit: error: not_found: no participant 'ghost' in room {room!r}\n"
    error = await failure(
        livekit_room, "participant", "update", "no-such-room-xyz", "a", "--name", "A", *flags
    )
    assert "not_found" in error
    error = await failure(livekit_room, "participant", "mute", room, "ghost", "TR_nope", *flags)
    assert error == f"lkkit: error: not_found: no participant 'ghost' in room {room!r}\n"
    error = await failure(livekit_room, "room", "delete", f"{room}-missing", *flags)
    assert error == f"lkkit: error: not_found: no room '{room}-missing'\n"

    wrong = "w" * 40
    wrong_flags = [
        *("--url", livekit_room.url),
        *("--api-key", livekit_room.credentials.api_key),
        *("--api-secret", wrong),
    ]
    for argv in (
        ("room", "list"),
        ("participant", "list", room),
        ("send", room, "--text", "x"),
        ("listen", room, "--for", "1"),
    ):
        error = await failure(livekit_room, *argv, *wrong_flags)
        assert "401" in error
        assert wrong not in error
        assert "eyJ" not in error  # no token either

    unreachable = ["--url", "ws://127.0.0.1:1", *flags[2:]]
    error = await failure(livekit_room, "room", "list", *unreachable)
    assert error.startswith("lkkit: error: cannot reach the server API at ws://127.0.0.1:1: ")
    error = await failure(livekit_room, "listen", room, *unreachable)

    env = {k: v for k, v in os.environ.items() if k != "LIVEKIT_URL"}
    done = await lkkit_cli("room", "list", *flags[2:], env=env)
    assert (done.returncode, done.stderr) == (
        2,
        "lkkit: error: no server URL: give --url or set LIVEKIT_URL\n",
    )


async def test_every_command_has_an_example_in_its_help() -> None:
    for command in (
        ("room", "list"),
        ("room", "create"),
        ("room", "delete"),
        ("room", "update"),
        ("participant", "list"),
        ("participant", "get"),
        ("participant", "remove"),
        ("participant", "update"),
        ("participant", "mute"),
        ("send",),
        ("listen",),
        ("token", "decode"),
        ("server",),
        ("demo",),
    ):
        help_text = await ok(*command, "--help")
        assert f"example:\n  lkkit {' '.join(command)}" in help_text, command
