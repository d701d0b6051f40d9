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
Bad input is refused with a typed error before any request is sent. Errors of the
server become [`ServerApiError`][lkkit.ServerApiError] (with `status` and `code`), or
its subclasses [`ServerApiNotFound`][lkkit.ServerApiNotFound] (no such room,
participant, track or dispatch) and [`ServerApiNotAllowed`][lkkit.ServerApiNotAllowed]
(wrong key or secret); a server that does not answer is
[`ServerUnreachable`][lkkit.ServerUnreachable], as for a session.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import anyio
from livekit import api

from ._chunking import MAX_PACKET_BYTES
from ._data._args import check_topic, destinations, payload_bytes
from ._exceptions import (
    ConfigurationError,
    DataTooLarge,
    InvalidDataArgument,
    ServerApiError,
    ServerApiNotFound,
    ServerUnreachable,
    map_sdk_exceptions,
)
from ._participants import ParticipantPermissions
from ._tokens import Credentials, Grants, RoomAgent, Token
from ._types import (
    ParticipantKind,
    TrackKind,
    TrackSource,
    track_source_from_sdk,
    track_source_to_sdk,
)

if TYPE_CHECKING:
    from ._data import DataStreamWriter
    from ._session import Session

__all__ = ["AgentDispatch", "ParticipantInfo", "PublishedTrackInfo", "RoomAdmin", "RoomInfo"]

# The bytes one write of a large server message carries (and one progress step).
_STREAM_WRITE_BYTES = 64 * 1024


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


_E = TypeVar("_E", bound=enum.Enum)


def _enum_named(cls: type[_E], name: str, default: _E) -> _E:
    """The member of `cls` whose value is the protobuf enum `name` in lower case."""
    try:
        return cls(name.lower())
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class PublishedTrackInfo:
    """A track a participant publishes, as the server API describes it."""

    sid: str
    name: str
    kind: TrackKind
    source: TrackSource
    muted: bool

    @classmethod
    def _from_api(cls, track: api.TrackInfo) -> PublishedTrackInfo:
        return cls(
            sid=track.sid,
            name=track.name,
            kind=_enum_named(TrackKind, api.TrackType.Name(track.type), TrackKind.UNKNOWN),
            source=track_source_from_sdk(int(track.source)),
            muted=track.muted,
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
    tracks: tuple[PublishedTrackInfo, ...] = ()
    """The tracks the participant publishes."""

    @classmethod
    def _from_api(cls, info: api.ParticipantInfo) -> ParticipantInfo:
        permission = info.permission
        return cls(
            sid=info.sid,
            identity=info.identity,
            name=info.name,
            metadata=info.metadata,
            attributes=MappingProxyType(dict(info.attributes)),
            kind=_enum_named(
                ParticipantKind, api.ParticipantInfo.Kind.Name(info.kind), ParticipantKind.STANDARD
            ),
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
            tracks=tuple(PublishedTrackInfo._from_api(t) for t in info.tracks),
        )


def _http_url(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    schemes = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigurationError(
            f"server URL must look like http(s)://host or ws(s)://host: {url!r}"
        )
    return parsed._replace(scheme=schemes[parsed.scheme]).geturl()


def _ws_url(http_url: str) -> str:
    parsed = urllib.parse.urlparse(http_url)
    return parsed._replace(scheme="wss" if parsed.scheme == "https" else "ws").geturl()


def _participant_request(room: str, identity: str) -> tuple[api.RoomParticipantIdentity, str]:
    """The request naming a participant, and what to say when it is not there."""
    request = api.RoomParticipantIdentity(
        room=_name(room, "room name"), identity=_name(identity, "identity")
    )
    return request, f"no participant {identity!r} in room {room!r}"


def _not_found(what: str) -> ServerApiNotFound:
    return ServerApiNotFound(f"not_found: {what}", status=404, code="not_found")


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

    Every call may also raise `ServerApiNotAllowed` (a wrong key or secret),
    `ServerUnreachable` (nothing answers at the URL within `timeout`) and
    `ServerApiError` (any other refusal of the server).

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
        self._given_url = url
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

    @contextmanager
    def _answering(self, missing: str = "") -> Iterator[None]:
        """Map the SDK's errors, and a server that does not answer, to lkkit's;
        `missing` says what was not found (the server's own words are vaguer)."""
        try:
            # The SDK passes `timeout=None` to each aiohttp request, which turns off
            # the session's timeout: the deadline is kept here instead.
            with anyio.fail_after(self._timeout), map_sdk_exceptions():
                yield
        except ServerApiNotFound as exc:
            if not missing:
                raise
            raise _not_found(missing) from exc
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self._timeout:g} s"
            raise ServerUnreachable(
                f"cannot reach the server API at {self._given_url}: {reason}"
            ) from exc

    async def _room_found(self, room: str, error: ServerApiError) -> ServerApiError:
        """`error`, or `ServerApiNotFound` when `room` is not there: the server answers
        some room-scoped calls for a missing room with a 503 after 3 s, not a 404."""
        if error.status == 503 and not await self.list_rooms([room]):
            return _not_found(f"no room {room!r}")
        return error

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
        with self._answering():
            return RoomInfo._from_api(await self._client().room.create_room(request))

    async def list_rooms(self, names: Sequence[str] = ()) -> tuple[RoomInfo, ...]:
        """The rooms open on the server (only those in `names` when given)."""
        request = api.ListRoomsRequest(names=[_name(n, "room name") for n in names])
        with self._answering():
            response = await self._client().room.list_rooms(request)
        return tuple(RoomInfo._from_api(r) for r in response.rooms)

    async def delete_room(self, name: str) -> None:
        """Delete a room; everyone in it is disconnected (`DisconnectReason.ROOM_DELETED`).

        Raises:
            ServerApiNotFound: no such room.
        """
        request = api.DeleteRoomRequest(room=_name(name, "room name"))
        with self._answering(f"no room {name!r}"):
            await self._client().room.delete_room(request)

    async def update_room_metadata(self, room: str, metadata: str) -> RoomInfo:
        """Set a room's metadata; participants get `RoomMetadataChanged`.

        Raises:
            ServerApiNotFound: no such room.
        """
        request = api.UpdateRoomMetadataRequest(room=_name(room, "room name"), metadata=metadata)
        with self._answering(f"no room {room!r}"):
            return RoomInfo._from_api(await self._client().room.update_room_metadata(request))

    # -- participants --------------------------------------------------------------------

    async def list_participants(self, room: str) -> tuple[ParticipantInfo, ...]:
        """The participants of a room (hidden ones included); none for a room that
        does not exist (the server does not tell the two apart)."""
        request = api.ListParticipantsRequest(room=_name(room, "room name"))
        with self._answering():
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
            ServerApiNotFound: no such room or participant.
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
        with self._answering(f"no participant {identity!r} in room {room!r}"):
            info = await self._client().room.update_participant(request)
        return ParticipantInfo._from_api(info)

    async def remove_participant(self, room: str, identity: str) -> None:
        """Disconnect a participant (`DisconnectReason.PARTICIPANT_REMOVED`).

        Raises:
            ServerApiNotFound: no such room or participant.
        """
        request, missing = _participant_request(room, identity)
        with self._answering(missing):
            await self._client().room.remove_participant(request)

    async def get_participant(self, room: str, identity: str) -> ParticipantInfo:
        """One participant of a room, with the tracks it publishes.

        Raises:
            ServerApiNotFound: no such room or participant.
        """
        request, missing = _participant_request(room, identity)
        with self._answering(missing):
            return ParticipantInfo._from_api(await self._client().room.get_participant(request))

    async def mute_published_track(
        self, room: str, identity: str, track_sid: str, *, muted: bool = True
    ) -> PublishedTrackInfo:
        """Mute (or unmute) a participant's published track; the track as it is now.

        The participant's other sessions and everyone subscribed see `TrackMuted` (or
        `TrackUnmuted`).

        Raises:
            ServerApiNotFound: no such room, participant, or track of that participant
                (the participant is looked up first: for a missing one the server
                answers only after 3 s, with a bare "unavailable").
        """
        track_sid = _name(track_sid, "track sid")
        await self.get_participant(room, identity)
        request = api.MuteRoomTrackRequest(
            room=room, identity=identity, track_sid=track_sid, muted=muted
        )
        with self._answering():
            response = await self._client().room.mute_published_track(request)
        if response.track.sid != track_sid:
            # The server answers an unknown track with an empty one, and no error.
            raise _not_found(f"{identity!r} publishes no track {track_sid!r} in room {room!r}")
        return PublishedTrackInfo._from_api(response.track)

    # -- data ----------------------------------------------------------------------------

    async def send_data(
        self,
        room: str,
        payload: bytes | bytearray | memoryview | str,
        *,
        topic: str = "",
        reliable: bool = True,
        to: Iterable[str] | None = None,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> str | None:
        """Send a message from the server to everyone in the room, or to the identities
        in `to`: the same arguments, checks and errors as
        [`session.data.send`][lkkit.DataChannel.send], and the same wire.

        A payload of at most 15,360 bytes goes as one packet through the server API:
        receivers get a message whose `sender` is `None`. A larger reliable one goes
        as a LiveKit native stream (text for a `str`, bytes otherwise), which every
        LiveKit SDK receives whole; the server API cannot send streams, so a hidden
        participant joins the room for it (identity `lkkit-server-` and 8 hex
        digits, publishing data only) and leaves once the stream is on the wire.
        Hidden participants are never announced, so receivers see `sender` `None`
        here too.

        Args:
            on_progress: for a stream, called as `on_progress(bytes_sent, total)`
                after each 64 KiB left.

        Returns:
            The hidden sender's identity for a stream; `None` for a single packet.

        Raises:
            DataTooLarge: a lossy payload over 15,360 bytes (one packet).
            InvalidDataArgument: a wrong payload, topic, `to` or `on_progress` (an
                empty `to` is refused: LiveKit would send to everyone).
            ServerApiNotFound: the room does not exist.
            ServerApiError: the server refused.
            NotConnected, StreamError: the stream's session failed.
        """
        data = payload_bytes(payload)
        topic = check_topic(topic)
        if not isinstance(reliable, bool):
            raise InvalidDataArgument(f"reliable must be a bool, got {reliable!r}")
        if on_progress is not None and not callable(on_progress):
            raise InvalidDataArgument("on_progress must be callable")
        identities = destinations(to)
        room = _name(room, "room name")
        if len(data) > MAX_PACKET_BYTES:
            if not reliable:
                raise DataTooLarge(
                    f"lossy data must fit one packet of {MAX_PACKET_BYTES} bytes, got {len(data)}"
                )
            return await self._send_stream(room, payload, data, topic, identities, on_progress)
        kind = api.DataPacket.Kind.RELIABLE if reliable else api.DataPacket.Kind.LOSSY
        request = api.SendDataRequest(
            room=room, data=data, kind=kind, topic=topic, destination_identities=identities or ()
        )
        try:
            with self._answering():
                await self._client().room.send_data(request)
        except ServerApiError as exc:
            raise await self._room_found(room, exc) from exc
        return None

    async def _send_stream(
        self,
        room: str,
        payload: bytes | bytearray | memoryview | str,
        data: bytes,
        topic: str,
        identities: tuple[str, ...] | None,
        on_progress: Callable[[int, int], object] | None,
    ) -> str:
        # Joining would create a missing room: look first, as a packet send would fail.
        if not await self.list_rooms([room]):
            raise _not_found(f"no room {room!r}")
        identity = f"lkkit-server-{secrets.token_hex(4)}"
        async with self._data_sender(room, identity) as session:
            stream: DataStreamWriter[Any]
            pieces: list[tuple[Any, int]]  # str for a text stream, bytes otherwise
            if isinstance(payload, str):
                # Whole characters per write: a UTF-8 character is at most 4 bytes.
                step = _STREAM_WRITE_BYTES // 4
                texts = [payload[i : i + step] for i in range(0, len(payload), step)]
                pieces = [(text, len(text.encode())) for text in texts]
                stream = await session.data.open_text_stream(
                    topic=topic, to=identities, total_size=len(data)
                )
            else:
                step = _STREAM_WRITE_BYTES
                pieces = [
                    (data[i : i + step], len(data[i : i + step])) for i in range(0, len(data), step)
                ]
                stream = await session.data.open_byte_stream(
                    topic=topic, to=identities, total_size=len(data)
                )
            sent = 0
            async with stream:
                for piece, size in pieces:
                    await stream.write(piece)
                    sent += size
                    if on_progress is not None:
                        on_progress(sent, len(data))
        return identity

    @asynccontextmanager
    async def _data_sender(self, room: str, identity: str) -> AsyncIterator[Session]:
        """A hidden session in `room` that may publish data and nothing else."""
        from ._session import connect

        grants = Grants(
            room_join=True,
            room=room,
            hidden=True,
            can_publish=False,
            can_subscribe=False,
            can_publish_data=True,
        )
        token = Token(identity=identity, grants=grants).sign(self._credentials)
        async with connect(_ws_url(self._url), token) as session:
            yield session

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
        with self._answering():
            dispatch = await self._client().agent_dispatch.create_dispatch(request)
        return AgentDispatch._from_api(dispatch)

    async def list_dispatches(self, room: str) -> tuple[AgentDispatch, ...]:
        """The explicit agent dispatches of `room`.

        Raises:
            ServerApiNotFound: the room does not exist.
        """
        room = _name(room, "room name")
        try:
            with self._answering():
                dispatches = await self._client().agent_dispatch.list_dispatch(room)
        except ServerApiError as exc:
            raise await self._room_found(room, exc) from exc
        return tuple(AgentDispatch._from_api(d) for d in dispatches)

    async def delete_dispatch(self, room: str, dispatch_id: str) -> None:
        """Delete an explicit dispatch (its running job is terminated).

        Raises:
            ConfigurationError: an empty room or dispatch id.
            ServerApiNotFound: no such dispatch in that room.
        """
        with self._answering(f"no dispatch {dispatch_id!r} in room {room!r}"):
            await self._client().agent_dispatch.delete_dispatch(
                _name(dispatch_id, "dispatch id"), _name(room, "room name")
            )
