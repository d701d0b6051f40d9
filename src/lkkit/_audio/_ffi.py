"""Shared FFI event routing for lkkit's media: one subscription per event loop.

The SDK delivers every native event to every subscriber of its FFI queue: the
callback thread runs each subscriber's filter on each event, then schedules a
wake-up on the subscriber's loop. One subscription per publisher or stream would
make every capture and every received frame cost one filter call per open
publisher or stream (quadratic in the number of tracks), plus an `asyncio.Queue`
hop. Instead lkkit keeps, per event loop, one subscription for capture callbacks
and one each for received audio and received video, each filtering on one
`WhichOneof` plus a set or dict lookup, and routes an event straight to its owner
on the loop thread: a capture's future, or a stream's `_on_native_event`.

The subscriptions live while at least one publisher or stream uses them
(reference counted): nothing is left subscribed when the last one closes.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal, Protocol

from .._exceptions import NotConnected
from .._sdk_compat import (
    drop_handle,
    ffi_request,
    proto_ffi,
    subscribe_ffi_events,
)

__all__ = ["CaptureRouter", "StreamRouter", "capture_router", "stream_router"]

_RETIRED_MAX = 256


class _Subscription:
    """One FFI queue subscription whose deliveries call `deliver` on the loop thread."""

    __slots__ = ("_deliver", "_filter", "_unsubscribe", "_users")

    def __init__(
        self,
        filter_fn: Callable[[proto_ffi.FfiEvent], bool],
        deliver: Callable[[proto_ffi.FfiEvent], None],
    ) -> None:
        # No reference to the loop: the routers are values of a weak dict keyed by it.
        self._filter = filter_fn
        self._deliver = deliver
        self._unsubscribe: Callable[[], None] | None = None
        self._users = 0

    def acquire(self) -> None:
        self._users += 1
        if self._unsubscribe is None:
            self._unsubscribe = subscribe_ffi_events(self._filter, self._deliver)

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class CaptureRouter:
    """Completions of `capture_audio_frame` requests, by async id, for one loop."""

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[str]] = {}
        self._requesting = 0
        self._subscription = _Subscription(self._wanted, self._deliver)

    def acquire(self) -> None:
        """A publisher opened: keep the subscription."""
        self._subscription.acquire()

    def release(self) -> None:
        """A publisher closed."""
        self._subscription.release()

    def _wanted(self, event: proto_ffi.FfiEvent) -> bool:
        # FFI callback thread. While a request is in flight its async id is unknown,
        # so every capture completion is let through; `_deliver` drops strangers.
        return event.WhichOneof("message") == "capture_audio_frame" and (
            self._requesting > 0 or event.capture_audio_frame.async_id in self._waiting
        )

    def _deliver(self, event: proto_ffi.FfiEvent) -> None:
        done = event.capture_audio_frame
        future = self._waiting.pop(done.async_id, None)
        if future is not None and not future.done():
            future.set_result(done.error)

    def capture(self, request: proto_ffi.FfiRequest) -> tuple[int, asyncio.Future[str]]:
        """Send a capture request; return its async id and a future of its error text
        (empty on success). The future is never cancelled by its awaiters' cancellation
        when awaited through `asyncio.shield`."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # The completion can reach the FFI thread's filter before `request` returns:
        # until the capture is registered by its id, `_requesting` lets every
        # capture completion through (`_deliver`, on the loop, drops strangers).
        self._requesting += 1
        try:
            response = ffi_request(request)
            async_id = response.capture_audio_frame.async_id
            self._waiting[async_id] = future
        finally:
            self._requesting -= 1
        return async_id, future

    def abandon(self, async_id: int) -> None:
        """Fail a capture's future with `NotConnected` (its publisher closed)."""
        future = self._waiting.pop(async_id, None)
        if future is not None and not future.done():
            future.set_exception(NotConnected("the audio publisher closed while capturing"))
            future.exception()  # retrieved: nobody may be awaiting it any more


class NativeStreamOwner(Protocol):
    # The event is an AudioStreamEvent or a VideoStreamEvent, as the router's kind.
    def _on_native_event(self, event: Any) -> None: ...


MediaKind = Literal["audio", "video"]


class StreamRouter:
    """Events of native audio or video streams, by stream handle, for one loop."""

    def __init__(self, kind: MediaKind) -> None:
        self._event = f"{kind}_stream_event"
        self._kind = kind
        self._streams: dict[int, NativeStreamOwner] = {}
        # Handles of ended streams: frames already on their way are still released.
        self._retired: OrderedDict[int, None] = OrderedDict()
        self._opening = 0
        self._subscription = _Subscription(self._wanted, self._deliver)

    def _wanted(self, event: proto_ffi.FfiEvent) -> bool:
        # FFI callback thread: until a new stream's handle is registered, every
        # stream event of this kind is let through; `_deliver` ignores other streams'
        # events (the SDK's own AudioStream and VideoStream objects have their own
        # subscriptions).
        if event.WhichOneof("message") != self._event:
            return False
        handle: int = getattr(event, self._event).stream_handle
        return self._opening > 0 or handle in self._streams or handle in self._retired

    def _deliver(self, event: proto_ffi.FfiEvent) -> None:
        media = getattr(event, self._event)
        owner = self._streams.get(media.stream_handle)
        if owner is not None:
            owner._on_native_event(media)
        elif media.stream_handle in self._retired and media.HasField("frame_received"):
            received = media.frame_received
            owned = received.frame if self._kind == "audio" else received.buffer
            drop_handle(owned.handle.id)

    def open(self, request: proto_ffi.FfiRequest, owner: NativeStreamOwner) -> int:
        """Create a native stream with `request` and route its events to `owner`;
        return the stream's handle id."""
        self._subscription.acquire()
        # As for captures: until the stream is registered by its handle, every audio
        # stream event is let through, so its first frames are never filtered out.
        self._opening += 1
        try:
            response = ffi_request(request)
            created = getattr(response, f"new_{self._kind}_stream")
            handle: int = created.stream.handle.id
            self._streams[handle] = owner
        except BaseException:
            self._subscription.release()
            raise
        finally:
            self._opening -= 1
        return handle

    def close(self, handle: int) -> None:
        """Stop routing `handle` and release the native stream (idempotent)."""
        if self._streams.pop(handle, None) is None:
            return
        self._retired[handle] = None
        while len(self._retired) > _RETIRED_MAX:
            self._retired.popitem(last=False)
        drop_handle(handle)
        self._subscription.release()


_capture_routers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CaptureRouter] = (
    weakref.WeakKeyDictionary()
)
_stream_routers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[MediaKind, StreamRouter]
] = weakref.WeakKeyDictionary()


def capture_router(loop: asyncio.AbstractEventLoop) -> CaptureRouter:
    router = _capture_routers.get(loop)
    if router is None:
        router = _capture_routers[loop] = CaptureRouter()
    return router


def stream_router(loop: asyncio.AbstractEventLoop, kind: MediaKind = "audio") -> StreamRouter:
    routers = _stream_routers.setdefault(loop, {})
    router = routers.get(kind)
    if router is None:
        router = routers[kind] = StreamRouter(kind)
    return router
