"""Finding, or installing, the Redis server that the nodes of a
[`LocalLiveKitCluster`][lkkit.testing.LocalLiveKitCluster] share.

`LKKIT_REDIS_SERVER` when set (it must exist), else Debian's `/usr/bin/redis-server`,
else a `redis-server` on `PATH`. Installed with `apt-get install redis-server` when none
is found: `python -m lkkit.testing install-redis` does it; nothing is installed while the
tests run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .._exceptions import ServerBinaryNotFound

__all__ = ["ensure_redis_server", "find_redis_server"]

_INSTALL_HINT = "python -m lkkit.testing install-redis"
_DEBIAN_REDIS = Path("/usr/bin/redis-server")
_APT_TIMEOUT_S = 10 * 60


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _missing(what: str) -> ServerBinaryNotFound:
    return ServerBinaryNotFound(
        f"{what}: a LocalLiveKitCluster's nodes share a Redis server. Install Debian's "
        f"with `{_INSTALL_HINT}` (apt-get), or set LKKIT_REDIS_SERVER to a redis-server "
        "executable."
    )


def find_redis_server() -> Path | None:
    """The `redis-server` executable to run, or `None` when there is none.

    Raises:
        ServerBinaryNotFound: `LKKIT_REDIS_SERVER` names no executable file.
    """
    configured = os.environ.get("LKKIT_REDIS_SERVER")
    if configured:
        path = Path(configured).expanduser()
        if not _executable(path):
            raise _missing(f"LKKIT_REDIS_SERVER={configured!r} is not an executable file")
        return path
    if _executable(_DEBIAN_REDIS):
        return _DEBIAN_REDIS
    found = shutil.which("redis-server")
    return Path(found) if found else None


def _apt_get(*arguments: str) -> None:
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        raise _missing("no redis-server found, and it can only be installed with apt-get as root")
    what = " ".join(("apt-get", *arguments[:1]))
    try:
        result = subprocess.run(
            [apt_get, *arguments],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_APT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _missing(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-20:])
        raise _missing(f"{what} failed (exit {result.returncode}):\n{tail}")


def ensure_redis_server(*, install: bool = True) -> Path:
    """The `redis-server` executable, installing Debian's with `apt-get` (as root, when
    `install`) if none is found. Fast when it is there.

    Debian's package also enables a system-wide Redis service on port 6379; the
    cluster never uses it (it starts its own `redis-server` on a free port).

    Raises:
        ServerBinaryNotFound: none is found and it could not be installed.
    """
    found = find_redis_server()
    if found is not None:
        return found
    if not install:
        raise _missing("no redis-server found")
    # A fresh machine may have no package lists yet.
    _apt_get("update", "-qq")
    _apt_get("install", "-y", "-qq", "--no-install-recommends", "redis-server")
    found = find_redis_server()
    if found is None:
        raise _missing("apt-get installed redis-server, but no redis-server executable was found")
    return found
