"""The private SDK parts lkkit relies on are all still there (`lkkit._sdk_compat`).

An SDK release that renames or removes one fails here, naming the part, instead of
somewhere deep in a session."""

from __future__ import annotations

import pathlib
import re

import pytest

import lkkit
from lkkit._sdk_compat import REQUIREMENTS, Requirement

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=lambda r: r.name)
async def test_the_sdk_still_has(requirement: Requirement) -> None:
    # Async: some checks make SDK objects that need a running loop.
    assert requirement.check(), (
        f"the LiveKit SDK no longer has {requirement.name}, which lkkit relies on; "
        "adapt lkkit/_sdk_compat.py to this SDK release"
    )


def test_no_private_sdk_access_outside_the_compat_module() -> None:
    """Every private SDK attribute lkkit touches goes through `_sdk_compat`."""
    root = pathlib.Path(lkkit.__file__).parent
    private = re.compile(
        r"livekit\.rtc\._|rtc\._|_ffi_handle|_ffi_client|FfiClient|_on_room_event"
        r"|_retrieve_participant|_resolve_room|\._info\b|room\._token"
    )
    offenders = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for path in root.rglob("*.py")
        if path.name != "_sdk_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == []
