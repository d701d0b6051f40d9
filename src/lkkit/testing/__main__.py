"""`python -m lkkit.testing`: install the server, run a command in the loopback sandbox,
or serve a local server until interrupted.

```
python -m lkkit.testing install-server      # build livekit-server into the cache
python -m lkkit.testing install-browser     # Chromium (apt-get) and livekit-client (npm)
python -m lkkit.testing install-redis       # redis-server (apt-get), for LocalLiveKitCluster
python -m lkkit.testing sandbox -- CMD ...  # run CMD with a loopback-only network
python -m lkkit.testing serve               # run a local server, print url/key/secret
```
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence

from .._exceptions import LocalServerError
from ._binary import LIVEKIT_SERVER_VERSION, ensure_server_binary
from ._browser_install import LIVEKIT_CLIENT_VERSION, BrowserNotFound, ensure_browser
from ._redis_install import ensure_redis_server
from ._sandbox import run_in_sandbox, sandbox_inside_main
from ._server import LocalLiveKitServer


def _command(rest: Sequence[str]) -> list[str]:
    command = list(rest)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise SystemExit("error: give the command to run after `--`")
    return command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lkkit.testing", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install-server", help=f"build livekit-server {LIVEKIT_SERVER_VERSION}")
    commands.add_parser(
        "install-browser",
        help=f"install Chromium (apt-get) and livekit-client {LIVEKIT_CLIENT_VERSION} (npm ci)",
    )
    commands.add_parser(
        "install-redis", help="install redis-server (apt-get), for LocalLiveKitCluster"
    )
    sandbox = commands.add_parser("sandbox", help="run a command in the loopback sandbox")
    sandbox.add_argument("rest", nargs=argparse.REMAINDER)
    inside = commands.add_parser("_sandbox-inside")
    inside.add_argument("rest", nargs=argparse.REMAINDER)
    commands.add_parser("serve", help="run a local server until Ctrl-C")
    args = parser.parse_args(argv)

    try:
        if args.command == "install-server":
            print(ensure_server_binary())
            return 0
        if args.command == "install-browser":
            installed = ensure_browser()
            print(f"{installed.chromium}\n{installed.livekit_client}")
            return 0
        if args.command == "install-redis":
            print(ensure_redis_server())
            return 0
        if args.command == "sandbox":
            return run_in_sandbox(_command(args.rest))
        if args.command == "_sandbox-inside":
            return sandbox_inside_main(_command(args.rest))
        with LocalLiveKitServer() as server:
            print(f"url={server.url}\napi_key={server.api_key}\napi_secret={server.api_secret}")
            sys.stdout.flush()
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        return 0
    except (LocalServerError, BrowserNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
