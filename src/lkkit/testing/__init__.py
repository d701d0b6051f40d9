"""Test against a real livekit-server: the server launcher, the loopback sandbox, and
the pytest plugin's helpers.

```python
from lkkit.testing import LocalLiveKitServer

with LocalLiveKitServer() as server:
    ...  # server.url, server.api_key, server.api_secret
```

The pytest plugin is registered automatically when lkkit is installed; it gives the
`livekit_server` and `livekit_room` fixtures.
"""

from ._binary import (
    LIVEKIT_SERVER_MODULE,
    LIVEKIT_SERVER_VERSION,
    cache_dir,
    ensure_server_binary,
    find_server_binary,
)
from ._livekit_room import LiveKitRoom
from ._sandbox import SANDBOX_ADDRESS, check_loopback_only, local_addresses, run_in_sandbox
from ._server import LocalLiveKitServer

__all__ = [
    "LIVEKIT_SERVER_MODULE",
    "LIVEKIT_SERVER_VERSION",
    "SANDBOX_ADDRESS",
    "LiveKitRoom",
    "LocalLiveKitServer",
    "cache_dir",
    "check_loopback_only",
    "ensure_server_binary",
    "find_server_binary",
    "local_addresses",
    "run_in_sandbox",
]
