"""Checks of the arguments of data messages, shared by sessions and the server API, so
the same bad input gets the same error everywhere."""

from __future__ import annotations

from collections.abc import Iterable

from .._exceptions import InvalidDataArgument
from ._types import MAX_TOPIC_BYTES

__all__ = ["check_topic", "destinations", "payload_bytes", "positive", "topics"]


def payload_bytes(payload: object) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)  # a snapshot: the caller may reuse its buffer at once
    raise InvalidDataArgument(
        f"a data payload must be bytes, bytearray, memoryview or str, not {type(payload).__name__}"
    )


def check_topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise InvalidDataArgument(f"topic must be a str, not {type(topic).__name__}")
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise InvalidDataArgument(f"topic must be at most {MAX_TOPIC_BYTES} UTF-8 bytes")
    return topic


def destinations(to: object) -> tuple[str, ...] | None:
    if to is None:
        return None
    if isinstance(to, (str, bytes, bytearray)) or not isinstance(to, Iterable):
        raise InvalidDataArgument(
            f"`to` must be an iterable of identities (a list, say) or None, not {type(to).__name__}"
        )
    identities: list[str] = []
    for identity in to:
        if not isinstance(identity, str) or not identity:
            raise InvalidDataArgument(
                f"every destination must be a non-empty identity str, got {identity!r}"
            )
        if identity not in identities:
            identities.append(identity)
    if not identities:
        raise InvalidDataArgument(
            "`to` is empty; LiveKit would send to everyone. Use to=None for everyone."
        )
    return tuple(identities)


def topics(topic: object) -> frozenset[str] | None:
    if topic is None:
        return None
    if isinstance(topic, str):
        return frozenset((check_topic(topic),))
    if isinstance(topic, (bytes, bytearray)) or not isinstance(topic, Iterable):
        raise InvalidDataArgument(
            f"topic must be a str, an iterable of str, or None, not {type(topic).__name__}"
        )
    topics = frozenset(check_topic(t) for t in topic)
    if not topics:
        raise InvalidDataArgument("an empty topic collection would receive nothing")
    return topics


def positive(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise InvalidDataArgument(f"{name} must be a positive int, got {value!r}")
    return value
