"""Every private part of the LiveKit SDK that lkkit touches, in one place.

lkkit uses a few of the SDK's internals where its public API cannot do the job (the FFI
for cheap audio, the room's raw event for previous metadata values, handles for
release at exit). Nothing else in lkkit reaches past the SDK's public API: an SDK
release that changes one of these breaks here, and `tests/test_sdk_compat.py` names
the part that changed (each entry of `REQUIREMENTS` is one test).

`pyproject.toml` bounds `livekit` below its next minor release for the same reason;
`nox -s tests_latest` runs the suite with the newest SDK release.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.rtc import data_stream as _data_stream
from livekit.rtc._ffi_client import FfiClient
from livekit.rtc._proto import audio_frame_pb2 as proto_audio
from livekit.rtc._proto import ffi_pb2 as proto_ffi
from livekit.rtc._proto import participant_pb2 as proto_participant
from livekit.rtc._proto import video_frame_pb2 as proto_video

from ._exceptions import redact_tokens

__all__ = [
    "CLIENT_PROTOCOL_DATA_STREAM_RPC",
    "REQUIREMENTS",
    "SdkStreamError",
    "client_protocol",
    "dispose_handle",
    "drop_handle",
    "exit_after_native_teardown",
    "ffi_request",
    "handle_id",
    "live_ffi_handles",
    "proto_audio",
    "proto_ffi",
    "proto_participant",
    "proto_video",
    "redact_sdk_logs",
    "retrieve_participant",
    "room_sid_now",
    "room_token",
    "room_was_connected",
    "route_unclaimed_streams",
    "stream_topic_claimed",
    "subscribe_ffi_events",
    "tap_room_events",
    "track_room",
    "update_local_participant",
    "warm_up_ffi",
]

SdkStreamError = _data_stream.StreamError
"""The SDK's data stream error (its module is not re-exported by `livekit.rtc`)."""


# -- the FFI ---------------------------------------------------------------------------


def ffi_request(request: proto_ffi.FfiRequest) -> proto_ffi.FfiResponse:
    """Send one request to the native layer (synchronous; the answer may be an async id)."""
    response: proto_ffi.FfiResponse = FfiClient.instance.request(request)
    return response


def warm_up_ffi() -> None:
    """Load and initialise the native library now (the first session otherwise pays it)."""
    _ = FfiClient.instance


def live_ffi_handles() -> int:
    """How many native handles the SDK's Python objects hold now (for leak checks)."""
    from livekit.rtc import _ffi_client

    gc.collect()  # handles of dead objects are dropped when they are collected
    return len(_ffi_client._live_handles)


def drop_handle(handle: int) -> None:
    """Release a native handle lkkit owns (a received frame's buffer, a stream)."""
    if handle == 0 or FfiClient._ffi_disposed:
        return
    FfiClient.instance._ffi_lib.livekit_ffi_drop_handle(handle)


def subscribe_ffi_events(
    filter_fn: Callable[[proto_ffi.FfiEvent], bool],
    deliver: Callable[[proto_ffi.FfiEvent], None],
) -> Callable[[], None]:
    """Call `deliver(event)` on the running loop's thread for each native event that
    `filter_fn` (run on the FFI callback thread) accepts. Returns the unsubscribe.

    The SDK's FFI queue schedules `queue.put_nowait(event)` on the subscriber's loop;
    replacing that method routes an event straight to its owner, saving a task hop
    per event (the SDK's own streams pay one).
    """
    queue = FfiClient.instance.queue.subscribe(asyncio.get_running_loop(), filter_fn=filter_fn)
    queue.put_nowait = deliver

    def unsubscribe() -> None:
        FfiClient.instance.queue.unsubscribe(queue)

    return unsubscribe


def handle_id(obj: rtc.Room | rtc.Track | rtc.AudioSource | rtc.VideoSource) -> int:
    """The native handle id of an SDK object (a room, a track, a media source)."""
    handle = obj._ffi_handle
    if handle is None:
        raise RuntimeError(f"{type(obj).__name__} has no native handle (not connected?)")
    return int(handle.handle)


def track_room(track: rtc.Track) -> rtc.Room | None:
    """The room a local track is published in, as the SDK knows it: set when the room
    reports the track published, `None` before that and once it is unpublished."""
    room: rtc.Room | None = track._resolve_room()
    return room


def dispose_handle(obj: rtc.AudioSource | rtc.VideoSource) -> None:
    """Release an SDK object's native handle now instead of at garbage collection."""
    obj._ffi_handle.dispose()


class _RedactTokens(logging.Filter):
    """Replaces tokens in the SDK's log records: its native layer logs the server's
    answer to a rejected join, which quotes the token, at WARNING and ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "eyJ" in message:
            record.msg, record.args = redact_tokens(message), None
        return True


_redacting = _RedactTokens()


def redact_sdk_logs() -> None:
    """Keep tokens out of the SDK's log records (idempotent)."""
    sdk_logger = logging.getLogger("livekit")  # livekit.rtc.log's logger
    if _redacting not in sdk_logger.filters:
        sdk_logger.addFilter(_redacting)


NATIVE_TEARDOWN_GRACE_S = 2.0
"""How long after a room is left the interpreter may not exit yet (see below)."""

_last_leave: float | None = None


def exit_after_native_teardown() -> None:
    """A room was just left, or a join just failed: make the interpreter's exit wait
    until `NATIVE_TEARDOWN_GRACE_S` after the last of them.

    The native layer goes on tearing the room's connections down after `disconnect`
    returns. A process that exits during that (the SDK's `atexit` disposal) aborts now
    and then with "panic in a function that cannot unwind" on a tokio worker: 5 of 40
    subprocesses that left and exited at once, with the raw SDK as with lkkit, and
    none of 40 that waited one second on a quiet machine; under CI's load one of 6
    still aborted after one second, hence two. The SDK gives no signal for the end of that
    teardown, so the exit waits out the rest of the grace period; a process that
    exits later than that waits nothing.
    """
    global _last_leave
    if _last_leave is None:
        # Registered after the SDK's own disposal hook, so it runs before it.
        atexit.register(_wait_for_native_teardown)
    _last_leave = time.monotonic()


def _wait_for_native_teardown() -> None:
    if _last_leave is not None:
        time.sleep(max(0.0, _last_leave + NATIVE_TEARDOWN_GRACE_S - time.monotonic()))


# -- the room --------------------------------------------------------------------------


def room_was_connected(room: rtc.Room) -> bool:
    """Whether `room.connect` ever completed (the room got a native handle)."""
    return room._ffi_handle is not None


def room_sid_now(room: rtc.Room) -> str:
    """The room's sid as known now, without waiting (may be empty)."""
    return str(room._info.sid)


def room_token(room: rtc.Room) -> str:
    """The token the room holds now (the server refreshes it)."""
    return room._token or ""


def retrieve_participant(room: rtc.Room, identity: str) -> rtc.Participant | None:
    """The SDK's participant object for `identity` (local or remote), if known."""
    participant: rtc.Participant | None = room._retrieve_participant(identity)
    return participant


RoomEventObserver = Callable[[Any], None]


class _RoomEventTap:
    """One wrapper of a room's `_on_room_event`, shared by every lkkit observer of it.

    Observers see each raw room event just before the SDK applies it (for example the
    metadata a `participants_updated` is about to overwrite). Several lkkit sessions
    attached to one room share the tap; the last one removed restores the room.
    """

    def __init__(self, room: rtc.Room) -> None:
        self.observers: list[RoomEventObserver] = []
        original = room._on_room_event

        def on_room_event(event: Any) -> None:
            for observer in tuple(self.observers):
                observer(event)
            original(event)

        room._on_room_event = on_room_event  # type: ignore[method-assign]


_TAP_ATTRIBUTE = "_lkkit_room_event_tap"


def tap_room_events(room: rtc.Room, observer: RoomEventObserver) -> Callable[[], None]:
    """Call `observer(raw_event)` before the SDK applies each raw room event.
    Returns the function that removes the observer (idempotent)."""
    tap: _RoomEventTap | None = getattr(room, _TAP_ATTRIBUTE, None)
    if tap is None:
        tap = _RoomEventTap(room)
        setattr(room, _TAP_ATTRIBUTE, tap)
    tap.observers.append(observer)
    taps = tap

    def remove() -> None:
        if observer in taps.observers:
            taps.observers.remove(observer)
        if not taps.observers and getattr(room, _TAP_ATTRIBUTE, None) is taps:
            vars(room).pop("_on_room_event", None)
            delattr(room, _TAP_ATTRIBUTE)

    return remove


# -- native streams on any topic ------------------------------------------------------

StreamHandler = Callable[[Any, str], None]
"""The SDK's stream handler: `(reader, sender identity)`."""

_STREAM_OPENED = (
    ("_handle_text_stream_opened", "_text_stream_handlers", True),
    ("_handle_byte_stream_opened", "_byte_stream_handlers", False),
)


def stream_topic_claimed(room: rtc.Room, topic: str) -> bool:
    """Whether the application registered its own SDK stream handler for `topic`."""
    return any(topic in getattr(room, table) for _, table, _ in _STREAM_OPENED)


def route_unclaimed_streams(
    room: rtc.Room, route: Callable[[str, bool, str], StreamHandler | None]
) -> Callable[[], None]:
    """Offer lkkit every native stream whose topic has no handler registered on `room`.

    The SDK hands a stream to the one handler registered for its exact topic and
    disposes of the rest, so "all topics" is impossible through its public API. For a
    stream no one registered, `route(topic, is_text, stream_id)` gives the handler to
    use (or `None`: the SDK disposes of it as before); it is installed for that one
    dispatch and removed. Handlers the application registers keep their topics.
    Returns the function that restores the SDK's dispatch.
    """
    installed: list[str] = []
    for method, table, is_text in _STREAM_OPENED:
        original = getattr(room, method)
        handlers: dict[str, StreamHandler] = getattr(room, table)

        def opened(
            event: Any,
            original: Callable[[Any], None] = original,
            handlers: dict[str, StreamHandler] = handlers,
            is_text: bool = is_text,
        ) -> None:
            info = event.reader.info
            topic = info.topic
            handler = None if topic in handlers else route(topic, is_text, info.stream_id)
            if handler is None:
                original(event)
                return
            handlers[topic] = handler
            try:
                original(event)
            finally:
                if handlers.get(topic) is handler:
                    del handlers[topic]

        setattr(room, method, opened)
        installed.append(method)

    def restore() -> None:
        for method in installed:
            vars(room).pop(method, None)
        installed.clear()

    return restore


# -- participants: RPC protocol and self-updates -----------------------------------------

CLIENT_PROTOCOL_DATA_STREAM_RPC = 1
"""The client protocol from which a participant takes RPC over data streams (no 15 KiB
payload limit); `CLIENT_PROTOCOL_DATA_STREAM_RPC` in livekit-client and rust-sdks."""


def client_protocol(participant: rtc.Participant) -> int:
    """The client protocol a participant announced (0 for old clients). The SDK keeps it
    in the participant's info without a public property."""
    return int(participant._info.client_protocol)


_SELF_UPDATE_FIELDS = ("set_local_metadata", "set_local_name", "set_local_attributes")


async def update_local_participant(
    participant: rtc.LocalParticipant,
    *,
    metadata: str | None = None,
    name: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> str:
    """Update the local participant's metadata, name or attributes (one of them); return
    the native layer's error text, `""` when the server accepted it.

    The SDK's `set_metadata` / `set_name` / `set_attributes` send the same requests but
    drop the answer's `error`, so a refused update (no `canUpdateOwnMetadata`) looks
    like success there.
    """
    request = proto_ffi.FfiRequest()
    handle = participant._ffi_handle.handle
    if metadata is not None:
        field = "set_local_metadata"
        request.set_local_metadata.local_participant_handle = handle
        request.set_local_metadata.metadata = metadata
    elif name is not None:
        field = "set_local_name"
        request.set_local_name.local_participant_handle = handle
        request.set_local_name.name = name
    elif attributes is not None:
        field = "set_local_attributes"
        request.set_local_attributes.local_participant_handle = handle
        for key, value in attributes.items():
            entry = request.set_local_attributes.attributes.add()
            entry.key = key
            entry.value = value
    else:
        raise ValueError("nothing to update")
    queue = FfiClient.instance.queue.subscribe()
    try:
        response = FfiClient.instance.request(request)
        async_id = getattr(response, field).async_id
        event: proto_ffi.FfiEvent = await queue.wait_for(
            lambda e: getattr(e, field).async_id == async_id
        )
    finally:
        FfiClient.instance.queue.unsubscribe(queue)
    return str(getattr(event, field).error)


# -- what the SDK must still have ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One private SDK part lkkit relies on, and how to check it is still there."""

    name: str
    check: Callable[[], bool]


def _has(obj: object, *names: str) -> Callable[[], bool]:
    return lambda: all(hasattr(obj, name) for name in names)


def _room_has(*names: str) -> Callable[[], bool]:
    # Instance attributes are set in Room.__init__; a bare Room needs a loop only to
    # be made, which the test provides.
    def check() -> bool:
        room = rtc.Room()
        return all(hasattr(room, name) for name in names)

    return check


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "Participant._info (owned ParticipantInfo) with client_protocol",
        lambda: (
            "self._info" in _init_of(rtc.Participant)
            and "client_protocol" in proto_participant.ParticipantInfo.DESCRIPTOR.fields_by_name
        ),
    ),
    Requirement(
        "LocalParticipant._ffi_handle; set_local_metadata/name/attributes callbacks with error",
        lambda: (
            "_ffi_handle" in _init_of(rtc.Participant)
            and all(_callback_has_error(name) for name in _SELF_UPDATE_FIELDS)
        ),
    ),
    Requirement("livekit.rtc._ffi_client.FfiClient.instance", _has(FfiClient, "instance")),
    Requirement("FfiClient._ffi_disposed", _has(FfiClient, "_ffi_disposed")),
    Requirement(
        "FfiClient.instance._ffi_lib.livekit_ffi_drop_handle",
        lambda: hasattr(FfiClient.instance._ffi_lib, "livekit_ffi_drop_handle"),
    ),
    Requirement(
        "FfiClient.instance.queue.subscribe(loop, filter_fn=) / unsubscribe",
        lambda: all(
            hasattr(FfiClient.instance.queue, name) for name in ("subscribe", "unsubscribe")
        ),
    ),
    Requirement(
        "FfiQueue delivers through queue.put_nowait (patched by lkkit)",
        lambda: "queue.put_nowait" in _source_of(type(FfiClient.instance.queue).put),
    ),
    Requirement(
        "rtc._proto.ffi_pb2: capture_audio_frame and new_audio_stream requests",
        lambda: all(
            name in proto_ffi.FfiRequest.DESCRIPTOR.fields_by_name
            for name in ("capture_audio_frame", "new_audio_stream")
        ),
    ),
    Requirement(
        "rtc._proto.audio_frame_pb2: CaptureAudioFrameRequest.request_async_id",
        lambda: (
            "request_async_id" in proto_audio.CaptureAudioFrameRequest.DESCRIPTOR.fields_by_name
        ),
    ),
    Requirement(
        "rtc._proto.audio_frame_pb2: AudioStreamEvent frame_received / eos",
        lambda: all(
            name in proto_audio.AudioStreamEvent.DESCRIPTOR.fields_by_name
            for name in ("frame_received", "eos", "stream_handle")
        ),
    ),
    Requirement(
        "rtc._proto.participant_pb2.ParticipantPermission",
        _has(proto_participant, "ParticipantPermission"),
    ),
    Requirement(
        "Room: _ffi_handle, _info, _token, _on_room_event, _retrieve_participant",
        _room_has("_ffi_handle", "_info", "_token", "_on_room_event", "_retrieve_participant"),
    ),
    Requirement(
        "Track._ffi_handle (native track handle)", lambda: "_ffi_handle" in _init_of(rtc.Track)
    ),
    Requirement(
        "Track._resolve_room() (the room a local track is published in)",
        _has(rtc.Track, "_resolve_room"),
    ),
    Requirement(
        "AudioSource._ffi_handle (native source handle)",
        lambda: "_ffi_handle" in _init_of(rtc.AudioSource),
    ),
    Requirement("livekit.rtc.data_stream.StreamError", _has(_data_stream, "StreamError")),
    Requirement(
        "Room._handle_{text,byte}_stream_opened and _{text,byte}_stream_handlers, "
        "called through self by Room._on_room_event",
        lambda: (
            _room_has(*(name for pair in _STREAM_OPENED for name in pair[:2]))()
            and all(
                f"self.{method}(" in _source_of(rtc.Room._on_room_event)
                for method, _, _ in _STREAM_OPENED
            )
        ),
    ),
)
"""Each private SDK part lkkit relies on; `tests/test_sdk_compat.py` checks each one."""


def _source_of(obj: object) -> str:
    import inspect

    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def _callback_has_error(name: str) -> bool:
    field = proto_ffi.FfiEvent.DESCRIPTOR.fields_by_name.get(name)
    message = field.message_type if field is not None else None
    return message is not None and "error" in message.fields_by_name


def _init_of(cls: type) -> str:
    return _source_of(vars(cls)["__init__"])
