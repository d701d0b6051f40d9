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
        description="Send one data message to a room from the server, from --text, "
        "--file or stdin (-). Up to 15,360 bytes it is one packet of the server API "
        "(receivers see no sender); a larger one is a LiveKit native stream (text for "
        "--text, bytes otherwise) sent by a hidden participant lkkit-server-*, with a "
        "progress bar on stderr. Lossy messages must fit one packet.",
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
    send.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar for a stream (default: when stderr is a terminal)",
    )
    add_url(send)
    _add_credentials(send)
    add_output(send)
    send.set_defaults(handler=_send)


def _payload(args: argparse.Namespace) -> bytes | str:
    if args.text is not None:
        text: str = args.text
        return text
    if args.file is not None:
        try:
            with open(args.file, "rb") as file:
                return file.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {args.file!r}: {exc.strerror}") from None
    return sys.stdin.buffer.read()


class _ProgressBar:
    """`[#####-----]  50%  512.0 / 1024.0 KiB` on stderr, redrawn in place."""

    _WIDTH = 30

    def __init__(self) -> None:
        self.drawn = False

    def __call__(self, sent: int, total: int) -> None:
        filled = self._WIDTH * sent // total if total else self._WIDTH
        bar = "#" * filled + "-" * (self._WIDTH - filled)
        percent = 100 * sent // total if total else 100
        line = f"\r[{bar}] {percent:3d}%  {sent / 1024:,.1f} / {total / 1024:,.1f} KiB"
        sys.stderr.write(line)
        sys.stderr.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _send(args: argparse.Namespace) -> int:
    payload = _payload(args)
    size = len(payload.encode()) if isinstance(payload, str) else len(payload)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    progress = _ProgressBar() if show else None
    try:
        sender = run_admin(
            args,
            lambda admin: admin.send_data(
                args.room,
                payload,
                topic=args.topic,
                reliable=not args.lossy,
                to=args.to,
                on_progress=progress,
            ),
        )
    finally:
        if progress is not None:
            progress.end()
    to = ", ".join(args.to) if args.to else "everyone"
    how = f" as a stream from {sender}" if sender else ""
    print_value(
        args,
        {"room": args.room, "topic": args.topic, "bytes": size, "to": args.to, "sender": sender},
        f"sent {size} bytes to {to} in {args.room}{how}",
    )
    return 0
