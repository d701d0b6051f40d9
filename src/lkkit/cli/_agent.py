"""`lkkit agent run MODULE:ENTRYPOINT` and `lkkit agent dispatch ROOM AGENT_NAME`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from typing import Any

from .._exceptions import ConfigurationError
from ._common import add_url as _add_url
from ._common import url as _url
from ._token import _add_credentials, _credentials

__all__ = ["register"]

_JOB_TYPES = ("room", "publisher", "participant")


def _load(target: str) -> Any:
    """`package.module:name` -> the object (the current folder is importable)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"expected MODULE:ENTRYPOINT, got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"{module_name!r} has no {attribute!r}") from None


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = commands.add_parser("agent", help="run agent workers, dispatch agents")
    actions = agent.add_subparsers(dest="action", required=True, metavar="ACTION")

    run = actions.add_parser(
        "run",
        help="run a worker that serves jobs with an entrypoint",
        description="Run an agent worker until SIGTERM or Ctrl-C, then drain. Example: "
        "lkkit agent run myagents.echo:entrypoint --agent-name echo --max-jobs 20",
    )
    run.add_argument("entrypoint", metavar="MODULE:ENTRYPOINT")
    _add_url(run)
    _add_credentials(run)
    run.add_argument("--job-type", choices=_JOB_TYPES, default="room")
    run.add_argument("--agent-name", default="", help="only explicit dispatches to this name")
    run.add_argument("--max-jobs", type=int, default=None, help="jobs at once (default: no limit)")
    run.add_argument("--request-handler", metavar="MODULE:FUNCTION", help="accepts or rejects")
    run.add_argument("--prewarm", metavar="MODULE:FUNCTION", help="runs once before registering")
    run.add_argument("--health-port", type=int, default=None, help="serve GET / on this port")
    run.add_argument("--health-host", default="127.0.0.1")
    run.add_argument("--drain-timeout", type=float, default=60.0)
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(handler=_run)

    dispatch = actions.add_parser(
        "dispatch",
        help="dispatch an agent to a room",
        description="Create an explicit dispatch (the room is created if needed). "
        'Example: lkkit agent dispatch my-room echo --metadata \'{"topic": "chat"}\'',
    )
    dispatch.add_argument("room")
    dispatch.add_argument("agent_name", metavar="AGENT_NAME")
    dispatch.add_argument("--metadata", default="")
    _add_url(dispatch)
    _add_credentials(dispatch)
    dispatch.set_defaults(handler=_dispatch)


def _run(args: argparse.Namespace) -> int:
    from ..agents import JobType, Worker

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    worker = Worker(
        _load(args.entrypoint),
        url=_url(args),
        credentials=_credentials(args),
        request_handler=_load(args.request_handler) if args.request_handler else None,
        prewarm=_load(args.prewarm) if args.prewarm else None,
        job_type=JobType(args.job_type),
        agent_name=args.agent_name,
        max_jobs=args.max_jobs,
        health_port=args.health_port,
        health_host=args.health_host,
        drain_timeout=args.drain_timeout,
    )
    asyncio.run(worker.run())
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    from .._admin import RoomAdmin

    async def create() -> str:
        async with RoomAdmin(_url(args), _credentials(args)) as admin:
            dispatch = await admin.create_dispatch(
                args.room, args.agent_name, metadata=args.metadata
            )
        return dispatch.id

    print(asyncio.run(create()))
    return 0
