"""`lkkit send ROOM`: a data message from the server, to everyone or to some."""

from __future__ import annotations

import argparse
import sys

from .._exceptions import ConfigurationError
from ._common import add_output, add_url, example, print_value, run_admin
from ._token import _add_credentials

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `send` command to `commands`."""
    send = commands.add_parser(
        "send",
        help="send a data message to a room from the server",
        description="Send one data message to a room from the server (receivers see no "
        "sender), from --text, --file or stdin (-). At most 15,360 bytes: one packet.",
        **example(
            "lkkit send standup --text hello --topic chat\n"
            "lkkit send standup --file state.json --topic state --to alice --to bob\n"
            "echo ping | lkkit send standup -"
        ),
    )
    send.add_argument("room", metavar="ROOM")
    source = send.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="send this text (UTF-8)")
    source.add_argument("--file", metavar="PATH", help="send this file's bytes")
    source.add_argument(
        "stdin", nargs="?", choices=["-"], metavar="-", help="send the bytes read from stdin"
    )
    send.add_argument("--topic", default="", help="the message's topic")
    send.add_argument(
        "--to",
        action="append",
        metavar="IDENTITY",
        help="send only to this participant (repeat for more; default: everyone)",
    )
    send.add_argument("--lossy", action="store_true", help="send unreliably (lossy)")
    add_url(send)
    _add_credentials(send)
    add_output(send)
    send.set_defaults(handler=_send)


def _payload(args: argparse.Namespace) -> bytes:
    if args.text is not None:
        text: str = args.text
        return text.encode()
    if args.file is not None:
        try:
            with open(args.file, "rb") as file:
                return file.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {args.file!r}: {exc.strerror}") from None
    return sys.stdin.buffer.read()


def _send(args: argparse.Namespace) -> int:
    payload = _payload(args)
    run_admin(
        args,
        lambda admin: admin.send_data(
            args.room, payload, topic=args.topic, reliable=not args.lossy, to=args.to
        ),
    )
    to = ", ".join(args.to) if args.to else "everyone"
    print_value(
        args,
        {"room": args.room, "topic": args.topic, "bytes": len(payload), "to": args.to},
        f"sent {len(payload)} bytes to {to} in {args.room}",
    )
    return 0
