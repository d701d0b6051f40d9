"""Tests of lkkit's command line (`lkkit.cli`): `token create` and `token verify`,
their flags, durations, and error exits. No server needed."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import jwt as pyjwt
import pytest

from lkkit._tokens import Credentials, Grants, Token
from lkkit._types import ParticipantKind, TrackSource
from lkkit.cli import main
from lkkit.cli._token import parse_duration

KEY = "devkey"
SECRET = "a-cli-test-secret-that-is-longer-than-32-bytes"
CREDENTIALS = Credentials(api_key=KEY, api_secret=SECRET)
CREDENTIAL_FLAGS = ["--api-key", KEY, "--api-secret", SECRET]
SRC = Path(__file__).parent.parent / "src"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as excinfo:
        main(list(argv))
    assert excinfo.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


def create(capsys: pytest.CaptureFixture[str], *flags: str) -> Token:
    status, out, err = run(capsys, "token", "create", *CREDENTIAL_FLAGS, *flags)
    assert (status, err) == (0, "")
    jwt = out.strip()
    assert out == jwt + "\n"
    return Token.verify(jwt, CREDENTIALS)


# -- token create ------------------------------------------------------------------------


def test_the_spec_example_mints_a_join_token(capsys: pytest.CaptureFixture[str]) -> None:
    token = create(
        capsys, "--join", "--room", "test_room", "--identity", "test_user", "--valid-for", "24h"
    )
    assert token == Token(
        identity="test_user",
        ttl=timedelta(hours=24),
        grants=Grants(room_join=True, room="test_room"),
    )


def test_the_spec_example_with_the_dev_secret_works_and_warns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(
        capsys,
        *("token", "create", "--api-key", "devkey", "--api-secret", "secret"),
        *("--join", "--room", "test_room", "--identity", "test_user", "--valid-for", "24h"),
    )
    assert status == 0
    claims = pyjwt.decode(out.strip(), options={"verify_signature": False})
    assert (claims["sub"], claims["video"]["room"]) == ("test_user", "test_room")
    assert err.startswith("lkkit: warning: The HMAC key is 6 bytes long")
    assert err.count("\n") == 1


def test_every_flag_reaches_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    token = create(
        capsys,
        *("--identity", "user-42", "--name", "Ada", "--metadata", '{"level": 3}'),
        *("--attribute", "team=red", "--attribute", "seat=4=b", "--kind", "agent"),
        *("--room", "scene-7", "--join", "--admin", "--create", "--list", "--record"),
        *("--ingress-admin", "--update-own-metadata", "--hidden", "--agent"),
        *("--no-publish", "--no-publish-data", "--no-subscribe"),
        *("--sources", "camera, microphone", "--valid-for", "10m"),
    )
    assert token == Token(
        identity="user-42",
        name="Ada",
        metadata='{"level": 3}',
        attributes={"team": "red", "seat": "4=b"},
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
            can_publish_sources=(TrackSource.CAMERA, TrackSource.MICROPHONE),
            can_subscribe=False,
            can_update_own_metadata=True,
            hidden=True,
            kind=ParticipantKind.AGENT,
            agent=True,
        ),
    )


def test_without_flags_the_token_has_livekit_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert create(capsys) == Token()


def test_credentials_come_from_the_environment_without_flags(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVEKIT_API_KEY", "env-key")
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET + "-env")
    status, out, err = run(capsys, "token", "create", "--identity", "u")
    assert (status, err) == (0, "")
    env_credentials = Credentials(api_key="env-key", api_secret=SECRET + "-env")
    assert Token.verify(out.strip(), env_credentials).identity == "u"


def test_the_secret_can_come_from_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")  # as `echo` writes it
    status, out, err = run(
        capsys, "token", "create", "--api-key", KEY, "--api-secret-file", str(secret_file)
    )
    assert (status, err) == (0, "")
    Token.verify(out.strip(), CREDENTIALS)
    status, out, err = run(
        capsys, "token", "create", "--api-key", KEY, "--api-secret-file", str(tmp_path / "no")
    )
    assert (status, out) == (2, "")
    assert "cannot read the API secret file" in err
    err = usage_error(
        capsys,
        "token",
        "create",
        "--api-key",
        KEY,
        "--api-secret",
        SECRET,
        "--api-secret-file",
        str(secret_file),
    )
    assert "not allowed with argument" in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("24h", 86_400), ("7d", 604_800), ("1h30m", 5_400)],
)
def test_durations(capsys: pytest.CaptureFixture[str], text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert create(capsys, "--valid-for", text).ttl == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["10", "", "abc", "5y", "1.5h", "-1h", "h", "10m "])
def test_bad_durations_are_usage_errors(capsys: pytest.CaptureFixture[str], text: str) -> None:
    err = usage_error(capsys, "token", "create", *CREDENTIAL_FLAGS, f"--valid-for={text}")
    assert "invalid duration" in err


@pytest.mark.parametrize("attribute", ["team", "=red"])
def test_bad_attributes_are_usage_errors(
    capsys: pytest.CaptureFixture[str], attribute: str
) -> None:
    err = usage_error(capsys, "token", "create", *CREDENTIAL_FLAGS, "--attribute", attribute)
    assert "use KEY=VALUE" in err


@pytest.mark.parametrize(
    "argv", [[], ["token"], ["token", "mint"], ["token", "create", "--bogus"]], ids=str
)
def test_bad_commands_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert "usage: lkkit" in usage_error(capsys, *argv)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--join", "--identity", "u"], "room_join needs a room"),
        (["--admin"], "room_admin needs a room"),
        (["--join", "--room", "r"], "needs an identity"),
        (["--sources", "camera,smell"], "unknown publish source 'smell'"),
        (["--sources", ""], "unknown publish source ''"),
        (["--kind", "robot"], "unknown participant kind 'robot'"),
        (["--valid-for", "0s"], "ttl must be at least one second"),
        (["--attribute", "a=1", "--attribute", "a=2"], "given twice"),
    ],
)
def test_invalid_tokens_exit_2(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    status, out, err = run(capsys, "token", "create", *CREDENTIAL_FLAGS, *flags)
    assert (status, out) == (2, "")
    assert err.startswith("lkkit: error: ")
    assert message in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--api-key", "", "--api-secret", SECRET], "api_key must not be empty"),
        (["--api-key", KEY], "give both an API key and a secret"),
        (["--api-secret", SECRET], "give both an API key and a secret"),
        ([], "not set: LIVEKIT_API_KEY, LIVEKIT_API_SECRET"),
    ],
)
def test_missing_credentials_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    status, out, err = run(capsys, "token", "create", *flags)
    assert (status, out) == (2, "")
    assert message in err


# -- token verify ------------------------------------------------------------------------


def test_verify_prints_the_token_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    token = Token(
        identity="user-42",
        attributes={"team": "red"},
        grants=Grants(room_join=True, room="r", kind=ParticipantKind.SIP),
    )
    status, out, err = run(capsys, "token", "verify", *CREDENTIAL_FLAGS, token.sign(CREDENTIALS))
    assert (status, err) == (0, "")
    printed = json.loads(out)
    assert printed["identity"] == "user-42"
    assert printed["grants"]["kind"] == "sip"
    assert printed["attributes"] == {"team": "red"}
    assert Token.model_validate(printed) == token


@pytest.mark.parametrize(
    ("jwt", "message"),
    [
        (Token().sign(Credentials(api_key=KEY, api_secret=SECRET + "-other")), "not signed"),
        (Token().sign(Credentials(api_key="other-key", api_secret=SECRET)), "not signed"),
        ("garbage", "not a LiveKit JWT"),
        (
            pyjwt.encode(
                {"iss": KEY, "exp": int(dt.datetime.now(dt.timezone.utc).timestamp()) - 600},
                SECRET,
                algorithm="HS256",
            ),
            "has expired",
        ),
    ],
    ids=["wrong-secret", "wrong-key", "garbage", "expired"],
)
def test_verify_failures_exit_2(capsys: pytest.CaptureFixture[str], jwt: str, message: str) -> None:
    status, out, err = run(capsys, "token", "verify", *CREDENTIAL_FLAGS, jwt)
    assert (status, out) == (2, "")
    assert err.startswith("lkkit: error: ")
    assert message in err


# -- as a program ------------------------------------------------------------------------


def _python_m(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "lkkit.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_python_m_lkkit_cli_runs() -> None:
    done = _python_m(
        *("token", "create", *CREDENTIAL_FLAGS, "--join", "--room", "r", "--identity", "u")
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert Token.verify(done.stdout.strip(), CREDENTIALS).grants.room == "r"

    failed = _python_m("token", "create", *CREDENTIAL_FLAGS, "--join", "--identity", "u")
    assert (failed.returncode, failed.stdout) == (2, "")
    assert failed.stderr == "lkkit: error: room_join needs a room\n"
