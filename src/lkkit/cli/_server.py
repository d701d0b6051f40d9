"""`lkkit server`: a local development server (`lkkit.testing`), until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from ._common import CommandFailed, example

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `server` command to `commands`."""
    server = commands.add_parser(
        "server",
        help="run a local development server and print its URL and keys",
        description="Run a local livekit-server on 127.0.0.1 (lkkit.testing's "
        "LocalLiveKitServer: fresh API key and secret, free ports) until Ctrl-C or "
        "SIGTERM, and print LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET lines "
        "for the other commands. The server binary is built on first use "
        "(`python -m lkkit.testing install-server`). It refuses to start where media "
        "could leave 127.0.0.0/8; run it and its clients inside "
        "`python -m lkkit.testing sandbox -- ...` there.",
        **example(
            "lkkit server\n"
            "# in another shell, with the three lines it printed exported:\n"
            "lkkit room list"
        ),
    )
    server.set_defaults(handler=_server)


def _server(args: argparse.Namespace) -> int:
    from .._exceptions import LocalServerError
    from ..testing import LocalLiveKitServer

    try:
        with LocalLiveKitServer() as local:
            # The point of this command: a fresh development secret, shown to its owner.
            print(
                f"LIVEKIT_URL={local.url}\n"
                f"LIVEKIT_API_KEY={local.api_key}\n"
                f"LIVEKIT_API_SECRET={local.api_secret}",
                flush=True,
            )
            print("server running; Ctrl-C to stop", file=sys.stderr, flush=True)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    except LocalServerError as exc:
        raise CommandFailed(str(exc)) from None
    return 0
