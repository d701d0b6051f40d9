"""Shared test configuration: the asyncio backend (the SDK is asyncio-bound) and the
hypothesis profile.

The `livekit_server` and `livekit_room` fixtures come from lkkit's own pytest plugin
(`lkkit.testing`), the same way services using lkkit get them.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

# Property tests assert what an example does, not how fast: no per-example deadline,
# which a stall on a loaded CI machine would trip.
settings.register_profile("lkkit", deadline=None)
settings.load_profile("lkkit")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
