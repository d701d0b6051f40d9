"""`lkkit server`: a local development server (`lkkit.testing`), until interrupted or
until the command given after `--` ends."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading

from ._common import CommandFailed, example, rerun_in_sandbox_if_needed

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `server` command to `commands`."""
    server = commands.add_parser(
        "server",
        help="run a local development server and print its URL and keys",
        description="Run a local livekit-server on 127.0.0.1 (lkkit.testing's "
        "LocalLiveKitServer: fresh API key and secret, free ports) and print "
        "LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET lines for the other "
        "commands. Without a command it runs until Ctrl-C or SIGTERM. With one (after "
        "--) it runs that command with those three variables set, stops the server when "
        "it ends, and exits with its status. The server binary is built on first use "
        "(`python -m lkkit.testing install-server`). Where WebRTC media could leave "
        "127.0.0.0/8 (a machine with other addresses), the server and the command run "
        "inside lkkit's loopback sandbox, a network namespace only they share: there a "
        "command is required, as nothing outside could reach the server.",
        **example(
            "lkkit server\n"
            "# in another shell, with the three lines it printed exported:\n"
            "lkkit room list\n"
            "# a server for one program, in the loopback sandbox where needed:\n"
            "lkkit server -- python my_agent.py"
        ),
    )
    server.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="run this beside the server, with LIVEKIT_URL and the keys in its environment",
    )
    server.set_defaults(handler=_server)


def _server(args: argparse.Namespace) -> int:
    from .._exceptions import LocalServerError
    from ..testing import LocalLiveKitServer

    command: list[str] = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        from ..testing._sandbox import check_loopback_only

        try:
            check_loopback_only()
        except LocalServerError as exc:
            reason = str(exc).split(":", 1)[0]
            raise CommandFailed(
                f"{reason} here, so the server must run in lkkit's loopback sandbox, which "
                "nothing outside it can reach: give the program to run beside it "
                "(`lkkit server -- COMMAND ...`), or set LKKIT_ALLOW_NON_LOOPBACK=1"
            ) from None
    else:
        status = rerun_in_sandbox_if_needed(args)
        if status is not None:
            return status
    try:
        with LocalLiveKitServer() as local:
            variables = {
                "LIVEKIT_URL": local.url,
                "LIVEKIT_API_KEY": local.api_key,
                # The point of this command: a fresh development secret, shown to its owner.
                "LIVEKIT_API_SECRET": local.api_secret,
            }
            print("\n".join(f"{k}={v}" for k, v in variables.items()), flush=True)
            if command:
                return _run_beside(command, variables)
            print("server running; Ctrl-C to stop", file=sys.stderr, flush=True)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    except LocalServerError as exc:
        raise CommandFailed(str(exc)) from None
    return 0


def _run_beside(command: list[str], variables: dict[str, str]) -> int:
    """Run `command` with `variables` in its environment; its exit status. The server
    stops after it. SIGTERM is passed on to it; Ctrl-C reaches it from the terminal."""
    try:
        child = subprocess.Popen(command, env={**os.environ, **variables})
    except OSError as exc:
        raise CommandFailed(f"cannot run {command[0]!r}: {exc.strerror}") from None
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    while True:
        with contextlib.suppress(KeyboardInterrupt):
            return child.wait()
