"""The agent protocol codec and the agents' value checks: pure unit tests, no server."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from livekit.protocol import agent as proto_agent

import lkkit
from lkkit.agents import Job, JobRequest, JobType, ProcessPoolOptions
from lkkit.agents import _protocol as wire


def worker_message(frame: bytes) -> proto_agent.WorkerMessage:
    message = proto_agent.WorkerMessage()
    message.ParseFromString(frame)
    return message


def test_the_agent_endpoint_of_a_server_url() -> None:
    assert wire.agent_url("ws://127.0.0.1:7880") == "ws://127.0.0.1:7880/agent"
    assert wire.agent_url("http://host:7880/") == "ws://host:7880/agent"
    assert wire.agent_url("https://example.livekit.cloud") == "wss://example.livekit.cloud/agent"


def test_worker_messages_carry_what_was_given() -> None:
    register = worker_message(wire.register(1, "helper", "1.0", 3)).register
    assert (register.type, register.agent_name, register.version) == (1, "helper", "1.0")
    accepted = worker_message(
        wire.availability("AJ_1", available=True, identity="a", attributes={"k": "v"})
    ).availability
    assert (accepted.job_id, accepted.available, accepted.participant_identity) == (
        "AJ_1",
        True,
        "a",
    )
    assert dict(accepted.participant_attributes) == {"k": "v"}
    refused = worker_message(wire.availability("AJ_2", available=False, identity="x"))
    assert not refused.availability.available
    assert refused.availability.participant_identity == ""  # nothing leaks into a refusal
    status = worker_message(wire.worker_status(full=True, load=0.5, job_count=3)).update_worker
    assert (status.status, status.load, status.job_count) == (
        proto_agent.WorkerStatus.WS_FULL,
        0.5,
        3,
    )
    failed = worker_message(wire.job_status("AJ_1", proto_agent.JobStatus.JS_FAILED, "boom"))
    assert (failed.update_job.job_id, failed.update_job.error) == ("AJ_1", "boom")


def test_a_server_message_decodes_and_anything_else_is_a_protocol_error() -> None:
    message = proto_agent.ServerMessage()
    message.register.worker_id = "AW_1"
    assert wire.decode_server_message(message.SerializeToString()).register.worker_id == "AW_1"
    with pytest.raises(lkkit.ProtocolError):
        wire.decode_server_message(b"")  # a message with nothing in it
    with pytest.raises(lkkit.ProtocolError):
        wire.decode_server_message(b"\xff\xff\xff\xff")


@given(st.binary(max_size=512))
def test_no_frame_crashes_the_decoder(frame: bytes) -> None:
    with contextlib.suppress(lkkit.ProtocolError):  # the only error a frame may cause
        wire.decode_server_message(frame)


def test_job_values() -> None:
    proto = proto_agent.Job(id="AJ_1", type=proto_agent.JobType.JT_PUBLISHER, agent_name="x")
    proto.room.name = "r"
    proto.participant.identity = "alice"
    job = Job._from_proto(proto)
    assert (job.type, job.room_name, job.participant_identity) == (JobType.PUBLISHER, "r", "alice")
    request = JobRequest(job)
    with pytest.raises(lkkit.ConfigurationError):
        request.accept(attributes={"k": 1})  # type: ignore[dict-item]
    assert not request.answered  # a refused accept leaves it unanswered
    request.reject()
    with pytest.raises(lkkit.SessionStateError):
        request.accept()


def test_bad_values_are_refused() -> None:
    with pytest.raises(lkkit.ConfigurationError):
        ProcessPoolOptions(idle_processes=-1)
    with pytest.raises(lkkit.ConfigurationError):
        ProcessPoolOptions(jobs_per_process=0)
    with pytest.raises(lkkit.InvalidGrant):
        lkkit.RoomAgent("")
    with pytest.raises(lkkit.InvalidGrant):
        lkkit.RoomAgent("helper", metadata=3)  # type: ignore[arg-type]


def test_lkkit_agent_run_refuses_a_bad_target() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lkkit",
            "agent",
            "run",
            "no_colon",
            "--url",
            "ws://127.0.0.1:1",
            "--api-key",
            "k",
            "--api-secret",
            "s" * 32,
        ],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 2
    assert b"MODULE:ENTRYPOINT" in result.stderr
    assert b"s" * 32 not in result.stderr + result.stdout
