"""`lkkit listen ROOM`: join as a hidden participant and print what happens.

Each event (lkkit's typed events) and each whole data message is one line: text, or a
JSON object with `--json`. Fields that hold secrets or bulk data (a refreshed token, a
payload inside an event) are the ones dataclasses hide from `repr`, and are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import secrets
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ._common import add_output, add_url, example, to_json, url
from ._token import _add_credentials, _credentials

if TYPE_CHECKING:
    from .._data import DataMessage
    from .._events import Event

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `listen` command to `commands`."""
    listen = commands.add_parser(
        "listen",
        help="print a room's events and data messages until interrupted",
        description="Join a room as a hidden participant that publishes nothing, and "
        "print its events and data messages, one a line, until Ctrl-C (exit status 0), "
        "--for SECONDS, or the end of the session. A line on stderr says when it is "
        "listening.",
        **example(
            "lkkit listen standup\n"
            "lkkit listen standup --json --for 60 | jq 'select(.type == \"message\")'"
        ),
    )
    listen.add_argument("room", metavar="ROOM")
    listen.add_argument(
        "--for", dest="duration", type=float, metavar="SECONDS", help="stop after this long"
    )
    listen.add_argument(
        "--identity", help="the listener's identity (default: lkkit-listen-<random>)"
    )
    listen.add_argument(
        "--verbose", action="store_true", help="also print the SDK's and lkkit's log on stderr"
    )
    add_url(listen)
    _add_credentials(listen)
    add_output(listen)
    listen.set_defaults(handler=_listen)


def event_record(event: Event) -> dict[str, Any]:
    """An event as a JSON object: `type`, `event` (its class) and its shown fields."""
    record: dict[str, Any] = {"type": "event", "event": type(event).__name__}
    for field in dataclasses.fields(event):
        if field.repr:
            record[field.name] = to_json(getattr(event, field.name))
    return record


def message_record(message: DataMessage) -> dict[str, Any]:
    """A data message as a JSON object: `text` when it is UTF-8, else `base64`."""
    record: dict[str, Any] = {
        "type": "message",
        "topic": message.topic,
        "sender": message.sender,
        "reliability": message.reliability.value,
        "size": len(message.payload),
    }
    try:
        record["text"] = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        record["base64"] = base64.b64encode(message.payload).decode("ascii")
    return record


def _line(record: Mapping[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(record, ensure_ascii=False)
    if record["type"] == "message":
        sender = record["sender"] or "(server)"
        body = repr(record["text"]) if "text" in record else f"<{record['size']} bytes>"
        return f"message topic={record['topic']!r} from={sender}: {body}"
    fields = " ".join(f"{k}={v!r}" for k, v in record.items() if k not in ("type", "event"))
    return f"{record['event']} {fields}".rstrip()


def _listen(args: argparse.Namespace) -> int:
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    else:
        # The outcome is the command's own one line; the libraries' logs (the native
        # SDK's warnings about a refused connection, say) are not shown.
        logging.getLogger().addHandler(logging.NullHandler())
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a normal end
        asyncio.run(_run(args))
    return 0


async def _run(args: argparse.Namespace) -> None:
    from .._events import DataReceived, TokenRefreshed
    from .._session import connect
    from .._tokens import Grants, Token

    identity: str = args.identity or f"lkkit-listen-{secrets.token_hex(4)}"
    grants = Grants(
        room_join=True,
        room=args.room,
        hidden=True,
        can_publish=False,
        can_publish_data=False,
    )
    token = Token(identity=identity, grants=grants).sign(_credentials(args))
    server = url(args)

    def emit(record: Mapping[str, Any]) -> None:
        print(_line(record, args.json), flush=True)

    session = connect(server, token)
    async with (
        session,
        session.events() as events,
        session.data.messages() as messages,
        anyio.create_task_group() as tasks,
    ):

        async def read_messages() -> None:
            async for message in messages:
                emit(message_record(message))

        async def read_events() -> None:
            async for event in events:
                # Data shows up as whole messages; a token is never printed.
                if not isinstance(event, (DataReceived, TokenRefreshed)):
                    emit(event_record(event))
            tasks.cancel_scope.cancel()  # the session ended

        async def stop_later(seconds: float) -> None:
            await anyio.sleep(seconds)
            tasks.cancel_scope.cancel()

        tasks.start_soon(read_messages)
        tasks.start_soon(read_events)
        if args.duration is not None:
            tasks.start_soon(stop_later, args.duration)
        print(
            f"listening to {args.room} as {identity} (hidden); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
