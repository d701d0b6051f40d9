"""`LiveKitRoom`: one test's room on a local server (used by the pytest plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._session import ConnectOptions, Session, connect
from .._tokens import Credentials, Grants, Token
from ._server import LocalLiveKitServer

if TYPE_CHECKING:
    from ..agents import Worker
    from ..agents._worker import Entrypoint

__all__ = ["LiveKitRoom"]


class LiveKitRoom:
    """One test's room on the shared server: mint tokens and join sessions.

    Every session joined here is closed when the test ends.
    """

    def __init__(self, server: LocalLiveKitServer, name: str) -> None:
        self.server = server
        self.name = name
        self._sessions: list[Session] = []

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def credentials(self) -> Credentials:
        return self.server.credentials

    def token(
        self,
        identity: str,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
        room: str | None = None,
        **grants: Any,
    ) -> str:
        """A signed join token for this room; `grants` override [`Grants`][lkkit.Grants] fields."""
        grant_fields: dict[str, Any] = {"room_join": True, "room": room or self.name, **grants}
        token = Token(
            identity=identity,
            name=name,
            metadata=metadata,
            attributes=attributes or {},
            grants=Grants(**grant_fields),
        )
        return token.sign(self.credentials)

    async def join(
        self,
        identity: str,
        *,
        options: ConnectOptions | None = None,
        name: str | None = None,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
        **grants: Any,
    ) -> Session:
        """Connect a session as `identity` to this room; it is closed at teardown."""
        token = self.token(identity, name=name, metadata=metadata, attributes=attributes, **grants)
        session = connect(self.url, token, options)
        await session.__aenter__()
        self._sessions.append(session)
        return session

    def worker(self, entrypoint: Entrypoint, **options: Any) -> Worker:
        """An agent worker for this server (`lkkit.agents.Worker`), not started: use
        it as `async with room.worker(entrypoint) as worker:`, then `join()` a user.

        The room does not exist until someone joins (or it is created), so a worker
        started first gets its job, as in production. `options` are the `Worker`'s;
        the drain and shutdown timeouts default to 2 s, short for tests.
        """
        from ..agents import Worker

        options.setdefault("drain_timeout", 2.0)
        options.setdefault("shutdown_timeout", 2.0)
        return Worker(entrypoint, url=self.url, credentials=self.credentials, **options)

    async def aclose(self) -> None:
        for session in reversed(self._sessions):
            await session.aclose()
        self._sessions.clear()
