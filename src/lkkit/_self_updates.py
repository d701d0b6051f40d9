"""The local participant updating its own metadata, name and attributes.

The server applies an update only when the token grants `canUpdateOwnMetadata`;
otherwise it answers `NotAllowed`, which the SDK drops (its `set_metadata` returns as if
it had worked). lkkit reads the answer and raises
[`ParticipantUpdateDenied`][lkkit.ParticipantUpdateDenied]. Other participants see an
accepted update as [`ParticipantMetadataChanged`][lkkit.ParticipantMetadataChanged],
[`ParticipantNameChanged`][lkkit.ParticipantNameChanged] or
[`ParticipantAttributesChanged`][lkkit.ParticipantAttributesChanged].
"""

from __future__ import annotations

from collections.abc import Mapping

from ._core import SessionCore
from ._exceptions import InvalidParticipantUpdate, participant_update_error
from ._sdk_compat import update_local_participant

__all__ = ["set_attributes", "set_metadata", "set_name"]


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidParticipantUpdate(f"{what} is a str, got {type(value).__name__}")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidParticipantUpdate(f"{what} cannot be encoded as UTF-8: {exc}") from None
    return value


async def _apply(
    core: SessionCore,
    *,
    metadata: str | None = None,
    name: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> None:
    participant = core.require_connected().local_participant
    error = await update_local_participant(
        participant, metadata=metadata, name=name, attributes=attributes
    )
    if error:
        raise participant_update_error(error)


async def set_metadata(core: SessionCore, metadata: str) -> None:
    await _apply(core, metadata=_check_str(metadata, "metadata"))


async def set_name(core: SessionCore, name: str) -> None:
    await _apply(core, name=_check_str(name, "a name"))


async def set_attributes(core: SessionCore, attributes: Mapping[str, str]) -> None:
    if not isinstance(attributes, Mapping):
        raise InvalidParticipantUpdate(
            f"attributes are a mapping of str to str, got {type(attributes).__name__}"
        )
    checked = {
        _check_str(key, "an attribute key"): _check_str(value, f"attribute {key!r}")
        for key, value in attributes.items()
    }
    await _apply(core, attributes=checked)
