"""Finding, or installing, what the browser test peer runs: Chromium and livekit-client.

- **Chromium**: `LKKIT_CHROMIUM` when set (it must exist), else Debian's real binary
  `/usr/lib/chromium/chromium` (not the `/usr/bin/chromium` wrapper, which adds Google
  API keys and remote extensions), else `chromium`, `chromium-browser`, `google-chrome`
  on `PATH`. Installed with `apt-get install chromium` when none is found.
- **livekit-client**: the npm package pinned in `browser/package-lock.json` (shipped
  with lkkit), installed with `npm ci` into
  `<project>/.cache/browser/livekit-client-<version>-<lock digest>/` (or under
  `LKKIT_BROWSER_CACHE_DIR`); the page loads its UMD bundle.

`python -m lkkit.testing install-browser` installs both; nothing is installed while
the tests run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import LkkitError

__all__ = [
    "LIVEKIT_CLIENT_VERSION",
    "BrowserError",
    "BrowserInstall",
    "BrowserNotFound",
    "ensure_browser",
    "find_browser",
    "find_chromium",
    "find_livekit_client",
]

LIVEKIT_CLIENT_VERSION = "2.23.0"
"""The livekit-client (npm) release the browser peer runs, pinned in its lock file."""

ASSETS = Path(__file__).parent / "browser"
"""The page, its script, and the pinned `package.json` / `package-lock.json`."""

_INSTALL_HINT = "python -m lkkit.testing install-browser"
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_DEBIAN_CHROMIUM = Path("/usr/lib/chromium/chromium")
_UMD = Path("node_modules/livekit-client/dist/livekit-client.umd.js")
_APT_TIMEOUT_S = 20 * 60
_NPM_TIMEOUT_S = 5 * 60


class BrowserError(LkkitError, RuntimeError):
    """lkkit.testing's browser peer failed: Chromium exited or stopped answering, or
    a page could not be set up."""


class BrowserNotFound(BrowserError, FileNotFoundError):
    """Chromium or livekit-client is not installed (the message says how to install it),
    or its installation failed."""


@dataclass(frozen=True, slots=True)
class BrowserInstall:
    """Where the browser peer's two parts are."""

    chromium: Path
    """The Chromium executable."""
    livekit_client: Path
    """livekit-client's UMD bundle (`livekit-client.umd.js`)."""


def _project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return start


def _cache_root() -> Path:
    configured = os.environ.get("LKKIT_BROWSER_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return _project_root(Path.cwd()) / ".cache" / "browser"


def _install_dir() -> Path:
    """The folder of the pinned lock file's `npm ci`; a new lock gets a new folder."""
    digest = hashlib.sha256((ASSETS / "package-lock.json").read_bytes()).hexdigest()[:12]
    return _cache_root() / f"livekit-client-{LIVEKIT_CLIENT_VERSION}-{digest}"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_chromium() -> Path | None:
    """The Chromium executable to run, or `None` when there is none.

    Raises:
        BrowserNotFound: `LKKIT_CHROMIUM` names no executable file.
    """
    configured = os.environ.get("LKKIT_CHROMIUM")
    if configured:
        path = Path(configured).expanduser()
        if not _executable(path):
            raise BrowserNotFound(
                f"LKKIT_CHROMIUM={configured!r} is not an executable file: point it at a "
                f"Chromium, or unset it and run `{_INSTALL_HINT}`"
            )
        return path
    if _executable(_DEBIAN_CHROMIUM):
        return _DEBIAN_CHROMIUM
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def find_livekit_client() -> Path | None:
    """livekit-client's UMD bundle installed from the pinned lock file, or `None`."""
    folder = _install_dir()
    bundle = folder / _UMD
    manifest = folder / "node_modules" / "livekit-client" / "package.json"
    if not (bundle.is_file() and manifest.is_file()):
        return None
    if json.loads(manifest.read_text()).get("version") != LIVEKIT_CLIENT_VERSION:
        return None
    return bundle


def _missing(what: str) -> BrowserNotFound:
    return BrowserNotFound(
        f"{what}: the browser test peer needs Chromium and livekit-client "
        f"{LIVEKIT_CLIENT_VERSION}. Install both with `{_INSTALL_HINT}` (apt-get and npm), "
        "or set LKKIT_CHROMIUM to a Chromium executable."
    )


def find_browser() -> BrowserInstall:
    """Chromium and livekit-client as installed, without installing anything.

    Raises:
        BrowserNotFound: either is missing; the message says how to install it.
    """
    chromium = find_chromium()
    if chromium is None:
        raise _missing("no Chromium found")
    bundle = find_livekit_client()
    if bundle is None:
        raise _missing(f"livekit-client is not installed in {_install_dir()}")
    return BrowserInstall(chromium=chromium, livekit_client=bundle)


def _run(argv: list[str], what: str, timeout: float, cwd: Path | None = None) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrowserNotFound(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-20:])
        raise BrowserNotFound(f"{what} failed (exit {result.returncode}):\n{tail}")


def _install_chromium() -> Path:
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        raise _missing("no Chromium found, and it can only be installed with apt-get as root")
    # A fresh machine may have no package lists yet.
    _run([apt_get, "update", "-qq"], "apt-get update", _APT_TIMEOUT_S)
    _run(
        [apt_get, "install", "-y", "-qq", "chromium"],
        "apt-get install chromium",
        _APT_TIMEOUT_S,
    )
    found = find_chromium()
    if found is None:
        raise _missing("apt-get installed chromium, but no Chromium executable was found")
    return found


def _install_livekit_client() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise _missing("npm (Node.js) is not installed")
    target = _install_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two runs installing at once must not write over each other.
    with open(target.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_livekit_client()
        if found is not None:
            return found
        work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".npm-"))
        try:
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(ASSETS / name, work / name)
            _run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                "npm ci (livekit-client)",
                _NPM_TIMEOUT_S,
                cwd=work,
            )
            if target.exists():  # an older, incomplete install
                shutil.rmtree(target)
            os.replace(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    found = find_livekit_client()
    if found is None:
        raise _missing(f"npm ci did not install livekit-client {LIVEKIT_CLIENT_VERSION}")
    return found


def ensure_browser(*, install_chromium: bool = True) -> BrowserInstall:
    """Chromium and livekit-client, installing what is missing: Chromium with
    `apt-get` (as root, when `install_chromium`), livekit-client with `npm ci` of the
    pinned lock file. Fast when both are there.

    Raises:
        BrowserNotFound: something is missing and could not be installed.
    """
    chromium = find_chromium()
    if chromium is None:
        if not install_chromium:
            raise _missing("no Chromium found")
        chromium = _install_chromium()
    bundle = find_livekit_client() or _install_livekit_client()
    return BrowserInstall(chromium=chromium, livekit_client=bundle)
