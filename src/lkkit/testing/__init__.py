"""Test against a real livekit-server: the server launcher, the loopback sandbox, and
the pytest plugin's helpers.

```python
from lkkit.testing import LocalLiveKitServer

with LocalLiveKitServer() as server:
    ...  # server.url, server.api_key, server.api_secret
```

The pytest plugin is registered automatically when lkkit is installed; it gives the
`livekit_server` and `livekit_room` fixtures, `livekit_cluster` (a
`LocalLiveKitCluster`: two nodes sharing a Redis), and `chromium` / `browser_peer` for
LiveKit's JavaScript client in headless Chromium as a peer (`BrowserPeer`).
"""

# Imported on first use (PEP 562), like `lkkit` itself: pytest imports this package in
# every project that installs lkkit, to load the plugin. To export a name, add it to the
# `TYPE_CHECKING` imports, to `_EXPORTS` and to `__all__`.

import typing as _typing

from .._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from ._binary import (
        LIVEKIT_SERVER_MODULE,
        LIVEKIT_SERVER_VERSION,
        cache_dir,
        ensure_server_binary,
        find_server_binary,
    )
    from ._browser import (
        CHROMIUM_FLAGS,
        BrowserEvent,
        BrowserPeer,
        BrowserTimeout,
        BrowserVideoInfo,
        Chromium,
        JavaScriptError,
    )
    from ._browser_install import (
        LIVEKIT_CLIENT_VERSION,
        BrowserError,
        BrowserInstall,
        BrowserNotFound,
        ensure_browser,
        find_browser,
        find_chromium,
        find_livekit_client,
    )
    from ._cluster import LocalLiveKitCluster
    from ._livekit_room import LiveKitRoom
    from ._redis_install import ensure_redis_server, find_redis_server
    from ._sandbox import SANDBOX_ADDRESS, check_loopback_only, local_addresses, run_in_sandbox
    from ._server import LocalLiveKitServer

# Public name -> the private module that defines it.
_EXPORTS: dict[str, str] = {
    "LIVEKIT_SERVER_MODULE": "._binary",
    "LIVEKIT_SERVER_VERSION": "._binary",
    "cache_dir": "._binary",
    "ensure_server_binary": "._binary",
    "find_server_binary": "._binary",
    "CHROMIUM_FLAGS": "._browser",
    "BrowserEvent": "._browser",
    "BrowserPeer": "._browser",
    "BrowserTimeout": "._browser",
    "BrowserVideoInfo": "._browser",
    "Chromium": "._browser",
    "JavaScriptError": "._browser",
    "LIVEKIT_CLIENT_VERSION": "._browser_install",
    "BrowserError": "._browser_install",
    "BrowserInstall": "._browser_install",
    "BrowserNotFound": "._browser_install",
    "ensure_browser": "._browser_install",
    "find_browser": "._browser_install",
    "find_chromium": "._browser_install",
    "find_livekit_client": "._browser_install",
    "LocalLiveKitCluster": "._cluster",
    "LiveKitRoom": "._livekit_room",
    "ensure_redis_server": "._redis_install",
    "find_redis_server": "._redis_install",
    "SANDBOX_ADDRESS": "._sandbox",
    "check_loopback_only": "._sandbox",
    "local_addresses": "._sandbox",
    "run_in_sandbox": "._sandbox",
    "LocalLiveKitServer": "._server",
}

__all__ = [
    "CHROMIUM_FLAGS",
    "LIVEKIT_CLIENT_VERSION",
    "LIVEKIT_SERVER_MODULE",
    "LIVEKIT_SERVER_VERSION",
    "SANDBOX_ADDRESS",
    "BrowserError",
    "BrowserEvent",
    "BrowserInstall",
    "BrowserNotFound",
    "BrowserPeer",
    "BrowserTimeout",
    "BrowserVideoInfo",
    "Chromium",
    "JavaScriptError",
    "LiveKitRoom",
    "LocalLiveKitCluster",
    "LocalLiveKitServer",
    "cache_dir",
    "check_loopback_only",
    "ensure_browser",
    "ensure_redis_server",
    "ensure_server_binary",
    "find_browser",
    "find_chromium",
    "find_livekit_client",
    "find_redis_server",
    "find_server_binary",
    "local_addresses",
    "run_in_sandbox",
]


_load_export, __dir__ = _lazy_exports(__name__, _EXPORTS, globals(), __all__)

if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: they see the real imports above, and a module-level
    # `__getattr__` would make them accept any misspelt name as an `object`.
    __getattr__ = _load_export
