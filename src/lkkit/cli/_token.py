"""`lkkit token create`, `lkkit token verify` and `lkkit token decode`."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import TYPE_CHECKING

from .._credentials import Credentials
from .._exceptions import InvalidCredentials, InvalidGrant, TokenMalformed
from ._common import example

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["parse_duration", "register"]

_DURATION = re.compile(r"(?:\d+[smhd])+")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}

# Flag -> the `Grants` field it sets, and to what.
_GRANT_FLAGS: tuple[tuple[str, str, bool, str], ...] = (
    ("--join", "room_join", True, "join the room given by --room"),
    ("--admin", "room_admin", True, "moderate the room given by --room"),
    ("--create", "room_create", True, "create and delete rooms"),
    ("--list", "room_list", True, "list rooms"),
    ("--record", "room_record", True, "use the Egress service (record)"),
    ("--ingress-admin", "ingress_admin", True, "use the Ingress service"),
    ("--update-own-metadata", "can_update_own_metadata", True, "update own metadata"),
    ("--hidden", "hidden", True, "be hidden from other participants"),
    ("--agent", "agent", True, "register as an agent worker"),
    ("--no-publish", "can_publish", False, "forbid publishing tracks"),
    ("--no-publish-data", "can_publish_data", False, "forbid publishing data"),
    ("--no-subscribe", "can_subscribe", False, "forbid subscribing"),
)


def parse_duration(text: str) -> timedelta:
    """`30s`, `10m`, `24h`, `7d`, or a sum such as `1h30m`, as a `timedelta`."""
    if not _DURATION.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number and a unit (s, m, h, d), "
            "such as 30s, 10m, 24h, 7d or 1h30m"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def _attribute(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid attribute {text!r}: use KEY=VALUE")
    return key, value


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "credentials",
        "give a key and a secret (the secret as --api-secret-file PATH keeps it out of "
        "the process list and shell history), or neither to read LIVEKIT_API_KEY and "
        "LIVEKIT_API_SECRET",
    )
    group.add_argument("--api-key", metavar="KEY")
    secret = group.add_mutually_exclusive_group()
    secret.add_argument("--api-secret", metavar="SECRET")
    secret.add_argument("--api-secret-file", metavar="PATH", help="read the secret from this file")


def _credentials(args: argparse.Namespace) -> Credentials:
    key: str | None = args.api_key
    secret: str | None = args.api_secret
    path: str | None = getattr(args, "api_secret_file", None)
    if path is not None:
        try:
            with open(path, encoding="utf-8") as file:
                secret = file.read().strip()
        except OSError as exc:
            raise InvalidCredentials(
                f"cannot read the API secret file {path!r}: {exc.strerror}"
            ) from None
    if key is None and secret is None:
        return Credentials.from_env()
    if key is None or secret is None:
        raise InvalidCredentials("give both an API key and a secret, or neither")
    return Credentials(api_key=key, api_secret=secret)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `token` command and its `create`, `verify` and `decode` actions."""
    token = commands.add_parser("token", help="create, verify or decode access tokens")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="sign an access token and print the JWT",
        description="Sign an access token and print the JWT on stdout.",
    )
    _add_credentials(create)
    who = create.add_argument_group("participant")
    who.add_argument("--identity", default="", help="the participant identity")
    who.add_argument("--name", help="the display name")
    who.add_argument("--metadata", help="participant metadata")
    who.add_argument(
        "--attribute",
        type=_attribute,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a participant attribute (repeat for more)",
    )
    who.add_argument("--kind", help="participant kind: standard, ingress, egress, sip or agent")
    grants = create.add_argument_group("grants")
    grants.add_argument("--room", help="the room name (needed by --join and --admin)")
    for flag, field, value, text in _GRANT_FLAGS:
        grants.add_argument(flag, dest=field, action="store_const", const=value, help=text)
    grants.add_argument(
        "--sources",
        metavar="SOURCE,...",
        help="publish only these: camera, microphone, screen_share, screen_share_audio",
    )
    create.add_argument(
        "--valid-for",
        type=parse_duration,
        metavar="DURATION",
        help="time to live, e.g. 30s, 10m, 24h, 7d (default: 10m)",
    )
    create.set_defaults(handler=_create)

    verify = actions.add_parser(
        "verify",
        help="verify a JWT and print its claims as JSON",
        description="Verify a JWT's signature and lifetime; print its claims as JSON.",
    )
    _add_credentials(verify)
    verify.add_argument("jwt", metavar="JWT", help="the token to verify")
    verify.set_defaults(handler=_verify)

    decode = actions.add_parser(
        "decode",
        help="print a JWT's claims as JSON, WITHOUT verifying its signature",
        description="Print a JWT's claims as JSON. The signature and the lifetime are "
        "NOT verified, so anyone could have written these claims: use `lkkit token "
        "verify` to check them with the API secret. The token itself is not printed.",
        **example("lkkit token decode eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."),
    )
    decode.add_argument("jwt", metavar="JWT", help="the token to decode")
    decode.set_defaults(handler=_decode)


def _create(args: argparse.Namespace) -> int:
    from .._tokens import DEFAULT_TTL, Grants, Token  # pydantic: only for this command

    credentials = _credentials(args)
    # Strings from the command line are untyped input: validate them as such.
    grant_values: dict[str, object] = {
        field: getattr(args, field)
        for _, field, _, _ in _GRANT_FLAGS
        if getattr(args, field) is not None
    }
    if args.room is not None:
        grant_values["room"] = args.room
    if args.sources is not None:
        grant_values["can_publish_sources"] = [s.strip() for s in args.sources.split(",")]
    if args.kind is not None:
        grant_values["kind"] = args.kind
    pairs: Sequence[tuple[str, str]] = args.attribute
    attributes = dict(pairs)
    if len(attributes) < len(pairs):
        raise InvalidGrant("an --attribute key is given twice")
    token = Token(
        identity=args.identity,
        name=args.name,
        metadata=args.metadata,
        attributes=attributes,
        grants=Grants.model_validate(grant_values),
        ttl=DEFAULT_TTL if args.valid_for is None else args.valid_for,
    )
    print(token.sign(credentials))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .._tokens import Token

    token = Token.verify(args.jwt, _credentials(args))
    print(token.model_dump_json(indent=2))
    return 0


def _decode(args: argparse.Namespace) -> int:
    import json

    import jwt

    try:
        claims = jwt.decode(args.jwt, options={"verify_signature": False})
    except jwt.PyJWTError:
        # PyJWT's message may quote the token: give none of it back.
        raise TokenMalformed("not a JWT (three base64url parts, JSON claims)") from None
    print(json.dumps(claims, indent=2, sort_keys=True, ensure_ascii=False))
    return 0
