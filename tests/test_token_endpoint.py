"""The token endpoint example (examples/token_server.py) against the real server: a
logged-in user gets a least-privilege, short-lived token for a scene's room and joins
with it as themselves; strangers and unknown scenes get errors, not tokens."""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import lkkit
from lkkit.testing import LiveKitRoom

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parent.parent / "examples" / "token_server.py"


def token_server() -> ModuleType:
    spec = importlib.util.spec_from_file_location("token_server", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["token_server"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


async def test_a_logged_in_user_joins_a_scene_with_the_token(livekit_room: LiveKitRoom) -> None:
    example = token_server()
    users = {"session-ada": example.User("u-1", "Ada")}
    app = example.make_app(livekit_room.url, livekit_room.credentials, users, frozenset({"7"}))
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        ada = {"Authorization": "Bearer session-ada"}
        async with http.get(server.make_url("/token?scene=7"), headers=ada) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            body = await response.json()
        for headers, query, status in (
            ({}, "scene=7", 401),  # not logged in
            ({"Authorization": "Bearer nobody"}, "scene=7", 401),
            (ada, "scene=8", 404),  # no such scene
        ):
            async with http.get(server.make_url(f"/token?{query}"), headers=headers) as answer:
                assert answer.status == status
                assert "token" not in await answer.text()

    assert (body["url"], body["room"]) == (livekit_room.url, "scene-7")
    token = lkkit.Token.verify(body["token"], livekit_room.credentials)
    assert (token.identity, token.name) == ("u-1", "Ada")
    assert token.ttl == timedelta(minutes=10)
    grants = token.grants
    assert (grants.room_join, grants.room) == (True, "scene-7")
    assert grants.can_publish_sources == (lkkit.TrackSource.MICROPHONE,)
    admin = (grants.room_admin, grants.room_create, grants.room_list, grants.room_record)
    assert admin == (False, False, False, False)
    assert (grants.can_update_own_metadata, grants.hidden) == (False, False)

    async with lkkit.connect(body["url"], body["token"]) as session:
        assert session.room_name == "scene-7"
        assert session.local_participant.identity == "u-1"
        assert session.local_participant.name == "Ada"
        async with session.audio.publish("mic"):
            pass  # the microphone is allowed
        with pytest.raises(lkkit.PublishNotAllowed):
            async with session.video.publish("cam", width=64, height=48):
                pass  # the camera is not
