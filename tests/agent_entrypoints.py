"""Module-level agent functions for job-process tests: a job process imports them by name."""

from __future__ import annotations

import os
from pathlib import Path

from lkkit.agents import JobContext

# Each job process appends its pid here when it prewarms.
PREWARM_LOG = Path(os.environ.get("LKKIT_TEST_PREWARM_LOG", "/tmp/lkkit-prewarm.log"))


def prewarm() -> int:
    with PREWARM_LOG.open("a") as log:
        log.write(f"{os.getpid()}\n")
    return os.getpid()


async def report_pid(ctx: JobContext) -> None:
    """Tells the room which process runs the job, and that prewarm's result came along."""
    await ctx.session.local_participant.sdk.set_attributes(
        {"pid": str(os.getpid()), "userdata": str(ctx.userdata)}
    )
