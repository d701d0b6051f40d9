"""A small, typed helper over the server API (room service).

```python
async with lkkit.RoomAdmin(url, credentials) as admin:
    await admin.create_room("standup", metadata="daily")
    await admin.update_participant("standup", "alice", metadata="presenter")
    await admin.send_data("standup", b"hello", topic="chat")
```

It takes and returns lkkit values ([`RoomInfo`][lkkit.RoomInfo],
[`ParticipantInfo`][lkkit.ParticipantInfo],
[`ParticipantPermissions`][lkkit.ParticipantPermissions]), never protobuf messages.
Bad input is refused with a typed error before any request is sent; errors of the
server become [`ServerApiError`][lkkit.ServerApiError] (with `status` and `code`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType

import aiohttp
from livekit import api

from ._chunking import MAX_PACKET_BYTES
from ._data._args import check_topic, destinations, payload_bytes
from ._exceptions import (
    ConfigurationError,
    DataTooLarge,
    InvalidDataArgument,
    map_sdk_exceptions,
)
from ._participants import ParticipantPermissions
from ._tokens import Credentials, RoomAgent
from ._types import (
    ParticipantKind,
    track_source_from_sdk,
    track_source_to_sdk,
)

__all__ = ["AgentDispatch", "ParticipantInfo", "RoomAdmin", "RoomInfo"]


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room as the server API describes it."""

    sid: str
    name: str
    metadata: str
    num_participants: int
    num_publishers: int
    max_participants: int
    empty_timeout: int
    """Seconds the server keeps the room open while nobody has joined."""
    departure_timeout: int
    """Seconds the server keeps the room open after the last participant left."""
    creation_time: int
    """Unix time (seconds) when the room was created."""
    recording: bool

    @classmethod
    def _from_api(cls, room: api.Room) -> RoomInfo:
        return cls(
            sid=room.sid,
            name=room.name,
            metadata=room.metadata,
            num_participants=room.num_participants,
            num_publishers=room.num_publishers,
            max_participants=room.max_participants,
            empty_timeout=room.empty_timeout,
            departure_timeout=room.departure_timeout,
            creation_time=room.creation_time,
            recording=room.active_recording,
        )


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """A participant as the server API describes it (a value, not a live view)."""

    sid: str
    identity: str
    name: str
    metadata: str
    attributes: Mapping[str, str]
    kind: ParticipantKind
    permissions: ParticipantPermissions
    joined_at: int
    """Unix time (seconds) when the participant joined."""

    @classmethod
    def _from_api(cls, info: api.ParticipantInfo) -> ParticipantInfo:
        kind_name = api.ParticipantInfo.Kind.Name(info.kind).lower()
        known = {k.value for k in ParticipantKind}
        permission = info.permission
        return cls(
            sid=info.sid,
            identity=info.identity,
            name=info.name,
            metadata=info.metadata,
            attributes=MappingProxyType(dict(info.attributes)),
            kind=ParticipantKind(kind_name) if kind_name in known else ParticipantKind.STANDARD,
            permissions=ParticipantPermissions(
                can_subscribe=permission.can_subscribe,
                can_publish=permission.can_publish,
                can_publish_data=permission.can_publish_data,
                can_publish_sources=tuple(
                    track_source_from_sdk(int(s)) for s in permission.can_publish_sources
                ),
                can_update_metadata=permission.can_update_metadata,
                hidden=permission.hidden,
            ),
            joined_at=info.joined_at,
        )


def _http_url(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    schemes = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigurationError(
            f"server URL must look like http(s)://host or ws(s)://host: {url!r}"
        )
    return parsed._replace(scheme=schemes[parsed.scheme]).geturl()


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _permission_to_api(p: ParticipantPermissions) -> api.ParticipantPermission:
    return api.ParticipantPermission(
        can_subscribe=p.can_subscribe,
        can_publish=p.can_publish,
        can_publish_data=p.can_publish_data,
        can_publish_sources=[int(track_source_to_sdk(s)) for s in p.can_publish_sources],  # type: ignore[misc]
        can_update_metadata=p.can_update_metadata,
        hidden=p.hidden,
    )


@dataclass(frozen=True, slots=True)
class AgentDispatch:
    """An explicit agent dispatch of a room, as the server API describes it."""

    id: str
    agent_name: str
    room: str
    metadata: str

    @classmethod
    def _from_api(cls, dispatch: api.AgentDispatch) -> AgentDispatch:
        return cls(dispatch.id, dispatch.agent_name, dispatch.room, dispatch.metadata)


class RoomAdmin:
    """The server API's room service, typed: `async with RoomAdmin(url, credentials)`.

    Args:
        url: the server's URL (`ws(s)://` or `http(s)://`; the API is HTTP).
        credentials: API key and secret; each request carries a short token with just
            the grants it needs.
        timeout: seconds one request may take.

    Raises:
        ConfigurationError: the URL is not a ws/wss/http/https URL, or timeout <= 0.
    """

    def __init__(self, url: str, credentials: Credentials, *, timeout: float = 10.0) -> None:
        if not timeout > 0:
            raise ConfigurationError(f"timeout must be > 0, got {timeout}")
        self._url = _http_url(url)
        self._credentials = credentials
        self._timeout = timeout
        self._api: api.LiveKitAPI | None = None

    async def __aenter__(self) -> RoomAdmin:
        self._client()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session. Idempotent."""
        if self._api is not None:
            client, self._api = self._api, None
            await client.aclose()

    def _client(self) -> api.LiveKitAPI:
        if self._api is None:
            self._api = api.LiveKitAPI(
                self._url,
                self._credentials.api_key,
                self._credentials.api_secret,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                failover=False,
            )
        return self._api

    # -- rooms ---------------------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        *,
        metadata: str = "",
        empty_timeout: int | None = None,
        departure_timeout: int | None = None,
        max_participants: int | None = None,
        agents: Sequence[RoomAgent] = (),
    ) -> RoomInfo:
        """Create a room (or return the existing one of that name).

        `agents` are dispatched when the room is created (workers registered with
        those agent names get the jobs).

        Raises:
            ConfigurationError: an empty name, a negative limit, or `agents` that are
                not `RoomAgent`s.
            ServerApiError: the server refused.
        """
        if not all(isinstance(agent, RoomAgent) for agent in agents):
            raise ConfigurationError("agents must be RoomAgent values")
        request = api.CreateRoomRequest(
            name=_name(name, "room name"),
            metadata=metadata,
            agents=[agent._to_api() for agent in agents],
        )
        for field, value in (
            ("empty_timeout", empty_timeout),
            ("departure_timeout", departure_timeout),
            ("max_participants", max_participants),
        ):
            if value is not None:
                if value < 0:
                    raise ConfigurationError(f"{field} must be >= 0, got {value}")
                setattr(request, field, value)
        with map_sdk_exceptions():
            return RoomInfo._from_api(await self._client().room.create_room(request))

    async def list_rooms(self, names: Sequence[str] = ()) -> tuple[RoomInfo, ...]:
        """The rooms open on the server (only those in `names` when given)."""
        request = api.ListRoomsRequest(names=[_name(n, "room name") for n in names])
        with map_sdk_exceptions():
            response = await self._client().room.list_rooms(request)
        return tuple(RoomInfo._from_api(r) for r in response.rooms)

    async def delete_room(self, name: str) -> None:
        """Delete a room; everyone in it is disconnected (`DisconnectReason.ROOM_DELETED`)."""
        request = api.DeleteRoomRequest(room=_name(name, "room name"))
        with map_sdk_exceptions():
            await self._client().room.delete_room(request)

    async def update_room_metadata(self, room: str, metadata: str) -> RoomInfo:
        """Set a room's metadata; participants get `RoomMetadataChanged`."""
        request = api.UpdateRoomMetadataRequest(room=_name(room, "room name"), metadata=metadata)
        with map_sdk_exceptions():
            return RoomInfo._from_api(await self._client().room.update_room_metadata(request))

    # -- participants --------------------------------------------------------------------

    async def list_participants(self, room: str) -> tuple[ParticipantInfo, ...]:
        """The participants of a room."""
        request = api.ListParticipantsRequest(room=_name(room, "room name"))
        with map_sdk_exceptions():
            response = await self._client().room.list_participants(request)
        return tuple(ParticipantInfo._from_api(p) for p in response.participants)

    async def update_participant(
        self,
        room: str,
        identity: str,
        *,
        metadata: str | None = None,
        name: str | None = None,
        attributes: Mapping[str, str] | None = None,
        permissions: ParticipantPermissions | None = None,
    ) -> ParticipantInfo:
        """Change a participant's metadata, name, attributes or permissions.

        `None` leaves a field as it is. `attributes` are merged into the existing
        ones; an attribute set to `""` is removed. The server API cannot clear
        metadata or a name: an empty string is refused.

        Raises:
            ConfigurationError: nothing to change, or an empty metadata/name.
            ServerApiError: the server refused (no such participant: `code` "not_found").
        """
        if metadata is None and name is None and attributes is None and permissions is None:
            raise ConfigurationError("update_participant needs something to change")
        if metadata == "" or name == "":
            raise ConfigurationError("the server API ignores an empty metadata or name")
        request = api.UpdateParticipantRequest(
            room=_name(room, "room name"), identity=_name(identity, "identity")
        )
        if metadata is not None:
            request.metadata = metadata
        if name is not None:
            request.name = name
        if attributes is not None:
            request.attributes.update(dict(attributes))
        if permissions is not None:
            request.permission.CopyFrom(_permission_to_api(permissions))
        with map_sdk_exceptions():
            info = await self._client().room.update_participant(request)
        return ParticipantInfo._from_api(info)

    async def remove_participant(self, room: str, identity: str) -> None:
        """Disconnect a participant (`DisconnectReason.PARTICIPANT_REMOVED`)."""
        request = api.RoomParticipantIdentity(
            room=_name(room, "room name"), identity=_name(identity, "identity")
        )
        with map_sdk_exceptions():
            await self._client().room.remove_participant(request)

    async def mute_published_track(
        self, room: str, identity: str, track_sid: str, *, muted: bool = True
    ) -> None:
        """Mute (or unmute) a participant's published track."""
        request = api.MuteRoomTrackRequest(
            room=_name(room, "room name"),
            identity=_name(identity, "identity"),
            track_sid=_name(track_sid, "track sid"),
            muted=muted,
        )
        with map_sdk_exceptions():
            await self._client().room.mute_published_track(request)

    # -- data ----------------------------------------------------------------------------

    async def send_data(
        self,
        room: str,
        payload: bytes | bytearray | memoryview | str,
        *,
        topic: str = "",
        reliable: bool = True,
        to: Iterable[str] | None = None,
    ) -> None:
        """Send one data packet from the server to everyone in the room, or to the
        identities in `to`: the same arguments, checks and errors as
        [`session.data.send`][lkkit.DataChannel.send]. Receivers get a message whose
        `sender` is `None`.

        Raises:
            DataTooLarge: `payload` is over 15 KiB (15,360 bytes), the packet size
                lkkit keeps to (the server sends it as one data-channel message).
            InvalidDataArgument: a wrong payload, topic or `to` type or value (an
                empty `to` is refused: LiveKit would send to everyone).
            ServerApiError: the server refused.
        """
        data = payload_bytes(payload)
        topic = check_topic(topic)
        if not isinstance(reliable, bool):
            raise InvalidDataArgument(f"reliable must be a bool, got {reliable!r}")
        identities = destinations(to)
        if len(data) > MAX_PACKET_BYTES:
            raise DataTooLarge(
                f"server data packets must be at most {MAX_PACKET_BYTES} bytes, got {len(data)}"
            )
        kind = api.DataPacket.Kind.RELIABLE if reliable else api.DataPacket.Kind.LOSSY
        request = api.SendDataRequest(
            room=_name(room, "room name"),
            data=data,
            kind=kind,
            topic=topic,
            destination_identities=list(identities or ()),
        )
        with map_sdk_exceptions():
            await self._client().room.send_data(request)

    # -- agent dispatches ----------------------------------------------------------------

    async def create_dispatch(
        self, room: str, agent_name: str, *, metadata: str = ""
    ) -> AgentDispatch:
        """Dispatch the agent `agent_name` to `room` (a job for a worker registered
        with that name). The room is created when it does not exist yet.

        Raises:
            ConfigurationError: an empty room or agent name.
            ServerApiError: the server refused.
        """
        agent = RoomAgent(agent_name, metadata)
        request = api.CreateAgentDispatchRequest(
            room=_name(room, "room name"), agent_name=agent.agent_name, metadata=metadata
        )
        with map_sdk_exceptions():
            dispatch = await self._client().agent_dispatch.create_dispatch(request)
        return AgentDispatch._from_api(dispatch)

    async def list_dispatches(self, room: str) -> tuple[AgentDispatch, ...]:
        """The explicit agent dispatches of `room`."""
        with map_sdk_exceptions():
            dispatches = await self._client().agent_dispatch.list_dispatch(_name(room, "room name"))
        return tuple(AgentDispatch._from_api(d) for d in dispatches)

    async def delete_dispatch(self, room: str, dispatch_id: str) -> None:
        """Delete an explicit dispatch (its running job is terminated).

        Raises:
            ConfigurationError: an empty room or dispatch id.
            ServerApiError: the server refused (no such dispatch, say).
        """
        with map_sdk_exceptions():
            await self._client().agent_dispatch.delete_dispatch(
                _name(dispatch_id, "dispatch id"), _name(room, "room name")
            )
