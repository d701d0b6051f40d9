"""Shared test configuration: the asyncio backend (the SDK is asyncio-bound).

The `livekit_server` and `livekit_room` fixtures come from lkkit's own pytest plugin
(`lkkit.testing`), the same way services using lkkit get them.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
