"""Access tokens: typed, immutable values that sign to and verify from LiveKit JWTs.

```python
credentials = Credentials(api_key="devkey", api_secret="secret")
token = Token(identity="user-42", grants=Grants(room_join=True, room="scene-7"))
jwt = token.sign(credentials)
assert Token.verify(jwt, credentials) == token
```

Signing and verifying are livekit-api's `AccessToken` and `TokenVerifier`; this module
only checks values before signing and turns claims back into typed values. Every
problem is an lkkit [`TokenError`][lkkit.TokenError], never a pydantic
`ValidationError` nor a PyJWT exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from ._credentials import Credentials
from ._exceptions import (
    InvalidGrant,
    TokenError,
    TokenExpired,
    TokenMalformed,
    TokenSignatureInvalid,
    TokenVerificationError,
)
from ._types import ParticipantKind, TrackSource

if TYPE_CHECKING:
    from jwt import exceptions as jwt_errors
    from livekit import api
    from livekit.api.access_token import Claims
    from typing_extensions import Self

# livekit-api's defaults (a test checks they still are); livekit-api and PyJWT are
# imported when a token is signed or verified, not with this module (an agent worker
# registers before it pays for them).
DEFAULT_TTL: Final = timedelta(minutes=10)
"""A token only has to get its holder in: the server refreshes the token of a connected
participant (`TokenRefreshed`), so a short lifetime limits what a leaked token is worth.
livekit-api defaults to 6 hours."""
DEFAULT_LEEWAY: Final = timedelta(minutes=1)

__all__ = ["DEFAULT_LEEWAY", "DEFAULT_TTL", "Credentials", "Grants", "Token", "join_token"]

# The kinds a token can carry: livekit-api's `AccessToken.with_kind` takes these, and
# they are the ones the SPEC lists. CONNECTOR and BRIDGE exist on participants only.
_KIND_CLAIM: Final[dict[ParticipantKind, api.AccessToken.ParticipantKind]] = {
    ParticipantKind.STANDARD: "standard",
    ParticipantKind.INGRESS: "ingress",
    ParticipantKind.EGRESS: "egress",
    ParticipantKind.SIP: "sip",
    ParticipantKind.AGENT: "agent",
}
_PUBLISH_SOURCES: Final = tuple(s for s in TrackSource if s is not TrackSource.UNKNOWN)


# How a PyJWT failure (raised through `TokenVerifier`) reads in lkkit. Looked up along
# the exception's MRO; a test fails when PyJWT defines a token error missing here.
@cache
def verification_errors() -> dict[type[jwt_errors.PyJWTError], type[TokenVerificationError]]:
    from jwt import exceptions as jwt_errors

    return {
        jwt_errors.ExpiredSignatureError: TokenExpired,
        jwt_errors.InvalidSignatureError: TokenSignatureInvalid,
        jwt_errors.InvalidIssuerError: TokenSignatureInvalid,
        jwt_errors.InvalidAlgorithmError: TokenSignatureInvalid,
        # `nbf` or `iat` in the future: valid later, neither expired nor malformed.
        jwt_errors.ImmatureSignatureError: TokenVerificationError,
        jwt_errors.DecodeError: TokenMalformed,
        jwt_errors.MissingRequiredClaimError: TokenMalformed,
        jwt_errors.InvalidIssuedAtError: TokenMalformed,
        jwt_errors.InvalidAudienceError: TokenMalformed,
        jwt_errors.InvalidSubjectError: TokenMalformed,
        jwt_errors.InvalidJTIError: TokenMalformed,
        jwt_errors.InvalidKeyError: TokenMalformed,
        jwt_errors.InvalidTokenError: TokenMalformed,
        jwt_errors.PyJWTError: TokenMalformed,
    }


_VERIFICATION_MESSAGES: Final[dict[type[TokenVerificationError], str]] = {
    TokenExpired: "the token has expired",
    TokenSignatureInvalid: "the token was not signed with these credentials",
    TokenVerificationError: "the token is not valid yet",
    TokenMalformed: "not a LiveKit JWT",
}


# livekit-api reads the clock twice, once for `nbf` and once for `exp`; when a second
# boundary falls between the two reads, the token lives one second longer than asked.
# Minting again (microseconds later) gives the exact lifetime.
_MINT_ATTEMPTS: Final = 3


def _verification_error(exc: jwt_errors.PyJWTError) -> TokenVerificationError:
    errors = verification_errors()
    lkkit_type = next(errors[klass] for klass in type(exc).__mro__ if klass in errors)
    return lkkit_type(f"{_VERIFICATION_MESSAGES[lkkit_type]} ({str(exc) or type(exc).__name__})")


def _lkkit_error(exc: ValidationError, default: type[TokenError]) -> TokenError:
    # Our validators raise lkkit errors, which pydantic wraps (they are ValueErrors).
    # Unwrap them, and turn pydantic's own complaints (types, unknown fields) into
    # `default`, so callers only ever see lkkit's exceptions: one for all problems.
    error_type: type[TokenError] | None = None
    messages: list[str] = []
    for error in exc.errors(include_url=False):
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, TokenError):
            error_type = error_type or type(cause)
            messages.append(str(cause))
        else:
            where = ".".join(str(part) for part in error["loc"])
            messages.append(f"{where}: {error['msg']}" if where else error["msg"])
    return (error_type or default)("; ".join(messages))


class _Value(BaseModel):
    # Frozen, no unknown fields, and every validation failure raised as `_error`.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    _error: ClassVar[type[TokenError]] = InvalidGrant

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _lkkit_error(exc, self._error) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate untyped data (a dict from JSON, say); raise lkkit errors only."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise _lkkit_error(exc, cls._error) from None

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate a JSON document; raise lkkit errors only."""
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise _lkkit_error(exc, cls._error) from None

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` applied, **validated** (pydantic's own copy is not).

        The values are immutable, so `deep` changes nothing visible.
        """
        if not update:
            return super().model_copy(deep=deep)
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(update)
        return type(self)(**data)


class _FrozenMap(Mapping[str, str]):
    # A read-only, hashable mapping: `Token` stays hashable and its attributes cannot
    # change behind its back. (`MappingProxyType` is neither hashable nor picklable.)
    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data: dict[str, str] = dict(data or {})

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


# -- credentials -------------------------------------------------------------------------


# -- grants ------------------------------------------------------------------------------


class Grants(_Value):
    """What a token allows: LiveKit's `video` grant, plus the participant `kind`.

    ```python
    Grants(room_join=True, room="scene-7", can_publish_sources=(TrackSource.MICROPHONE,))
    ```

    Immutable, and checked when built, so a `Grants` value can always be signed.
    The defaults are LiveKit's: a holder may publish, publish data and subscribe, and
    nothing else. Untyped input (`Grants.model_validate({...})`) may spell sources and
    kind as strings: `"camera"`, `"agent"`.

    `kind` is here because the SPEC's grant table lists it, but in the JWT it is the
    top-level `kind` claim, where LiveKit reads it (livekit-api's
    `AccessToken.with_kind`); signing and verifying move it there and back.

    Grants lkkit does not model (`destinationRoom`, `canSubscribeMetrics`, SIP,
    agent-dispatch and inference grants...) are left out when signing and ignored when
    verifying.

    Raises:
        InvalidGrant: when `room_join` or `room_admin` is set without a `room`, for an
            unknown or empty list of publish sources, for a kind a token cannot carry,
            and for any value of the wrong type or unknown field.
    """

    room_create: bool = False
    """Create and delete rooms (`roomCreate`)."""
    room_list: bool = False
    """List rooms (`roomList`)."""
    room_join: bool = False
    """Join the room `room` (`roomJoin`)."""
    room_admin: bool = False
    """Moderate the room `room` (`roomAdmin`)."""
    room_record: bool = False
    """Use the Egress service, record rooms (`roomRecord`)."""
    ingress_admin: bool = False
    """Use the Ingress service (`ingressAdmin`)."""
    room: str | None = None
    """The room the grant applies to, `None` (or `""`) for none; required with
    `room_join` or `room_admin`."""
    can_publish: bool = True
    """Publish tracks (`canPublish`)."""
    can_publish_data: bool = True
    """Publish data messages (`canPublishData`)."""
    can_publish_sources: tuple[TrackSource, ...] | None = None
    """Publish only these sources (`canPublishSources`); `None` means every source."""
    can_subscribe: bool = True
    """Subscribe to others' tracks (`canSubscribe`)."""
    can_update_own_metadata: bool = False
    """Update one's own name, metadata and attributes (`canUpdateOwnMetadata`)."""
    hidden: bool = False
    """Stay invisible to the other participants (`hidden`)."""
    kind: ParticipantKind | None = None
    """The participant kind (the top-level `kind` claim); normally set by LiveKit."""
    agent: bool = False
    """Register as an agent worker (`agent`); what agent workers' tokens need."""

    @field_validator("room", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # LiveKit does not tell an empty room from none: the JWT leaves both out.
        return None if value == "" else value

    @field_validator("can_publish_sources", mode="before")
    @classmethod
    def _known_sources(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise InvalidGrant(
                f"can_publish_sources must be a tuple or list of sources, not {value!r}"
            )
        if not value:
            # LiveKit reads an empty list as "every source", the opposite of its look.
            raise InvalidGrant(
                "can_publish_sources must not be empty: use None for every source, "
                "or can_publish=False for none"
            )
        return tuple(_publish_source(item) for item in value)

    @field_validator("kind", mode="before")
    @classmethod
    def _token_kind(cls, value: object) -> object:
        if value is None:
            return None
        kinds = ", ".join(kind.value for kind in _KIND_CLAIM)
        try:
            kind = ParticipantKind(value)
        except ValueError:
            raise InvalidGrant(f"unknown participant kind {value!r}; expected {kinds}") from None
        if kind not in _KIND_CLAIM:
            raise InvalidGrant(f"a token cannot carry kind {kind.value!r}; expected {kinds}")
        return kind

    @model_validator(mode="after")
    def _room_when_needed(self) -> Self:
        for flag in ("room_join", "room_admin"):
            if getattr(self, flag) and self.room is None:
                raise InvalidGrant(f"{flag} needs a room")
        return self

    def _video_grants(self) -> api.VideoGrants:
        from livekit import api

        # False becomes None, which livekit-api leaves out of the JWT; the server reads
        # an absent flag as false (and an absent canPublish* as true: those are kept).
        return api.VideoGrants(
            room_create=self.room_create or None,
            room_list=self.room_list or None,
            room_record=self.room_record or None,
            room_admin=self.room_admin or None,
            room_join=self.room_join or None,
            room=self.room or "",
            can_publish=self.can_publish,
            can_subscribe=self.can_subscribe,
            can_publish_data=self.can_publish_data,
            can_publish_sources=(
                None
                if self.can_publish_sources is None
                else [source.value for source in self.can_publish_sources]
            ),
            can_update_own_metadata=self.can_update_own_metadata or None,
            ingress_admin=self.ingress_admin or None,
            hidden=self.hidden or None,
            agent=self.agent or None,
        )

    @classmethod
    def _from_claims(cls, claims: Claims) -> Grants:
        from livekit import api

        video = claims.video or api.VideoGrants()
        values: dict[str, object] = {
            name: getattr(video, name)
            for name in cls.model_fields
            if name != "kind" and getattr(video, name, None) is not None
        }
        if values.get("can_publish_sources") == []:
            values.pop("can_publish_sources")  # what the server reads it as
        if claims.kind:
            values["kind"] = claims.kind
        return cls.model_validate(values)


def _publish_source(item: object) -> TrackSource:
    names = ", ".join(source.value for source in _PUBLISH_SOURCES)
    try:
        source = TrackSource(item)
    except ValueError:
        raise InvalidGrant(f"unknown publish source {item!r}; expected {names}") from None
    if source is TrackSource.UNKNOWN:
        raise InvalidGrant(f"{source.value!r} is not a publish source; expected {names}")
    return source


# -- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomAgent:
    """An agent to dispatch to a room: with [`RoomAdmin.create_room`][lkkit.RoomAdmin.create_room]
    (`agents=`) or in a token's room configuration (`Token(room_agents=...)`).

    Attributes:
        agent_name: the name workers registered with (`Worker(agent_name=...)`).
        metadata: handed to the job (`ctx.job.metadata`).
    """

    agent_name: str
    metadata: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.agent_name, str) or not self.agent_name:
            raise InvalidGrant("an agent dispatch needs a non-empty agent_name")
        if not isinstance(self.metadata, str):
            raise InvalidGrant("agent dispatch metadata must be a str")

    def _to_api(self) -> api.RoomAgentDispatch:
        from livekit import api

        return api.RoomAgentDispatch(agent_name=self.agent_name, metadata=self.metadata)


class Token(_Value):
    """An access token as a value: who, for how long, allowed to do what.

    ```python
    token = Token(
        identity="user-42",
        name="Ada",
        grants=Grants(room_join=True, room="scene-7"),
        ttl=timedelta(hours=1),
    )
    jwt = token.sign(credentials)
    ```

    Immutable (`attributes` too) and hashable, checked when built: a `Token` can
    always be signed. `Token.verify(token.sign(c), c) == token` holds for every token.

    Raises:
        InvalidGrant: for an empty `identity` with `room_join`, a `ttl` under one
            second, any invalid [`Grants`][lkkit.Grants], and values of the wrong type.
    """

    identity: str = ""
    """Who the holder is (the `sub` claim); required to join a room."""
    name: str | None = None
    """The display name other participants see; `None` (or `""`) for none."""
    metadata: str | None = None
    """Free-form participant metadata, often JSON; `None` (or `""`) for none."""
    attributes: Mapping[str, str] = Field(default_factory=_FrozenMap)
    """Participant attributes; stored as a read-only mapping."""
    ttl: timedelta = DEFAULT_TTL
    """How long the token is valid from signing: 10 minutes by default (`DEFAULT_TTL`;
    livekit-api's default is 6 hours).

    The JWT carries whole seconds, so `ttl` is truncated to whole seconds; it must be
    at least one second.
    """
    grants: Grants = Grants()
    """What the token allows."""
    room_agents: tuple[RoomAgent, ...] = ()
    """Agents to dispatch when the holder's join creates the room (the token's room
    configuration; ignored when the room already exists)."""

    @field_validator("name", "metadata", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # LiveKit does not tell an empty name from none: the JWT leaves both out.
        return None if value == "" else value

    @field_validator("attributes", mode="after")
    @classmethod
    def _freeze_attributes(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        return _FrozenMap(value)

    @field_serializer("attributes")
    def _serialize_attributes(self, value: Mapping[str, str]) -> dict[str, str]:
        return dict(value)

    @field_validator("ttl", mode="after")
    @classmethod
    def _whole_seconds(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise InvalidGrant(f"ttl must be at least one second, not {value}")
        return timedelta(days=value.days, seconds=value.seconds)

    @model_validator(mode="after")
    def _identity_when_joining(self) -> Self:
        if self.grants.room_join and not self.identity:
            raise InvalidGrant("a token with room_join needs an identity")
        return self

    def sign(self, credentials: Credentials) -> str:
        """Sign the token with `credentials`: the JWT, valid from now for `ttl`."""
        import jwt as pyjwt
        from livekit import api

        builder = (
            api.AccessToken(credentials.api_key, credentials.api_secret)
            .with_identity(self.identity)
            .with_name(self.name or "")
            .with_metadata(self.metadata or "")
            .with_ttl(self.ttl)
            .with_grants(self.grants._video_grants())
        )
        if self.attributes:
            builder.with_attributes(dict(self.attributes))
        if self.grants.kind is not None:
            builder.with_kind(_KIND_CLAIM[self.grants.kind])
        if self.room_agents:
            builder.with_room_config(
                api.RoomConfiguration(agents=[agent._to_api() for agent in self.room_agents])
            )
        seconds = int(self.ttl.total_seconds())
        jwt = builder.to_jwt()
        for _ in range(_MINT_ATTEMPTS - 1):
            if _lifetime(pyjwt.decode(jwt, options={"verify_signature": False})) == seconds:
                break
            jwt = builder.to_jwt()
        return jwt

    @classmethod
    def verify(
        cls, jwt: str, credentials: Credentials, *, leeway: timedelta = DEFAULT_LEEWAY
    ) -> Token:
        """Check a JWT's signature, issuer and lifetime, and decode it into a `Token`.

        `ttl` is `exp - nbf`. `leeway` is the clock skew allowed on `exp` and `nbf`
        (livekit-api's default: one minute).

        Raises:
            TokenSignatureInvalid: when the JWT was signed with another secret, or its
                issuer is another API key.
            TokenExpired: when its `exp` is past (beyond `leeway`).
            TokenVerificationError: when it is not valid yet (`nbf` in the future).
            TokenMalformed: when it is not a JWT, or its claims are not claims a
                `Token` can hold.
        """
        import jwt as pyjwt
        from jwt import exceptions as jwt_errors
        from livekit import api

        verifier = api.TokenVerifier(credentials.api_key, credentials.api_secret, leeway=leeway)
        try:
            claims = verifier.verify(jwt)
            registered = pyjwt.decode(jwt, options={"verify_signature": False})
        except jwt_errors.PyJWTError as exc:
            raise _verification_error(exc) from exc
        except (AttributeError, TypeError, ValueError) as exc:
            # livekit-api chokes on claims of the wrong shape (a `video` that is a list).
            raise TokenMalformed(f"not LiveKit claims: {exc}") from exc
        seconds = _lifetime(registered)
        if seconds is None:
            raise TokenMalformed("the JWT has no nbf (nor iat): its lifetime is unknown")
        try:
            return cls(
                identity=claims.identity,
                name=claims.name,
                metadata=claims.metadata,
                attributes=claims.attributes or {},
                ttl=timedelta(seconds=seconds),
                grants=Grants._from_claims(claims),
                room_agents=tuple(
                    RoomAgent(agent.agent_name, agent.metadata)
                    for agent in (claims.room_config.agents if claims.room_config else ())
                ),
            )
        except (InvalidGrant, OverflowError) as exc:
            raise TokenMalformed(f"claims a Token cannot hold: {exc}") from exc


def _lifetime(claims: Mapping[str, Any]) -> int | None:
    # PyJWT has checked that `exp`, `nbf` and `iat` are numbers when present.
    start = claims.get("nbf", claims.get("iat"))
    if start is None:
        return None
    return int(claims["exp"]) - int(start)


def join_token(
    credentials: Credentials,
    *,
    room: str,
    identity: str,
    name: str | None = None,
    metadata: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
    grants: Grants = Grants(),  # noqa: B008 - immutable
) -> str:
    """The signed JWT of a token to join `room`: what a token endpoint returns.

    ```python
    jwt = join_token(credentials, room="scene-7", identity=user.id, name=user.nickname)
    ```

    `grants` gives the other permissions (LiveKit's defaults when omitted);
    `room_join` and `room` are set from the arguments.

    Raises:
        InvalidGrant: as [`Token`][lkkit.Token] does.
    """
    token = Token(
        identity=identity,
        name=name,
        metadata=metadata,
        ttl=ttl,
        grants=grants.model_copy(update={"room_join": True, "room": room}),
    )
    return token.sign(credentials)
