"""Tests of lkkit's access tokens (`lkkit._tokens`): every field's round trip and its
place in the JWT, every validation error, every verification error, immutability, and
interoperability with livekit-api's own minting and verifying. No server needed."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import pickle
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import jwt as pyjwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt import exceptions as jwt_errors
from livekit import api
from livekit.api import access_token
from pydantic import ValidationError

from lkkit._exceptions import (
    InvalidCredentials,
    InvalidGrant,
    TokenExpired,
    TokenMalformed,
    TokenSignatureInvalid,
    TokenVerificationError,
)
from lkkit._tokens import (
    DEFAULT_LEEWAY,
    DEFAULT_TTL,
    Credentials,
    Grants,
    Token,
    join_token,
    verification_errors,
)
from lkkit._types import ParticipantKind, TrackSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

KEY = "lkkit-test-key"
SECRET = "a-test-secret-of-at-least-64-bytes-so-that-pyjwt-accepts-it-for-hs512"
CREDENTIALS = Credentials(api_key=KEY, api_secret=SECRET)
TOKEN_KINDS = (
    ParticipantKind.STANDARD,
    ParticipantKind.INGRESS,
    ParticipantKind.EGRESS,
    ParticipantKind.SIP,
    ParticipantKind.AGENT,
)
PUBLISH_SOURCES = (
    TrackSource.CAMERA,
    TrackSource.MICROPHONE,
    TrackSource.SCREEN_SHARE,
    TrackSource.SCREEN_SHARE_AUDIO,
)


def payload(jwt: str) -> dict[str, Any]:
    """The JWT's claims, read without lkkit."""
    claims: dict[str, Any] = pyjwt.decode(jwt, SECRET, algorithms=["HS256"], issuer=KEY)
    return claims


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def craft(claims: dict[str, Any], *, secret: str = SECRET, algorithm: str = "HS256") -> str:
    """A JWT signed by hand with PyJWT: claims lkkit would never write."""
    return pyjwt.encode(claims, secret, algorithm=algorithm)


def valid_claims(**overrides: Any) -> dict[str, Any]:
    start = int(now().timestamp())
    claims: dict[str, Any] = {
        "iss": KEY,
        "sub": "user-1",
        "nbf": start,
        "exp": start + 3600,
        "video": {"roomJoin": True, "room": "scene-7"},
    }
    claims.update(overrides)
    return claims


@pytest.fixture
def livekit_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[Iterable[dt.datetime]], None]:
    """Replace the clock livekit-api's `AccessToken.to_jwt` reads, one reading at a time."""

    def install(readings: Iterable[dt.datetime]) -> None:
        clock = iter(readings)

        class _Clock:
            @staticmethod
            def now(tz: dt.tzinfo | None = None) -> dt.datetime:
                return next(clock)

        fake = SimpleNamespace(datetime=_Clock, timezone=dt.timezone)
        monkeypatch.setattr(access_token, "datetime", fake)

    return install


# -- round trips -------------------------------------------------------------------------

# field, a non-default value, where it lands in the JWT, and how it is spelled there.
GRANT_CASES: list[tuple[str, object, tuple[str, ...], object]] = [
    ("room_create", True, ("video", "roomCreate"), True),
    ("room_list", True, ("video", "roomList"), True),
    ("room_join", True, ("video", "roomJoin"), True),
    ("room_admin", True, ("video", "roomAdmin"), True),
    ("room_record", True, ("video", "roomRecord"), True),
    ("ingress_admin", True, ("video", "ingressAdmin"), True),
    ("room", "another-room", ("video", "room"), "another-room"),
    ("can_publish", False, ("video", "canPublish"), False),
    ("can_publish_data", False, ("video", "canPublishData"), False),
    (
        "can_publish_sources",
        (TrackSource.CAMERA,),
        ("video", "canPublishSources"),
        ["camera"],
    ),
    (
        "can_publish_sources",
        PUBLISH_SOURCES,
        ("video", "canPublishSources"),
        ["camera", "microphone", "screen_share", "screen_share_audio"],
    ),
    ("can_subscribe", False, ("video", "canSubscribe"), False),
    ("can_update_own_metadata", True, ("video", "canUpdateOwnMetadata"), True),
    ("hidden", True, ("video", "hidden"), True),
    *[("kind", kind, ("kind",), kind.value) for kind in TOKEN_KINDS],
    ("agent", True, ("video", "agent"), True),
]


def _case_id(case: tuple[str, object, tuple[str, ...], object]) -> str:
    return f"{case[0]}={case[3]}"


def test_grant_cases_cover_every_grants_field() -> None:
    assert {case[0] for case in GRANT_CASES} == set(Grants.model_fields)


@pytest.mark.parametrize("case", GRANT_CASES, ids=_case_id)
def test_every_grant_field_round_trips(
    case: tuple[str, object, tuple[str, ...], object],
) -> None:
    field, value, _, _ = case
    assert Grants.model_fields[field].default != value, "the case must not be the default"
    grants = Grants.model_validate({"room": "scene-7", field: value})
    token = Token(identity="user-1", grants=grants)

    verified = Token.verify(token.sign(CREDENTIALS), CREDENTIALS)

    assert getattr(verified.grants, field) == value
    assert verified == token


@pytest.mark.parametrize("case", GRANT_CASES, ids=_case_id)
def test_every_grant_field_lands_where_livekit_reads_it(
    case: tuple[str, object, tuple[str, ...], object],
) -> None:
    field, value, path, claim = case
    token = Token(identity="user-1", grants=Grants.model_validate({"room": "r", field: value}))

    node: Any = payload(token.sign(CREDENTIALS))
    for part in path:
        node = node[part]

    assert node == claim


def test_kind_is_a_top_level_claim_not_a_video_grant() -> None:
    grants = Grants(kind=ParticipantKind.AGENT)
    claims = payload(Token(grants=grants).sign(CREDENTIALS))
    assert claims["kind"] == "agent"
    assert "kind" not in claims["video"]


def test_default_grants_are_livekit_defaults_and_write_a_minimal_video_claim() -> None:
    grants = Grants()
    assert (grants.can_publish, grants.can_publish_data, grants.can_subscribe) == (
        True,
        True,
        True,
    )
    claims = payload(Token(grants=grants).sign(CREDENTIALS))
    # False flags stay out of the JWT (LiveKit reads an absent flag as false).
    assert claims["video"] == {"canPublish": True, "canSubscribe": True, "canPublishData": True}
    assert "kind" not in claims


@pytest.mark.parametrize(
    ("field", "value", "claim", "spelled"),
    [
        ("identity", "user-2", "sub", "user-2"),
        ("name", "Ada Lovelace", "name", "Ada Lovelace"),
        ("metadata", '{"level": 3}', "metadata", '{"level": 3}'),
        ("attributes", {"team": "red", "seat": "4"}, "attributes", {"team": "red", "seat": "4"}),
    ],
)
def test_every_token_field_round_trips(
    field: str, value: object, claim: str, spelled: object
) -> None:
    token = Token.model_validate({field: value})
    jwt = token.sign(CREDENTIALS)

    assert payload(jwt)[claim] == spelled
    assert Token.verify(jwt, CREDENTIALS) == token
    assert getattr(Token.verify(jwt, CREDENTIALS), field) == value


@pytest.mark.parametrize(
    "ttl",
    [
        timedelta(seconds=1),
        timedelta(seconds=90),
        timedelta(hours=1),
        timedelta(hours=24),
        timedelta(days=7),
    ],
    ids=str,
)
def test_ttl_round_trips_as_exp_minus_nbf(ttl: timedelta) -> None:
    token = Token(ttl=ttl)
    jwt = token.sign(CREDENTIALS)

    claims = payload(jwt)
    assert claims["exp"] - claims["nbf"] == ttl.total_seconds()
    assert Token.verify(jwt, CREDENTIALS).ttl == ttl


def test_a_token_with_everything_set_round_trips() -> None:
    token = Token(
        identity="user-42",
        name="Ada",
        metadata='{"level": 3}',
        attributes={"team": "red"},
        ttl=timedelta(minutes=10),
        grants=Grants(
            room_create=True,
            room_list=True,
            room_join=True,
            room_admin=True,
            room_record=True,
            ingress_admin=True,
            room="scene-7",
            can_publish=False,
            can_publish_data=False,
            can_publish_sources=(TrackSource.MICROPHONE, TrackSource.SCREEN_SHARE_AUDIO),
            can_subscribe=False,
            can_update_own_metadata=True,
            hidden=True,
            kind=ParticipantKind.SIP,
            agent=True,
        ),
    )
    assert Token.verify(token.sign(CREDENTIALS), CREDENTIALS) == token


_names = st.text(min_size=1, max_size=20)


@st.composite
def tokens(draw: st.DrawFn) -> Token:
    flags = {
        field: draw(st.booleans())
        for field in (
            "room_create",
            "room_list",
            "room_join",
            "room_admin",
            "room_record",
            "ingress_admin",
            "can_publish",
            "can_publish_data",
            "can_subscribe",
            "can_update_own_metadata",
            "hidden",
            "agent",
        )
    }
    sources = draw(
        st.none() | st.lists(st.sampled_from(PUBLISH_SOURCES), min_size=1, max_size=4).map(tuple)
    )
    grants = Grants(
        **flags,
        room=draw(_names),
        can_publish_sources=sources,
        kind=draw(st.none() | st.sampled_from(TOKEN_KINDS)),
    )
    return Token(
        identity=draw(_names),
        name=draw(st.none() | _names),
        metadata=draw(st.none() | st.text(min_size=1)),
        attributes=draw(st.dictionaries(st.text(), st.text(), max_size=4)),
        ttl=timedelta(seconds=draw(st.integers(min_value=1, max_value=10**8))),
        grants=grants,
    )


@settings(max_examples=60, deadline=None)
@given(token=tokens())
def test_any_token_round_trips(token: Token) -> None:
    assert Token.verify(token.sign(CREDENTIALS), CREDENTIALS) == token


def test_strings_are_accepted_for_sources_and_kind() -> None:
    grants = Grants.model_validate(
        {"can_publish_sources": ["camera", "screen_share"], "kind": "agent"}
    )
    assert grants.can_publish_sources == (TrackSource.CAMERA, TrackSource.SCREEN_SHARE)
    assert grants.kind is ParticipantKind.AGENT


def test_empty_room_name_and_metadata_mean_none() -> None:
    token = Token(name="", metadata="", grants=Grants(room=""))
    assert (token.name, token.metadata, token.grants.room) == (None, None, None)
    assert Token.verify(token.sign(CREDENTIALS), CREDENTIALS) == token


def test_ttl_defaults_to_ten_minutes() -> None:
    assert timedelta(minutes=10) == DEFAULT_TTL
    assert Token().ttl == timedelta(minutes=10)


def test_ttl_is_truncated_to_whole_seconds() -> None:
    assert Token(ttl=timedelta(seconds=90, microseconds=700_000)).ttl == timedelta(seconds=90)


def test_a_second_boundary_between_livekit_clock_reads_does_not_stretch_the_ttl(
    livekit_clock: Callable[[Iterable[dt.datetime]], None],
) -> None:
    second = now().replace(microsecond=0)
    # livekit-api reads the clock for nbf, then for exp. First mint: the two reads
    # straddle a second boundary (exp - nbf would be ttl + 1 s); then a clean pair.
    livekit_clock(
        [
            second - timedelta(microseconds=1),
            second,
            *itertools.repeat(second + timedelta(milliseconds=500), 10),
        ]
    )
    token = Token(ttl=timedelta(hours=1))

    jwt = token.sign(CREDENTIALS)

    claims = payload(jwt)
    assert claims["exp"] - claims["nbf"] == 3600
    assert Token.verify(jwt, CREDENTIALS) == token


# -- validation errors -------------------------------------------------------------------

INVALID_GRANTS: list[tuple[dict[str, Any], str]] = [
    ({"room_join": True}, "room_join needs a room"),
    ({"room_admin": True}, "room_admin needs a room"),
    ({"room_join": True, "room": ""}, "room_join needs a room"),
    ({"can_publish_sources": ["camera", "smell"]}, "unknown publish source 'smell'"),
    ({"can_publish_sources": ["unknown"]}, "'unknown' is not a publish source"),
    ({"can_publish_sources": []}, "must not be empty"),
    ({"can_publish_sources": "camera"}, "must be a tuple or list"),
    ({"kind": "robot"}, "unknown participant kind 'robot'"),
    ({"kind": "bridge"}, "cannot carry kind 'bridge'"),
    ({"kind": ParticipantKind.CONNECTOR}, "cannot carry kind 'connector'"),
    ({"room_joinn": True}, "room_joinn: Extra inputs are not permitted"),
    ({"can_publish": "maybe"}, "can_publish: Input should be a valid boolean"),
]


GRANTS_BUILDERS: dict[str, Callable[[dict[str, Any]], Grants]] = {
    "init": lambda values: Grants(**values),
    "model_validate": Grants.model_validate,
    "model_validate_json": lambda values: Grants.model_validate_json(json.dumps(values)),
}


@pytest.mark.parametrize(("values", "message"), INVALID_GRANTS)
@pytest.mark.parametrize("build", GRANTS_BUILDERS.values(), ids=GRANTS_BUILDERS.keys())
def test_invalid_grants_raise_invalid_grant(
    values: dict[str, Any], message: str, build: Callable[[dict[str, Any]], Grants]
) -> None:
    with pytest.raises(InvalidGrant, match=re.escape(message)) as excinfo:
        build(values)
    assert excinfo.type is InvalidGrant


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grants": Grants(room_join=True, room="r")}, "room_join needs an identity"),
        ({"identity": "", "grants": {"room_join": True, "room": "r"}}, "needs an identity"),
        ({"ttl": timedelta(0)}, "ttl must be at least one second"),
        ({"ttl": timedelta(seconds=-5)}, "ttl must be at least one second"),
        ({"ttl": timedelta(milliseconds=500)}, "ttl must be at least one second"),
        ({"ttl": "forever"}, "ttl: "),
        ({"attributes": {"level": 3}}, "attributes.level: Input should be a valid string"),
        ({"identity": "u", "grants": {"room_join": True}}, "room_join needs a room"),
        ({"token": "x"}, "token: Extra inputs are not permitted"),
    ],
)
def test_invalid_tokens_raise_invalid_grant(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidGrant, match=re.escape(message)) as excinfo:
        Token(**values)
    assert excinfo.type is InvalidGrant


def test_several_problems_are_reported_together_as_one_lkkit_error() -> None:
    with pytest.raises(InvalidGrant) as excinfo:
        Token(identity=5, ttl=timedelta(0))  # type: ignore[arg-type]
    assert "identity: Input should be a valid string" in str(excinfo.value)
    assert "ttl must be at least one second" in str(excinfo.value)


def test_errors_do_not_chain_to_pydantic() -> None:
    with pytest.raises(InvalidGrant) as excinfo:
        Grants(room_join=True)
    assert not isinstance(excinfo.value.__cause__, ValidationError)
    assert excinfo.value.__suppress_context__


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api_key": "", "api_secret": SECRET}, "api_key must not be empty"),
        ({"api_key": KEY, "api_secret": ""}, "api_secret must not be empty"),
        ({"api_key": KEY, "api_secret": None}, "api_secret must be a str, not NoneType"),
        ({"api_key": b"key", "api_secret": SECRET}, "api_key must be a str, not bytes"),
    ],
)
def test_invalid_credentials_raise_invalid_credentials(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidCredentials, match=re.escape(message)) as excinfo:
        Credentials(**values)
    assert excinfo.type is InvalidCredentials


def test_model_copy_validates_the_update() -> None:
    grants = Grants(room="r")
    assert grants.model_copy(update={"room_join": True}).room_join
    assert not grants.room_join
    with pytest.raises(InvalidGrant, match="room_join needs a room"):
        Grants().model_copy(update={"room_join": True})


# -- credentials -------------------------------------------------------------------------


def test_the_secret_is_hidden_from_repr_and_str() -> None:
    credentials = Credentials(api_key="visible-key", api_secret="hidden-secret-value")
    assert "hidden-secret-value" not in repr(credentials)
    assert "hidden-secret-value" not in str(credentials)
    assert "visible-key" in repr(credentials)
    assert credentials.api_secret == "hidden-secret-value"


def test_credentials_are_immutable_hashable_values() -> None:
    credentials = Credentials(api_key=KEY, api_secret=SECRET)
    with pytest.raises(AttributeError):
        credentials.api_key = "other"  # type: ignore[misc]
    assert {credentials, Credentials(api_key=KEY, api_secret=SECRET)} == {credentials}
    assert credentials != Credentials(api_key=KEY, api_secret=SECRET + "x")
    assert pickle.loads(pickle.dumps(credentials)) == credentials


def test_from_env_reads_the_livekit_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_API_KEY", "env-key")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "env-secret")
    assert Credentials.from_env() == Credentials(api_key="env-key", api_secret="env-secret")


def test_from_env_reads_the_variables_it_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "k")
    monkeypatch.setenv("MY_SECRET", "s")
    credentials = Credentials.from_env(key_var="MY_KEY", secret_var="MY_SECRET")
    assert (credentials.api_key, credentials.api_secret) == ("k", "s")


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"LIVEKIT_API_SECRET": "s"}, "LIVEKIT_API_KEY"),
        ({"LIVEKIT_API_KEY": "k"}, "LIVEKIT_API_SECRET"),
        ({"LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": ""}, "LIVEKIT_API_SECRET"),
        ({}, "LIVEKIT_API_KEY, LIVEKIT_API_SECRET"),
    ],
)
def test_from_env_without_the_variables_raises(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: str
) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidCredentials, match=f"not set: {missing}$"):
        Credentials.from_env()


def test_a_short_secret_works_but_pyjwt_warns() -> None:
    dev = Credentials(api_key="devkey", api_secret="secret")
    with pytest.warns(pyjwt.InsecureKeyLengthWarning):
        jwt = Token().sign(dev)
    with pytest.warns(pyjwt.InsecureKeyLengthWarning):
        assert Token.verify(jwt, dev) == Token()


# -- immutability ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (Token(identity="u"), "identity"),
        (Token(), "ttl"),
        (Grants(), "room_join"),
    ],
)
def test_values_are_frozen(value: object, field: str) -> None:
    before = getattr(value, field)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(value, field, "changed")
    assert getattr(value, field) == before


def test_attributes_cannot_change() -> None:
    source = {"team": "red"}
    token = Token(attributes=source)
    source["team"] = "blue"
    assert token.attributes == {"team": "red"}
    assert not isinstance(token.attributes, dict)
    with pytest.raises(TypeError):
        token.attributes["team"] = "blue"  # type: ignore[index]
    assert dict(token.attributes) == {"team": "red"}


def test_tokens_are_hashable_values() -> None:
    one = Token(identity="u", attributes={"a": "1", "b": "2"}, grants=Grants(room="r"))
    same = Token(identity="u", attributes={"b": "2", "a": "1"}, grants=Grants(room="r"))
    other = Token(identity="u", attributes={"a": "1"}, grants=Grants(room="r"))
    assert one == same
    assert hash(one) == hash(same)
    assert len({one, same, other}) == 2


@pytest.mark.parametrize("model", [Grants, Token])
def test_json_schemas_build_without_warnings(model: type[Grants | Token]) -> None:
    schema = model.model_json_schema()
    assert schema["additionalProperties"] is False


def test_the_default_attributes_are_read_only_too() -> None:
    with pytest.raises(TypeError):
        Token().attributes["team"] = "red"  # type: ignore[index]


def test_tokens_pickle_and_dump() -> None:
    token = Token(identity="u", attributes={"a": "1"}, grants=Grants(kind=ParticipantKind.AGENT))
    assert pickle.loads(pickle.dumps(token)) == token
    assert Token.model_validate_json(token.model_dump_json()) == token
    assert token.model_dump()["attributes"] == {"a": "1"}


# -- verification errors -----------------------------------------------------------------


def test_a_wrong_secret_is_an_invalid_signature() -> None:
    jwt = Token().sign(CREDENTIALS)
    other = Credentials(api_key=KEY, api_secret="another-secret-that-is-long-enough-too")
    with pytest.raises(TokenSignatureInvalid, match="not signed with these credentials") as exc:
        Token.verify(jwt, other)
    assert isinstance(exc.value.__cause__, jwt_errors.InvalidSignatureError)


def test_another_api_key_is_an_invalid_signature() -> None:
    jwt = Token().sign(CREDENTIALS)
    other = Credentials(api_key="another-key", api_secret=SECRET)
    with pytest.raises(TokenSignatureInvalid) as excinfo:
        Token.verify(jwt, other)
    assert isinstance(excinfo.value.__cause__, jwt_errors.InvalidIssuerError)


@pytest.mark.parametrize("algorithm", ["none", "HS512"])
def test_another_algorithm_is_an_invalid_signature(algorithm: str) -> None:
    jwt = craft(valid_claims(), secret=SECRET if algorithm != "none" else "", algorithm=algorithm)
    with pytest.raises(TokenSignatureInvalid):
        Token.verify(jwt, CREDENTIALS)


def test_an_expired_token_is_expired() -> None:
    start = int(now().timestamp()) - 7200
    jwt = craft(valid_claims(nbf=start, exp=start + 3600))
    with pytest.raises(TokenExpired, match="expired") as excinfo:
        Token.verify(jwt, CREDENTIALS)
    assert excinfo.type is TokenExpired


def test_a_one_second_token_signed_an_hour_ago_is_expired(
    livekit_clock: Callable[[Iterable[dt.datetime]], None],
) -> None:
    livekit_clock(itertools.repeat(now() - timedelta(hours=1)))
    jwt = Token(ttl=timedelta(seconds=1)).sign(CREDENTIALS)
    with pytest.raises(TokenExpired):
        Token.verify(jwt, CREDENTIALS)


def test_leeway_is_the_allowed_clock_skew(
    livekit_clock: Callable[[Iterable[dt.datetime]], None],
) -> None:
    livekit_clock(itertools.repeat(now() - timedelta(seconds=5)))
    jwt = Token(ttl=timedelta(seconds=1)).sign(CREDENTIALS)
    # Expired four seconds ago: inside livekit-api's one-minute leeway, not inside 0.
    assert Token.verify(jwt, CREDENTIALS).ttl == timedelta(seconds=1)
    with pytest.raises(TokenExpired):
        Token.verify(jwt, CREDENTIALS, leeway=timedelta(0))


def test_a_token_from_the_future_is_not_valid_yet(
    livekit_clock: Callable[[Iterable[dt.datetime]], None],
) -> None:
    livekit_clock(itertools.repeat(now() + timedelta(hours=1)))
    jwt = Token().sign(CREDENTIALS)
    with pytest.raises(TokenVerificationError, match="not valid yet") as excinfo:
        Token.verify(jwt, CREDENTIALS)
    assert excinfo.type is TokenVerificationError


@pytest.mark.parametrize(
    "jwt",
    ["", "garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "eyJhbGciOiJIUzI1NiJ9.e30.e30.e30"],
)
def test_garbage_is_malformed(jwt: str) -> None:
    with pytest.raises(TokenMalformed, match="not a LiveKit JWT"):
        Token.verify(jwt, CREDENTIALS)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": None}, "exp"),
        ({"exp": "soon"}, "exp"),
        ({"video": ["roomJoin"]}, "not LiveKit claims"),
        ({"video": {"roomJoin": True}}, "room_join needs a room"),
        ({"video": {"canPublishSources": ["smell"]}}, "unknown publish source"),
        ({"video": {"canPublish": "perhaps"}}, "can_publish"),
        ({"kind": "robot"}, "unknown participant kind"),
        ({"attributes": {"level": 3}}, "attributes.level"),
        ({"attributes": ["a"]}, "attributes"),
        ({"sub": 5}, "Subject must be a string"),
        ({"nbf": None, "iat": None}, "lifetime is unknown"),
        ({"exp": 10**14, "nbf": 0}, "cannot hold"),
    ],
)
def test_claims_a_token_cannot_hold_are_malformed(claims: dict[str, Any], message: str) -> None:
    values = {k: v for k, v in valid_claims(**claims).items() if v is not None}
    with pytest.raises(TokenMalformed, match=message) as excinfo:
        Token.verify(craft(values), CREDENTIALS)
    assert excinfo.type is TokenMalformed


def test_exp_equal_to_nbf_is_malformed() -> None:
    start = int(now().timestamp())
    with pytest.raises(TokenMalformed, match="at least one second"):
        Token.verify(craft(valid_claims(nbf=start, exp=start)), CREDENTIALS)


def test_a_payload_that_is_not_an_object_is_malformed() -> None:
    jwt = pyjwt.PyJWS().encode(b"[1, 2]", SECRET, algorithm="HS256")
    with pytest.raises(TokenMalformed):
        Token.verify(jwt, CREDENTIALS)


def test_without_nbf_the_lifetime_counts_from_iat() -> None:
    start = int(now().timestamp())
    claims = valid_claims(iat=start, exp=start + 600)
    del claims["nbf"]
    assert Token.verify(craft(claims), CREDENTIALS).ttl == timedelta(minutes=10)


def test_every_pyjwt_token_error_is_mapped_explicitly() -> None:
    pyjwt_errors = {
        value
        for value in vars(jwt_errors).values()
        if isinstance(value, type) and issubclass(value, jwt_errors.InvalidTokenError)
    }
    assert pyjwt_errors, "PyJWT's exceptions moved: update this test"
    assert pyjwt_errors - set(verification_errors()) == set()


def test_the_default_leeway_is_livekit_apis_and_the_ttl_shorter() -> None:
    # lkkit states them itself so that importing it does not import livekit-api.
    from livekit.api import access_token

    assert DEFAULT_LEEWAY == access_token.DEFAULT_LEEWAY
    assert DEFAULT_TTL < access_token.DEFAULT_TTL


# -- interoperability with livekit-api ---------------------------------------------------


def test_a_token_minted_by_livekit_api_verifies() -> None:
    jwt = (
        api.AccessToken(KEY, SECRET)
        .with_identity("user-1")
        .with_name("Ada")
        .with_kind("agent")
        .with_grants(api.VideoGrants(room_join=True, room="scene-7", can_publish_sources=[]))
        .to_jwt()
    )
    token = Token.verify(jwt, CREDENTIALS)
    assert token.identity == "user-1"
    assert token.name == "Ada"
    assert token.grants == Grants(room_join=True, room="scene-7", kind=ParticipantKind.AGENT)
    # livekit-api itself can be one second long (see the boundary test above).
    assert token.ttl - access_token.DEFAULT_TTL in (timedelta(0), timedelta(seconds=1))


def test_livekit_api_verifies_what_lkkit_signs() -> None:
    token = Token(
        identity="user-1",
        attributes={"team": "red"},
        grants=Grants(room_join=True, room="scene-7", hidden=True, kind=ParticipantKind.EGRESS),
    )
    claims = api.TokenVerifier(KEY, SECRET).verify(token.sign(CREDENTIALS))
    assert claims.identity == "user-1"
    assert claims.kind == "egress"
    assert claims.attributes == {"team": "red"}
    assert claims.video is not None
    assert (claims.video.room_join, claims.video.room, claims.video.hidden) == (
        True,
        "scene-7",
        True,
    )


# -- join_token --------------------------------------------------------------------------


def test_join_token_grants_joining_the_room() -> None:
    jwt = join_token(CREDENTIALS, room="scene-7", identity="user-42", name="Ada")
    token = Token.verify(jwt, CREDENTIALS)
    assert token == Token(
        identity="user-42", name="Ada", grants=Grants(room_join=True, room="scene-7")
    )


def test_join_token_keeps_the_other_grants() -> None:
    jwt = join_token(
        CREDENTIALS,
        room="scene-7",
        identity="user-42",
        ttl=timedelta(minutes=5),
        grants=Grants(can_publish=False, room="ignored"),
    )
    token = Token.verify(jwt, CREDENTIALS)
    assert token.grants == Grants(room_join=True, room="scene-7", can_publish=False)
    assert token.ttl == timedelta(minutes=5)


def test_join_token_needs_an_identity() -> None:
    with pytest.raises(InvalidGrant, match="needs an identity"):
        join_token(CREDENTIALS, room="scene-7", identity="")


# -- the docs page -----------------------------------------------------------------------

DOCS = Path(__file__).parent.parent / "docs" / "tokens.md"


def _python_blocks(text: str) -> Iterator[str]:
    yield from re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_docs_page_examples_run() -> None:
    blocks = list(_python_blocks(DOCS.read_text(encoding="utf-8")))
    assert blocks, "docs/tokens.md has no python example"
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), namespace)
