"""Finding, or building, the `livekit-server` binary the tests run.

Order of precedence:

1. `LIVEKIT_SERVER_BIN`, when set, names the binary (it must exist).
2. A `livekit-server` on `PATH`.
3. The project cache: `<project>/.cache/livekit-server/<version>/livekit-server`.
4. Build it into that cache with `go install` of the server's public Go module.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .._exceptions import ServerBinaryNotFound

__all__ = [
    "LIVEKIT_SERVER_MODULE",
    "LIVEKIT_SERVER_VERSION",
    "cache_dir",
    "ensure_server_binary",
    "find_server_binary",
]

LIVEKIT_SERVER_VERSION = "v1.13.5"
"""The livekit-server release lkkit is tested against."""

LIVEKIT_SERVER_MODULE = "github.com/livekit/livekit-server/cmd/server"

_BINARY_NAME = "livekit-server"
_BUILD_TIMEOUT_S = 30 * 60


def _project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return start


def cache_dir() -> Path:
    """Where a built server is kept: `LKKIT_CACHE_DIR`, else `<project>/.cache/livekit-server`.

    The project is the nearest folder above the current directory that holds a
    `pyproject.toml` or a `.git`; add `.cache/` to its `.gitignore`.
    """
    configured = os.environ.get("LKKIT_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return _project_root(Path.cwd()) / ".cache" / _BINARY_NAME


def _cached_binary(version: str) -> Path:
    return cache_dir() / version / _BINARY_NAME


def find_server_binary(version: str = LIVEKIT_SERVER_VERSION) -> Path | None:
    """The binary to run, without building anything; `None` when there is none."""
    configured = os.environ.get("LIVEKIT_SERVER_BIN")
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerBinaryNotFound(
                f"LIVEKIT_SERVER_BIN={configured!r} is not an executable file"
            )
        return path
    on_path = shutil.which(_BINARY_NAME)
    if on_path:
        return Path(on_path)
    cached = _cached_binary(version)
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    return None


def _not_found_message(reason: str, version: str) -> str:
    return (
        f"no livekit-server binary is available ({reason}). Any one of these works:\n"
        f"  - install Go (https://go.dev/dl/) and run `python -m lkkit.testing install-server`"
        f" (builds {version} into {cache_dir()})\n"
        f"  - set LIVEKIT_SERVER_BIN to the path of a livekit-server binary\n"
        f"  - put a livekit-server binary on PATH"
    )


def ensure_server_binary(version: str = LIVEKIT_SERVER_VERSION) -> Path:
    """The binary to run, building it with `go install` into the cache when needed.

    Raises:
        ServerBinaryNotFound: no binary is available and Go is missing or the build fails.
    """
    found = find_server_binary(version)
    if found is not None:
        return found
    go = shutil.which("go")
    if go is None:
        raise ServerBinaryNotFound(_not_found_message("Go is not installed", version))

    target = _cached_binary(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two test runs starting at once must not build over each other.
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as gobin:
            env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"}
            result = subprocess.run(
                [go, "install", f"{LIVEKIT_SERVER_MODULE}@{version}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=_BUILD_TIMEOUT_S,
                check=False,
            )
            built = Path(gobin) / "server"
            if result.returncode != 0 or not built.is_file():
                tail = "\n".join((result.stderr or result.stdout).splitlines()[-20:])
                raise ServerBinaryNotFound(
                    _not_found_message(f"`go install` failed:\n{tail}", version)
                )
            os.replace(built, target)
    return target
