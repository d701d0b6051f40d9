"""Agent workers: lkkit's own worker on LiveKit's agent protocol.

```python
import lkkit
from lkkit.agents import JobContext, Worker

async def entrypoint(ctx: JobContext) -> None:
    user = await ctx.wait_for_participant()
    await ctx.session.data.send(f"hello {user.identity}", topic="chat")

asyncio.run(Worker(entrypoint).run())   # LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET
```

Jobs run in-process, as tasks of the worker's event loop, each with an lkkit
[`Session`][lkkit.Session]; or, with `processes=ProcessPoolOptions(...)`, in prewarmed
child processes. See the agents page of the docs.
"""

from .._exceptions import ProtocolError, WorkerError
from ._job import Job, JobContext, JobRequest, JobType
from ._pool import ProcessPoolOptions
from ._worker import Worker

__all__ = [
    "Job",
    "JobContext",
    "JobRequest",
    "JobType",
    "ProcessPoolOptions",
    "ProtocolError",
    "Worker",
    "WorkerError",
]
