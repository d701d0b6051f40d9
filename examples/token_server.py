"""A token endpoint: the small web service a LiveKit app's backend runs so that its
logged-in users can join (SPEC: identity = user id, name = nickname, room = the scene's
room; one token per scene).

    LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... \\
        python examples/token_server.py
    curl -H "Authorization: Bearer session-ada" "http://127.0.0.1:8080/token?scene=7"

Each token is least privilege: it joins one room, may publish the microphone and data
and subscribe, nothing else (no camera, no admin, no metadata updates), and lives 10
minutes (enough to join: the server refreshes the token of a connected participant).
Authentication is a stand-in: a real app checks its own session cookie or bearer token
where `authenticate` looks in a dict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

import lkkit

TOKEN_TTL = timedelta(minutes=10)


@dataclass(frozen=True)
class User:
    id: str
    nickname: str


def scene_room(scene: str) -> str:
    """The LiveKit room of a scene: one room (and one token) per scene."""
    return f"scene-{scene}"


def make_app(
    livekit_url: str,
    credentials: lkkit.Credentials,
    sessions: Mapping[str, User],
    scenes: frozenset[str],
) -> web.Application:
    """The token service: `GET /token?scene=ID` with `Authorization: Bearer SESSION`."""

    def authenticate(request: web.Request) -> User:
        scheme, _, session = request.headers.get("Authorization", "").partition(" ")
        user = sessions.get(session) if scheme.lower() == "bearer" else None
        if user is None:
            raise web.HTTPUnauthorized(text="log in first")
        return user

    async def token(request: web.Request) -> web.Response:
        user = authenticate(request)
        scene = request.query.get("scene", "")
        if scene not in scenes:
            raise web.HTTPNotFound(text=f"no scene {scene!r}")
        grants = lkkit.Grants(
            room_join=True,
            room=scene_room(scene),
            can_publish=True,
            can_publish_sources=(lkkit.TrackSource.MICROPHONE,),
            can_publish_data=True,
            can_subscribe=True,
        )
        jwt = lkkit.Token(identity=user.id, name=user.nickname, grants=grants, ttl=TOKEN_TTL).sign(
            credentials
        )
        body = {"url": livekit_url, "token": jwt, "room": scene_room(scene)}
        # Tokens are credentials: never cached by a browser or a proxy.
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/token", token)
    return app


def main() -> None:
    credentials = lkkit.Credentials.from_env()
    sessions = json.loads(os.environ.get("DEMO_SESSIONS", '{"session-ada": ["u-1", "Ada"]}'))
    users = {session: User(*user) for session, user in sessions.items()}
    app = make_app(os.environ["LIVEKIT_URL"], credentials, users, frozenset({"7"}))
    web.run_app(app, host="127.0.0.1", port=8080)


if __name__ == "__main__":
    main()
