"""lkkit's command line, for development.

```
lkkit token create --api-key devkey --api-secret secret --join --room test_room \
    --identity test_user --valid-for 24h
lkkit token verify --api-key devkey --api-secret secret JWT
lkkit agent run myagents.echo:entrypoint --agent-name echo
lkkit agent dispatch my-room echo
```

`python -m lkkit.cli ...` runs the same. Errors go to stderr, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import TYPE_CHECKING

from .._exceptions import LkkitError
from . import _agent, _token

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
    _agent.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: `sys.argv[1:]`); the exit status.

    Usage errors exit through argparse (`SystemExit(2)`); lkkit errors print to stderr
    and return 2. Warnings (a short API secret, say) print to stderr once each.
    """
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    error: LkkitError | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = handler(args)
        except LkkitError as exc:
            error = exc
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        print(f"{_PROG}: warning: {message}", file=sys.stderr)
    if error is not None:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    return status
