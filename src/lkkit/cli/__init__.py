"""lkkit's command line, for development.

```
lkkit token create --api-key devkey --api-secret secret --join --room test_room \
    --identity test_user --valid-for 24h
lkkit token verify --api-key devkey --api-secret secret JWT
lkkit agent run myagents.echo:entrypoint --agent-name echo
lkkit agent dispatch my-room echo
lkkit room list --url ws://localhost:7880
lkkit participant remove my-room alice
lkkit send my-room --text hello --topic chat
lkkit listen my-room --json
lkkit server -- python my_agent.py
lkkit demo
```

`python -m lkkit.cli ...` runs the same. Errors go to stderr as one line: a usage
error or bad input exits with status 2, a failure of the server (refused, not found,
unreachable) with status 1.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import TYPE_CHECKING

from .._exceptions import (
    ConnectError,
    LkkitError,
    NotConnected,
    ServerApiError,
    StreamError,
)
from . import _agent, _data, _demo, _listen, _room, _server, _token
from ._common import CommandFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main"]

_PROG = "lkkit"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="lkkit's development tools for LiveKit."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _token.register(commands)
    _room.register(commands)
    _data.register(commands)
    _listen.register(commands)
    _server.register(commands)
    _agent.register(commands)
    _demo.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: `sys.argv[1:]`); the exit status.

    Usage errors exit through argparse (`SystemExit(2)`); other lkkit errors (bad
    input) print to stderr and return 2; failures of the server (it refused, has no such
    room, cannot be reached) print to stderr and return 1. Warnings (a short API
    secret, say) print to stderr once each.
    """
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    error: Exception | None = None
    status = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = handler(args)
        except (LkkitError, CommandFailed) as exc:
            error = exc
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        print(f"{_PROG}: warning: {message}", file=sys.stderr)
    if error is not None:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 1 if isinstance(error, _FAILURES) else 2
    return status


# Failures of the server or the network (exit 1); other lkkit errors are bad input (2).
_FAILURES = (CommandFailed, ServerApiError, ConnectError, NotConnected, StreamError)
