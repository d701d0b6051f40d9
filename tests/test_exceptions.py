"""The exception tree and the one place SDK exceptions are translated."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from livekit import api, rtc

import lkkit
from lkkit import _exceptions


def sdk_exception_classes() -> set[type[BaseException]]:
    """Every exception class defined in the SDK's own modules."""
    found: set[type[BaseException]] = set()
    for package in (rtc, api):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            # Skip generated protobuf modules, the native library and notebook helpers.
            if any(part in info.name for part in ("._proto", ".resources", "jupyter")):
                continue
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if (
                    issubclass(obj, BaseException)
                    and obj.__module__.startswith(("livekit.rtc", "livekit.api"))
                    and "._proto" not in obj.__module__
                ):
                    found.add(obj)
    return found


def test_every_sdk_exception_is_mapped() -> None:
    classes = sdk_exception_classes()
    assert rtc.ConnectError in classes  # the walk found the SDK's modules
    unmapped = {
        cls
        for cls in classes
        if not any(issubclass(cls, mapped) for mapped in _exceptions.sdk_exception_map())
    }
    assert not unmapped, f"add these to sdk_exception_map(): {sorted(c.__name__ for c in unmapped)}"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "engine: signal failure: client error: 401 Unauthorized - invalid token",
            lkkit.ConnectionRejected,
        ),
        ("IO error: Connection refused (os error 111)", lkkit.ServerUnreachable),
        ("engine: connection timed out", lkkit.ConnectTimeout),
        ("something new", lkkit.ConnectError),
    ],
)
def test_connect_errors_are_classified(message: str, expected: type[lkkit.ConnectError]) -> None:
    with pytest.raises(expected) as caught, _exceptions.map_sdk_exceptions():
        raise rtc.ConnectError(message)
    assert type(caught.value) is expected
    assert isinstance(caught.value.__cause__, rtc.ConnectError)


def test_tokens_are_redacted_from_connect_errors() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    with pytest.raises(lkkit.ConnectionRejected) as caught, _exceptions.map_sdk_exceptions():
        raise rtc.ConnectError(f"401 Unauthorized - invalid token: {jwt}, error: bad")
    assert jwt not in str(caught.value)
    assert "<token>" in str(caught.value)


def test_server_api_errors_keep_status_and_code() -> None:
    with pytest.raises(lkkit.ServerApiError) as caught, _exceptions.map_sdk_exceptions():
        raise api.ServerError("not_found", "room not found", status=404)
    assert caught.value.status == 404
    assert caught.value.code == "not_found"


def test_other_exceptions_pass_through_untouched() -> None:
    with pytest.raises(KeyError), _exceptions.map_sdk_exceptions():
        raise KeyError("mine")
    original = lkkit.DataTooLarge("x")
    with pytest.raises(lkkit.DataTooLarge) as caught, _exceptions.map_sdk_exceptions():
        raise original
    assert caught.value is original


def test_tree_roots_and_builtin_bases() -> None:
    for name in _exceptions.__all__:
        obj = getattr(_exceptions, name)
        if inspect.isclass(obj):
            assert issubclass(obj, lkkit.LkkitError), name
            assert name in (_exceptions.__doc__ or ""), f"{name} missing from the drawn tree"
    assert issubclass(lkkit.DataTooLarge, ValueError)
    assert issubclass(lkkit.NotConnected, RuntimeError)
    assert issubclass(lkkit.ConnectTimeout, TimeoutError)
    assert issubclass(lkkit.ConnectionRejected, PermissionError)
    assert issubclass(lkkit.ServerBinaryNotFound, FileNotFoundError)
