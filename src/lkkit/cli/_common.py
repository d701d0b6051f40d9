"""What the server commands share: the server URL, a `RoomAdmin` run, errors, output.

A command fails (exit status 1, one line on stderr) when the server refuses, cannot
be reached, or has no such room or participant; bad input is a usage error (status 2).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._exceptions import ConfigurationError

if TYPE_CHECKING:
    from .._admin import RoomAdmin

__all__ = [
    "CommandFailed",
    "add_output",
    "add_url",
    "example",
    "print_value",
    "run_admin",
    "to_json",
    "url",
]

_T = TypeVar("_T")


class CommandFailed(Exception):
    """A command could not do its work (the server cannot be reached, say): exit 1."""


def example(text: str) -> dict[str, Any]:
    """`add_parser` keywords for a help that ends with `text` as its example(s)."""
    return {
        "epilog": "example:\n" + "\n".join(f"  {line}" for line in text.strip().splitlines()),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", metavar="URL", help="the server, ws:// or http:// (default: LIVEKIT_URL)"
    )


def url(args: argparse.Namespace) -> str:
    value: str | None = args.url or os.environ.get("LIVEKIT_URL")
    if not value:
        raise ConfigurationError("no server URL: give --url or set LIVEKIT_URL")
    return value


def add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def run_admin(args: argparse.Namespace, call: Callable[[RoomAdmin], Awaitable[_T]]) -> _T:
    """`call(admin)` with a `RoomAdmin` for `--url` and the credentials flags."""
    # Imported here: `lkkit agent run` must not load aiohttp (the server API's).
    from .._admin import RoomAdmin
    from ._token import _credentials

    server = url(args)
    credentials = _credentials(args)

    async def run() -> _T:
        async with RoomAdmin(server, credentials) as admin:
            return await call(admin)

    return asyncio.run(run())


def rerun_in_sandbox_if_needed(args: argparse.Namespace) -> int | None:
    """Where WebRTC media could leave 127.0.0.0/8, rerun this command line inside
    lkkit's loopback sandbox and return its exit status; `None` where it can run here.

    Raises:
        CommandFailed: it is needed and this already is the sandbox, or the sandbox
            cannot be made (no `unshare`, no user namespaces).
    """
    import subprocess
    import sys

    from .._exceptions import LocalServerError
    from ..testing._sandbox import check_loopback_only, inside_sandbox, run_in_sandbox

    try:
        check_loopback_only()
    except LocalServerError as exc:
        if inside_sandbox():
            raise CommandFailed(str(exc)) from None
        reason = str(exc).split(":", 1)[0]
        print(
            f"lkkit: {reason}; running inside lkkit's loopback sandbox", file=sys.stderr, flush=True
        )
        try:
            return run_in_sandbox([sys.executable, "-m", "lkkit", *args.argv])
        except (LocalServerError, OSError, subprocess.SubprocessError) as error:
            raise CommandFailed(f"cannot make the loopback sandbox: {error}") from None
    return None


def to_json(value: object) -> Any:
    """`value` (lkkit's dataclasses, enums, mappings) as plain JSON values; live
    participants by identity, publications by sid."""
    from .._participants import Participant, TrackPublication

    if isinstance(value, Participant):
        return value.identity
    if isinstance(value, TrackPublication):
        return value.sid
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def print_value(args: argparse.Namespace, value: object, text: str) -> None:
    """Print `value` as one JSON line with `--json`, else `text`."""
    if args.json:
        print(json.dumps(to_json(value), ensure_ascii=False), flush=True)
    else:
        print(text, flush=True)
