"""`lkkit room list|create|delete|update` and `lkkit participant
list|get|remove|update|mute`: the server API ([`RoomAdmin`][lkkit.RoomAdmin]) on the
command line."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from .._exceptions import ConfigurationError
from ._common import add_output, add_url, example, print_value, run_admin
from ._token import _add_credentials, _attribute

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._admin import ParticipantInfo, RoomAdmin, RoomInfo
    from .._participants import ParticipantPermissions

__all__ = ["register"]

# Flag -> the `ParticipantPermissions` field it sets (`--no-FLAG` clears it).
_PERMISSION_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--can-subscribe", "can_subscribe", "subscribe to tracks"),
    ("--can-publish", "can_publish", "publish tracks"),
    ("--can-publish-data", "can_publish_data", "publish data"),
    ("--can-update-metadata", "can_update_metadata", "update own metadata, name, attributes"),
    ("--hidden", "hidden", "be hidden from other participants"),
)


def _server_options(parser: argparse.ArgumentParser) -> None:
    add_url(parser)
    _add_credentials(parser)
    add_output(parser)


def _room_text(room: RoomInfo) -> str:
    return (
        f"{room.name}\t{room.sid}\tparticipants={room.num_participants}"
        f"\tmax={room.max_participants}\tmetadata={room.metadata!r}"
    )


def _participant_text(p: ParticipantInfo) -> str:
    return (
        f"{p.identity}\t{p.sid}\tname={p.name!r}\tkind={p.kind.value}"
        f"\tmetadata={p.metadata!r}\tattributes={dict(p.attributes)!r}"
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `room` and `participant` commands to `commands`."""
    _register_room(commands)
    _register_participant(commands)


def _register_room(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    room = commands.add_parser("room", help="list, create, delete or update rooms")
    actions = room.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="list the open rooms",
        description="List the rooms open on the server, one a line.",
        **example("lkkit room list --url ws://localhost:7880 --json"),
    )
    listing.add_argument("names", nargs="*", metavar="NAME", help="only these rooms")
    _server_options(listing)
    listing.set_defaults(handler=_room_list)

    create = actions.add_parser(
        "create",
        help="create a room",
        description="Create a room (or show the existing one of that name).",
        **example(
            "lkkit room create standup --empty-timeout 300 --max-participants 10 \\\n"
            "    --metadata daily --agent echo"
        ),
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument("--metadata", default="", help="the room's metadata")
    create.add_argument(
        "--empty-timeout", type=int, metavar="SECONDS", help="close when nobody joined"
    )
    create.add_argument(
        "--departure-timeout", type=int, metavar="SECONDS", help="close after the last left"
    )
    create.add_argument("--max-participants", type=int, metavar="N")
    create.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="AGENT_NAME",
        help="dispatch this agent when the room is created (repeat for more)",
    )
    _server_options(create)
    create.set_defaults(handler=_room_create)

    delete = actions.add_parser(
        "delete",
        help="delete a room (everyone in it is disconnected)",
        description="Delete a room; everyone in it is disconnected.",
        **example("lkkit room delete standup"),
    )
    delete.add_argument("name", metavar="NAME")
    _server_options(delete)
    delete.set_defaults(handler=_room_delete)

    update = actions.add_parser(
        "update",
        help="set a room's metadata",
        description="Set a room's metadata; participants get RoomMetadataChanged.",
        **example('lkkit room update standup --metadata \'{"topic": "retro"}\''),
    )
    update.add_argument("name", metavar="NAME")
    update.add_argument("--metadata", required=True, help="the new metadata")
    _server_options(update)
    update.set_defaults(handler=_room_update)


def _register_participant(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    participant = commands.add_parser(
        "participant", help="list, get, remove, update or mute participants"
    )
    actions = participant.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="list a room's participants",
        description="List the participants of a room, one a line.",
        **example("lkkit participant list standup --json"),
    )
    listing.add_argument("room", metavar="ROOM")
    _server_options(listing)
    listing.set_defaults(handler=_participant_list)

    get = actions.add_parser(
        "get",
        help="show one participant",
        description="Show one participant of a room (exit status 1 if not there).",
        **example("lkkit participant get standup alice --json"),
    )
    get.add_argument("room", metavar="ROOM")
    get.add_argument("identity", metavar="IDENTITY")
    _server_options(get)
    get.set_defaults(handler=_participant_get)

    remove = actions.add_parser(
        "remove",
        help="disconnect a participant",
        description="Disconnect a participant from a room (reason: PARTICIPANT_REMOVED).",
        **example("lkkit participant remove standup alice"),
    )
    remove.add_argument("room", metavar="ROOM")
    remove.add_argument("identity", metavar="IDENTITY")
    _server_options(remove)
    remove.set_defaults(handler=_participant_remove)

    update = actions.add_parser(
        "update",
        help="change a participant's metadata, name, attributes or permissions",
        description="Change a participant's metadata, name, attributes or permissions. "
        "Attributes are merged into the existing ones (KEY= removes one); permissions "
        "not given stay as they are.",
        **example(
            "lkkit participant update standup alice --metadata presenter \\\n"
            "    --name Alice --attribute role=host --no-can-publish"
        ),
    )
    update.add_argument("room", metavar="ROOM")
    update.add_argument("identity", metavar="IDENTITY")
    update.add_argument("--metadata", help="the new metadata")
    update.add_argument("--name", help="the new display name")
    update.add_argument(
        "--attribute",
        type=_attribute,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set an attribute; KEY= removes it (repeat for more)",
    )
    permissions = update.add_argument_group("permissions (--no-... to forbid)")
    for flag, field, text in _PERMISSION_FLAGS:
        permissions.add_argument(flag, dest=field, action=argparse.BooleanOptionalAction, help=text)
    permissions.add_argument(
        "--sources",
        metavar="SOURCE,...",
        help="publish only these: camera, microphone, screen_share, screen_share_audio",
    )
    _server_options(update)
    update.set_defaults(handler=_participant_update)

    mute = actions.add_parser(
        "mute",
        help="mute (or unmute) a participant's published track",
        description="Mute a participant's published track; with --unmute, unmute it.",
        **example(
            "lkkit participant mute standup alice TR_AMkSdXv3HJxU\n"
            "lkkit participant mute standup alice TR_AMkSdXv3HJxU --unmute"
        ),
    )
    mute.add_argument("room", metavar="ROOM")
    mute.add_argument("identity", metavar="IDENTITY")
    mute.add_argument("track_sid", metavar="TRACK_SID")
    mute.add_argument("--unmute", action="store_true", help="unmute instead")
    _server_options(mute)
    mute.set_defaults(handler=_participant_mute)


# -- rooms -------------------------------------------------------------------------------


def _room_list(args: argparse.Namespace) -> int:
    names: Sequence[str] = args.names
    rooms = run_admin(args, lambda admin: admin.list_rooms(names))
    for room in rooms:
        print_value(args, room, _room_text(room))
    return 0


def _room_create(args: argparse.Namespace) -> int:
    from .._tokens import RoomAgent

    agents = [RoomAgent(name) for name in args.agent]
    room = run_admin(
        args,
        lambda admin: admin.create_room(
            args.name,
            metadata=args.metadata,
            empty_timeout=args.empty_timeout,
            departure_timeout=args.departure_timeout,
            max_participants=args.max_participants,
            agents=agents,
        ),
    )
    print_value(args, room, _room_text(room))
    return 0


def _room_delete(args: argparse.Namespace) -> int:
    run_admin(args, lambda admin: admin.delete_room(args.name))
    print_value(args, {"deleted": args.name}, f"deleted room {args.name}")
    return 0


def _room_update(args: argparse.Namespace) -> int:
    room = run_admin(args, lambda admin: admin.update_room_metadata(args.name, args.metadata))
    print_value(args, room, _room_text(room))
    return 0


# -- participants ------------------------------------------------------------------------


def _participant_list(args: argparse.Namespace) -> int:
    participants = run_admin(args, lambda admin: admin.list_participants(args.room))
    for participant in participants:
        print_value(args, participant, _participant_text(participant))
    return 0


def _participant_get(args: argparse.Namespace) -> int:
    participant = run_admin(args, lambda admin: admin.get_participant(args.room, args.identity))
    tracks = "".join(
        f"\n  track {t.sid}\t{t.kind.value}\t{t.source.value}\tname={t.name!r}\tmuted={t.muted}"
        for t in participant.tracks
    )
    print_value(args, participant, _participant_text(participant) + tracks)
    return 0


def _participant_remove(args: argparse.Namespace) -> int:
    run_admin(args, lambda admin: admin.remove_participant(args.room, args.identity))
    print_value(
        args,
        {"removed": args.identity, "room": args.room},
        f"removed {args.identity} from {args.room}",
    )
    return 0


def _permissions(
    args: argparse.Namespace, current: ParticipantPermissions
) -> ParticipantPermissions:
    from .._types import TrackSource

    changes: dict[str, object] = {
        field: getattr(args, field)
        for _, field, _ in _PERMISSION_FLAGS
        if getattr(args, field) is not None
    }
    if args.sources is not None:
        names = [s.strip() for s in args.sources.split(",") if s.strip()]
        try:
            changes["can_publish_sources"] = tuple(TrackSource(n) for n in names)
        except ValueError:
            raise ConfigurationError(
                f"invalid --sources {args.sources!r}: use camera, microphone, "
                "screen_share or screen_share_audio"
            ) from None
    return dataclasses.replace(current, **changes)  # type: ignore[arg-type]


def _participant_update(args: argparse.Namespace) -> int:
    pairs: Sequence[tuple[str, str]] = args.attribute
    attributes = dict(pairs) if pairs else None
    change_permissions = args.sources is not None or any(
        getattr(args, field) is not None for _, field, _ in _PERMISSION_FLAGS
    )
    if args.metadata is None and args.name is None and not pairs and not change_permissions:
        raise ConfigurationError(
            "nothing to change: give --metadata, --name, --attribute or a permission"
        )

    async def update(admin: RoomAdmin) -> ParticipantInfo:
        permissions = None
        if change_permissions:
            current = await admin.get_participant(args.room, args.identity)
            permissions = _permissions(args, current.permissions)
        return await admin.update_participant(
            args.room,
            args.identity,
            metadata=args.metadata,
            name=args.name,
            attributes=attributes,
            permissions=permissions,
        )

    participant = run_admin(args, update)
    print_value(args, participant, _participant_text(participant))
    return 0


def _participant_mute(args: argparse.Namespace) -> int:
    muted = not args.unmute

    run_admin(
        args,
        lambda admin: admin.mute_published_track(
            args.room, args.identity, args.track_sid, muted=muted
        ),
    )
    word = "muted" if muted else "unmuted"
    print_value(
        args,
        {word: args.track_sid, "identity": args.identity, "room": args.room},
        f"{word} {args.track_sid} of {args.identity} in {args.room}",
    )
    return 0
