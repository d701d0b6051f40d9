"""The shared FFI routers never filter out the completion of a request they sent
(`lkkit._audio._ffi`). Pure unit tests: the native layer is replaced by a fake that
delivers the completion at the worst moment."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from lkkit._audio import _ffi
from lkkit._sdk_compat import proto_ffi

pytestmark = pytest.mark.anyio


class Stream:
    def _on_native_event(self, event: Any) -> None:
        pass


def completion(async_id: int) -> proto_ffi.FfiEvent:
    event = proto_ffi.FfiEvent()
    event.capture_audio_frame.async_id = async_id
    return event


def stream_event(handle: int) -> proto_ffi.FfiEvent:
    event = proto_ffi.FfiEvent()
    event.audio_stream_event.stream_handle = handle
    event.audio_stream_event.eos.SetInParent()
    return event


@pytest.fixture
def no_native_subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ffi, "subscribe_ffi_events", lambda filter_fn, deliver: lambda: None)


class LateField:
    """A response field whose id is read after the request returned: the moment the
    FFI thread may already be filtering the completion."""

    def __init__(self, value: int, on_read: Callable[[], None]) -> None:
        self._value = value
        self._on_read = on_read

    @property
    def async_id(self) -> int:
        value = self._value
        self._on_read()
        return value

    @property
    def id(self) -> int:
        return self.async_id


@pytest.mark.usefixtures("no_native_subscription")
async def test_a_capture_completion_is_never_filtered_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = _ffi.CaptureRouter()
    router.acquire()
    seen: list[bool] = []
    # The FFI thread runs the filter just as Python reads the response.
    field = LateField(7, lambda: seen.append(router._wanted(completion(7))))
    monkeypatch.setattr(
        _ffi, "ffi_request", lambda request: SimpleNamespace(capture_audio_frame=field)
    )
    async_id, future = router.capture(proto_ffi.FfiRequest())
    seen.append(router._wanted(completion(7)))  # and any time after it returned
    assert async_id == 7
    assert seen == [True, True]
    router._deliver(completion(7))
    assert future.done()
    assert future.result() == ""
    assert not router._wanted(completion(8))  # strangers are filtered once idle
    router.release()


@pytest.mark.usefixtures("no_native_subscription")
async def test_a_new_streams_first_events_are_never_filtered_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = _ffi.StreamRouter("audio")
    seen: list[bool] = []
    field = LateField(42, lambda: seen.append(router._wanted(stream_event(42))))
    response = SimpleNamespace(
        new_audio_stream=SimpleNamespace(stream=SimpleNamespace(handle=field))
    )
    monkeypatch.setattr(_ffi, "ffi_request", lambda request: response)
    handle = router.open(proto_ffi.FfiRequest(), Stream())
    seen.append(router._wanted(stream_event(42)))
    assert handle == 42
    assert seen == [True, True]
    assert not router._wanted(stream_event(43))
    monkeypatch.setattr(_ffi, "drop_handle", lambda handle: None)
    router.close(42)
