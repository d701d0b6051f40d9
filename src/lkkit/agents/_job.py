"""Jobs: what the server asks a worker to do, the request a worker accepts or rejects,
and the context an accepted job's entrypoint runs with."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from livekit.protocol import agent as proto_agent

from .._exceptions import ConfigurationError, SessionStateError
from .._types import ParticipantKind

if TYPE_CHECKING:
    from .._participants import RemoteParticipant
    from .._session import Session

__all__ = ["Job", "JobContext", "JobRequest", "JobType"]

logger = logging.getLogger("lkkit.agents")


class JobType(str, enum.Enum):
    """When the server dispatches a job to a worker of this type."""

    ROOM = "room"
    """One job per room, when the room is created (or an explicit dispatch is added)."""
    PUBLISHER = "publisher"
    """One job per participant, when it publishes its first track."""
    PARTICIPANT = "participant"
    """One job per participant, when it joins."""


_JOB_TYPE_TO_PROTO = {
    JobType.ROOM: proto_agent.JobType.JT_ROOM,
    JobType.PUBLISHER: proto_agent.JobType.JT_PUBLISHER,
    JobType.PARTICIPANT: proto_agent.JobType.JT_PARTICIPANT,
}
_JOB_TYPE_FROM_PROTO = {v: k for k, v in _JOB_TYPE_TO_PROTO.items()}


def job_type_to_proto(job_type: JobType) -> int:
    return int(_JOB_TYPE_TO_PROTO[JobType(job_type)])


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the server describes it.

    Attributes:
        id: the server's job id (`AJ_...`).
        type: the [`JobType`][lkkit.agents.JobType].
        room_name: the room the agent is to join.
        room_sid: the room's sid.
        participant_identity: the participant a PUBLISHER or PARTICIPANT job is for;
            `None` for a ROOM job.
        agent_name: the agent name it was dispatched to (`""` for automatic dispatch).
        metadata: the dispatch's metadata (`""` for automatic dispatch).
        dispatch_id: the explicit dispatch's id (`""` for automatic dispatch).
    """

    id: str
    type: JobType
    room_name: str
    room_sid: str
    participant_identity: str | None
    agent_name: str
    metadata: str
    dispatch_id: str

    @classmethod
    def _from_proto(cls, job: proto_agent.Job) -> Job:
        identity = job.participant.identity if job.HasField("participant") else ""
        return cls(
            id=job.id,
            type=_JOB_TYPE_FROM_PROTO.get(job.type, JobType.ROOM),
            room_name=job.room.name,
            room_sid=job.room.sid,
            participant_identity=identity or None,
            agent_name=job.agent_name,
            metadata=job.metadata,
            dispatch_id=job.dispatch_id,
        )


@dataclass(frozen=True, slots=True)
class _Acceptance:
    identity: str
    name: str
    metadata: str
    attributes: Mapping[str, str]


class JobRequest:
    """A job the server offers this worker; the request handler answers it with
    [`accept`][lkkit.agents.JobRequest.accept] or
    [`reject`][lkkit.agents.JobRequest.reject].

    A handler that answers neither (or raises, or takes longer than the worker's
    `request_timeout`) refuses the job, which then goes to another worker.
    """

    def __init__(self, job: Job) -> None:
        self._job = job
        self._answer: _Acceptance | bool | None = None

    @property
    def job(self) -> Job:
        return self._job

    @property
    def answered(self) -> bool:
        return self._answer is not None

    def accept(
        self,
        *,
        identity: str | None = None,
        name: str = "",
        metadata: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Take the job. The agent joins as `identity` (default `agent-<job id>`).

        Raises:
            SessionStateError: the request was already answered.
            ConfigurationError: an empty identity, or attributes that are not strings.
        """
        self._check_unanswered()
        chosen = f"agent-{self._job.id}" if identity is None else identity
        if not isinstance(chosen, str) or not chosen:
            raise ConfigurationError("an accepted job needs a non-empty identity")
        values = dict(attributes or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            raise ConfigurationError("attributes must map str to str")
        self._answer = _Acceptance(chosen, name, metadata, MappingProxyType(values))

    def reject(self) -> None:
        """Refuse the job: the server offers it to another worker.

        Raises:
            SessionStateError: the request was already answered.
        """
        self._check_unanswered()
        self._answer = False

    def _check_unanswered(self) -> None:
        if self._answer is not None:
            raise SessionStateError("this job request was already answered")

    def __repr__(self) -> str:
        return f"<JobRequest {self._job.id} {self._job.type.value} room={self._job.room_name!r}>"


ShutdownCallback = Callable[[], "Awaitable[object] | object"]


@dataclass
class _Ending:
    reason: str = ""
    error: str = ""
    event: asyncio.Event = field(default_factory=asyncio.Event)


class JobContext:
    """What a job's entrypoint gets: the job, an lkkit [`Session`][lkkit.Session] in
    its room, the worker's prewarmed `userdata`, and the job's end.

    ```python
    async def entrypoint(ctx: lkkit.agents.JobContext) -> None:
        user = await ctx.wait_for_participant()
        await ctx.session.data.send(f"hello {user.identity}", topic="chat")
    ```

    The job goes on after the entrypoint returns (its handlers keep running) until
    [`shutdown`][lkkit.agents.JobContext.shutdown], the room closes, the agent is
    removed, or the server ends it. An entrypoint that raises ends the job as failed.
    Shutdown callbacks run in every case, before the worker reports the end and the
    agent leaves.
    """

    def __init__(
        self,
        job: Job,
        session: Session,
        userdata: Any,
        *,
        requested_at: float = 0.0,
        assigned_at: float = 0.0,
        connected_at: float = 0.0,
    ) -> None:
        self._job = job
        self._session = session
        self._userdata = userdata
        self.requested_at = requested_at
        """`time.monotonic()` when the server's offer of this job reached the worker."""
        self.assigned_at = assigned_at
        """`time.monotonic()` when the job's assignment (and token) reached the worker."""
        self.connected_at = connected_at
        """`time.monotonic()` when the job's session had joined the room."""
        self._callbacks: list[ShutdownCallback] = []
        self._ending = _Ending()

    @property
    def job(self) -> Job:
        return self._job

    @property
    def session(self) -> Session:
        """The agent's session in the job's room (connected)."""
        return self._session

    @property
    def room_name(self) -> str:
        return self._job.room_name

    @property
    def userdata(self) -> Any:
        """What the worker's `prewarm` returned (`None` without one)."""
        return self._userdata

    @property
    def participant(self) -> RemoteParticipant | None:
        """The participant a PUBLISHER or PARTICIPANT job is for, once this session
        knows it (see [`wait_for_participant`][lkkit.agents.JobContext.wait_for_participant])."""
        identity = self._job.participant_identity
        if identity is None:
            return None
        return self._session.remote_participants.get(identity)

    async def wait_for_participant(
        self, identity: str | None = None, *, kind: ParticipantKind | None = None
    ) -> RemoteParticipant:
        """The job's participant (PUBLISHER and PARTICIPANT jobs), or else the first
        remote participant with `identity` and of `kind` (standard users by default)."""
        if identity is None and self._job.participant_identity is not None:
            identity = self._job.participant_identity
        if identity is None and kind is None:
            kind = ParticipantKind.STANDARD
        return await self._session.wait_for_participant(identity, kind=kind)

    def add_shutdown_callback(self, callback: ShutdownCallback) -> None:
        """Run `callback` (sync or async) once when the job ends, whichever way."""
        if self._ending.event.is_set():
            raise SessionStateError("the job has already ended")
        self._callbacks.append(callback)

    def shutdown(self, reason: str = "") -> None:
        """End the job: its shutdown callbacks run, the worker reports it done, and
        the agent leaves the room. Returns at once."""
        self._end(reason)

    @property
    def ended(self) -> bool:
        return self._ending.event.is_set()

    def _end(self, reason: str, error: str = "") -> None:
        if not self._ending.event.is_set():
            self._ending.reason = reason
            self._ending.error = error
            self._ending.event.set()

    async def _run_callbacks(self) -> None:
        for callback in self._callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("job %s: shutdown callback %r raised", self._job.id, callback)

    def __repr__(self) -> str:
        return f"<JobContext {self._job.id} room={self._job.room_name!r}>"
