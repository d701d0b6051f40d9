"""`Chromium` and `BrowserPeer`: LiveKit's JavaScript client in headless Chromium, as a
peer for tests.

```python
from lkkit.testing import Chromium

with Chromium() as chromium:                  # one browser process
    async with await chromium.new_peer() as peer:   # one page
        await peer.connect(url, token)
        await peer.call("publishData", base64_payload, {"topic": "chat"})
        event = await peer.wait_for("data", lambda e: e["topic"] == "chat")
```

How it works, with the standard library only:

- Chromium (headless, found or installed by `lkkit.testing._browser_install`) is
  driven over the DevTools protocol through `--remote-debugging-pipe`: requests go in
  on its fd 3, answers and events come out of its fd 4, one JSON message per
  NUL-terminated frame. Two threads read and write the pipe, so a stalled browser
  never blocks the event loop and every wait has a timeout.
- A `ThreadingHTTPServer` on 127.0.0.1 serves the page (`browser/page.html`,
  `browser/page.js`) and livekit-client's UMD bundle; `http://127.0.0.1` is a secure
  context, so WebRTC and `crypto.subtle` work.
- Python calls the page with `Runtime.evaluate` (`awaitPromise`, `returnByValue`); a
  JavaScript exception becomes a [`JavaScriptError`][lkkit.testing.JavaScriptError]
  carrying the JavaScript message. The page reports what happens in the room through a
  binding (`Runtime.addBinding`): each event is a
  [`BrowserEvent`][lkkit.testing.BrowserEvent], kept in order for
  [`wait_for`][lkkit.testing.BrowserPeer.wait_for].
- Each peer is a page in its own browser context (fresh storage), closed with the peer.

Chromium starts only where WebRTC cannot leave 127.0.0.0/8 (inside lkkit's sandbox, see
[`check_loopback_only`][lkkit.testing.check_loopback_only]); it also tries to reach
Google services on its own, which the flags below turn off and the sandbox blocks.
Stopping closes the browser, then kills its whole process group.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import json
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio.to_thread

from ._browser_install import ASSETS, BrowserError, BrowserNotFound, find_browser
from ._sandbox import check_loopback_only

__all__ = [
    "CHROMIUM_FLAGS",
    "BrowserEvent",
    "BrowserPeer",
    "BrowserTimeout",
    "BrowserVideoInfo",
    "Chromium",
    "JavaScriptError",
]

_HOST = "127.0.0.1"
_BINDING = "__lkkitEmit"
_START_TIMEOUT_S = 30.0
_CALL_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 3.0
_CONSOLE_LINES = 1000

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--password-store=basic",
    "--use-mock-keychain",
    # No traffic of its own: updates, sync, safe browsing, metrics, hints, pings...
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-component-extensions-with-background-pages",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--metrics-recording-only",
    "--no-pings",
    # (One --disable-features only: a second one on the command line replaces it.)
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
    "InterestFeedContentSuggestions,NetworkTimeServiceQuerying,WebRtcHideLocalIpsWithMdns",
    # Every host name resolves to nothing; 127.0.0.1 (the page, the server) stays.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Media without devices or prompts; audio plays without a user gesture.
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # A hidden headless page must not be throttled mid-test.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)
"""The flags Chromium runs with (besides `--remote-debugging-pipe` and a fresh
`--user-data-dir`): headless, quiet, and with no network traffic of its own."""


class BrowserTimeout(BrowserError, TimeoutError):
    """The browser or the page did not answer, or an awaited page event did not come,
    within the timeout."""


class JavaScriptError(BrowserError):
    """JavaScript evaluated in the page threw (or its promise rejected); the message is
    the JavaScript error's, `stack` its full description."""

    def __init__(self, message: str, stack: str = "") -> None:
        super().__init__(message)
        self.stack = stack


@dataclass(frozen=True, slots=True)
class BrowserEvent:
    """One thing the page recorded: `kind` (`"data"`, `"byteStream"`, `"trackMuted"`,
    ...; see `browser/page.js`) and its JSON `fields`; `event["topic"]` reads a field."""

    kind: str
    fields: Mapping[str, Any] = field(repr=False)
    received_at: float
    """`time.monotonic()` when Python received it."""

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        """A field, or `default` when the event has none of that name."""
        return self.fields.get(key, default)

    def decode(self, key: str = "payload") -> bytes:
        """A base64 field (binary payloads travel as base64) as bytes."""
        return base64.b64decode(self.fields[key])


VideoSource = Literal["camera", "screen_share"]
"""A video track's source, as livekit-client names it (`Track.Source`)."""


@dataclass(frozen=True, slots=True)
class BrowserVideoInfo:
    """What the page shows of a remote video track, read from the `<video>` element
    playing it (see [`video_info`][lkkit.testing.BrowserPeer.video_info])."""

    width: int
    """The element's `videoWidth`: the size of the frames it decodes."""
    height: int
    """The element's `videoHeight`."""
    mean_rgb: tuple[float, float, float]
    """The mean red, green and blue (0-255) of the current frame, drawn through a
    canvas."""
    frames: int
    """Frames the element has shown so far (`getVideoPlaybackQuality().totalVideoFrames`)."""


# -- the DevTools pipe ---------------------------------------------------------------------

_EventCallback = Callable[[str | None, str, dict[str, Any]], None]


class _DevToolsPipe:
    """JSON messages over Chromium's `--remote-debugging-pipe`, one thread per direction.

    Answers resolve `concurrent.futures.Future`s (awaitable from any event loop with
    `asyncio.wrap_future`); events go to `on_event(session_id, method, params)` on the
    reader thread.
    """

    def __init__(self, read_fd: int, write_fd: int, on_event: _EventCallback) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._on_event = on_event
        self._ids = 0
        self._pending: dict[int, tuple[str, concurrent.futures.Future[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._closed_reason: str | None = None
        self._reader = threading.Thread(target=self._read_loop, name="lkkit-cdp-in", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="lkkit-cdp-out", daemon=True)
        self._reader.start()
        self._writer.start()

    def request(
        self, method: str, params: Mapping[str, Any] | None = None, session_id: str | None = None
    ) -> concurrent.futures.Future[dict[str, Any]]:
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        # Running from the start, so it cannot be cancelled: a caller that stops
        # waiting (a timeout, a cancel scope) cancels its asyncio wrapper only, and
        # the answer that still comes never meets a cancelled future, whose
        # `set_result` would raise and end the reader thread.
        future.set_running_or_notify_cancel()
        with self._lock:
            if self._closed_reason is not None:
                future.set_exception(BrowserError(self._closed_reason))
                return future
            self._ids += 1
            message: dict[str, Any] = {"id": self._ids, "method": method, "params": params or {}}
            if session_id is not None:
                message["sessionId"] = session_id
            self._pending[self._ids] = (method, future)
        self._outbox.put(json.dumps(message).encode() + b"\0")
        return future

    def _write_loop(self) -> None:
        while (data := self._outbox.get()) is not None:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._write_fd, view) :]
            except OSError as exc:
                self._fail_all(f"writing to Chromium failed: {exc}")
                return

    def _read_loop(self) -> None:
        buffer = bytearray()
        try:
            while chunk := os.read(self._read_fd, 1 << 20):
                scan_from = len(buffer)
                buffer += chunk
                while (end := buffer.find(0, scan_from)) >= 0:
                    self._dispatch(json.loads(bytes(buffer[:end])))
                    del buffer[: end + 1]
                    scan_from = 0
        except OSError:
            pass
        self._fail_all("Chromium closed its DevTools pipe (it exited)")

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            with self._lock:
                method, future = self._pending.pop(message["id"], ("", None))
            if future is None:
                return
            error = message.get("error")
            if error is not None:
                future.set_exception(BrowserError(f"{method}: {error.get('message', error)}"))
            else:
                future.set_result(message.get("result", {}))
            return
        self._on_event(message.get("sessionId"), message["method"], message.get("params", {}))

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            if self._closed_reason is None:
                self._closed_reason = reason
            pending = list(self._pending.values())
            self._pending.clear()
        for _, future in pending:
            if not future.done():
                future.set_exception(BrowserError(reason))

    def close(self) -> None:
        """Stop the writer, close our ends, and wait for both threads."""
        self._outbox.put(None)
        self._writer.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._write_fd)
        self._reader.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._read_fd)
        self._fail_all("the browser was stopped")


# -- the page server -----------------------------------------------------------------------


def _page_server(files: Mapping[str, tuple[bytes, str]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            entry = files.get(self.path.split("?", 1)[0])
            if entry is None:
                self.send_error(404)
                return
            body, content_type = entry
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((_HOST, 0), Handler)
    server.daemon_threads = True
    return server


# -- the browser ---------------------------------------------------------------------------


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _live_in_group(pgid: int) -> bool:
    """Whether a process of group `pgid` is still alive (zombies waiting for their
    parent, which Chromium's helpers get after it exits, do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _high_fd(fd: int) -> int:
    """A close-on-exec copy of `fd` numbered 10 or above (clear of the child's 0-4)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


class Chromium:
    """One headless Chromium process, its DevTools pipe and the page server; make
    [`BrowserPeer`][lkkit.testing.BrowserPeer]s with [`new_peer`][lkkit.testing.Chromium.new_peer].

    ```python
    with Chromium() as chromium:        # or: async with
        peer = await chromium.new_peer()
    ```

    Starting checks that WebRTC stays on loopback (unless `check_network=False`),
    then waits up to `start_timeout` for the browser to answer. Stopping closes every
    page, asks the browser to close, and kills its process group after 3 s; the
    group is killed too if this object is collected or the interpreter exits first.

    Raises (from `start`):
        BrowserNotFound: Chromium or livekit-client is not installed.
        BrowserError: Chromium exited or did not answer within `start_timeout`.
        ServerStartError: WebRTC could leave 127.0.0.0/8 here (run in the sandbox).
    """

    def __init__(
        self,
        *,
        executable: Path | str | None = None,
        livekit_client: Path | str | None = None,
        extra_args: Sequence[str] = (),
        check_network: bool = True,
        start_timeout: float = _START_TIMEOUT_S,
    ) -> None:
        self._executable = Path(executable) if executable is not None else None
        self._livekit_client = Path(livekit_client) if livekit_client is not None else None
        self._extra_args = tuple(extra_args)
        self._check_network = check_network
        self._start_timeout = start_timeout
        self._pid: int | None = None
        self._pipe: _DevToolsPipe | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._profile: Path | None = None
        self._peers: dict[str, BrowserPeer] = {}
        self._peers_lock = threading.Lock()
        self._version = ""
        self._finalizer: weakref.finalize[[int], Chromium] | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Started and not stopped (the process may still have died on its own)."""
        return self._pid is not None

    @property
    def pid(self) -> int | None:
        """The browser process's id (also its process group's), while running."""
        return self._pid

    @property
    def user_data_dir(self) -> Path | None:
        """The browser's fresh profile folder (deleted when it stops), while running."""
        return self._profile

    @property
    def version(self) -> str:
        """The browser's product string, e.g. `"HeadlessChrome/156.0.8078.108"`."""
        return self._version

    @property
    def page_url(self) -> str:
        """The peer page's URL on the local page server."""
        if self._http is None:
            raise BrowserError("Chromium is not running")
        return f"http://{_HOST}:{self._http.server_address[1]}/"

    def log_text(self) -> str:
        """What the browser wrote to stdout and stderr so far."""
        if self._profile is None:
            return ""
        path = self._profile.parent / "chromium.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Start the page server and the browser; see the class docstring."""
        if self._pid is not None:
            raise BrowserError("Chromium is already running")
        if self._check_network:
            check_loopback_only()
        if self._executable is None or self._livekit_client is None:
            found = find_browser()
            executable = self._executable or found.chromium
            bundle = self._livekit_client or found.livekit_client
        else:
            executable, bundle = self._executable, self._livekit_client
        if not bundle.is_file():
            raise BrowserNotFound(f"livekit-client bundle {bundle} does not exist")
        try:
            self._start_http(bundle)
            self._spawn(executable)
            self._version = self._call_sync("Browser.getVersion", timeout=self._start_timeout)[
                "product"
            ]
        except BaseException:
            self.stop()
            raise

    def _start_http(self, bundle: Path) -> None:
        files = {
            "/": ((ASSETS / "page.html").read_bytes(), "text/html; charset=utf-8"),
            "/page.js": ((ASSETS / "page.js").read_bytes(), "text/javascript; charset=utf-8"),
            "/livekit-client.umd.js": (bundle.read_bytes(), "text/javascript; charset=utf-8"),
        }
        self._http = _page_server(files)
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="lkkit-browser-http", daemon=True
        )
        self._http_thread.start()

    def _spawn(self, executable: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix="lkkit-chromium-"))
        self._profile = work / "profile"
        self._profile.mkdir()
        argv = [
            str(executable),
            *CHROMIUM_FLAGS,
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile}",
            *self._extra_args,
            "about:blank",
        ]
        # Nothing of the user's: no Google API keys, caches and config in the temp dir.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CHROME_"))}
        env.update(HOME=str(work), XDG_CONFIG_HOME=str(work), XDG_CACHE_HOME=str(work))
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        child_in, child_out = _high_fd(to_browser_r), _high_fd(from_browser_w)
        log = str(work / "chromium.log")
        try:
            self._pid = os.posix_spawn(
                str(executable),
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                    (os.POSIX_SPAWN_DUP2, child_in, 3),
                    (os.POSIX_SPAWN_DUP2, child_out, 4),
                ],
                setpgroup=0,  # its own process group: stopping kills every helper process
            )
        finally:
            for fd in (to_browser_r, from_browser_w, child_in, child_out):
                os.close(fd)
        self._finalizer = weakref.finalize(self, _kill_group, self._pid)
        self._pipe = _DevToolsPipe(from_browser_r, to_browser_w, self._on_event)

    def _exited(self, timeout: float) -> bool:
        assert self._pid is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, _ = os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid != 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def stop(self) -> None:
        """Close every page and the browser, kill what is left of its process group,
        stop the page server and delete the profile. Safe to call twice."""
        with self._peers_lock:
            peers = list(self._peers.values())
            self._peers.clear()
        for peer in peers:
            peer._closed_by_browser("the browser was stopped")
        if self._pid is not None:
            if self._pipe is not None:
                with contextlib.suppress(BrowserError, concurrent.futures.TimeoutError):
                    self._call_sync("Browser.close", timeout=_STOP_TIMEOUT_S)
            if not self._exited(_STOP_TIMEOUT_S):
                _kill_group(self._pid)
                self._exited(_STOP_TIMEOUT_S)
            # Helpers that outlived the browser process: killed, and gone before we return.
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while _live_in_group(self._pid) and time.monotonic() < deadline:
                _kill_group(self._pid)
                time.sleep(0.02)
            if self._finalizer is not None:
                self._finalizer.detach()
            self._pid = None
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        if self._profile is not None:
            shutil.rmtree(self._profile.parent, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Chromium:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """`stop()` without blocking the event loop."""
        await anyio.to_thread.run_sync(self.stop)

    # -- the protocol --------------------------------------------------------------

    def _request(
        self, method: str, params: Mapping[str, Any] | None = None, session_id: str | None = None
    ) -> concurrent.futures.Future[dict[str, Any]]:
        if self._pipe is None:
            raise BrowserError("Chromium is not running")
        return self._pipe.request(method, params, session_id)

    def _call_sync(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float
    ) -> dict[str, Any]:
        try:
            return self._request(method, params).result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise BrowserTimeout(
                f"Chromium did not answer {method} within {timeout} s; its log:\n"
                + "\n".join(self.log_text().splitlines()[-20:])
            ) from None
        except BrowserError as exc:
            log = "\n".join(self.log_text().splitlines()[-20:])
            raise BrowserError(f"{exc}; its log:\n{log}") from None

    async def _call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = _CALL_TIMEOUT_S,
    ) -> dict[str, Any]:
        future = asyncio.wrap_future(self._request(method, params, session_id))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise BrowserTimeout(f"{method} got no answer within {timeout} s") from None

    def _on_event(self, session_id: str | None, method: str, params: dict[str, Any]) -> None:
        # On the pipe's reader thread.
        if session_id is None and method == "Target.detachedFromTarget":
            session_id = params.get("sessionId")
            method = "Inspector.detached"
        if session_id is None:
            return
        with self._peers_lock:
            peer = self._peers.get(session_id)
        if peer is not None:
            peer._deliver_threadsafe(method, params)

    def _forget(self, session_id: str) -> None:
        with self._peers_lock:
            self._peers.pop(session_id, None)

    async def new_peer(self, *, timeout: float = _START_TIMEOUT_S) -> BrowserPeer:
        """A fresh page (in its own browser context) with livekit-client loaded and not
        yet connected; close it with `aclose()` or `async with`.

        Raises:
            BrowserError: the browser is not running or the page could not be set up.
            BrowserTimeout: the page did not load within `timeout`.
        """
        context = await self._call("Target.createBrowserContext", {"disposeOnDetach": True})
        context_id: str = context["browserContextId"]
        target = await self._call(
            "Target.createTarget", {"url": "about:blank", "browserContextId": context_id}
        )
        target_id: str = target["targetId"]
        attached = await self._call(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        peer = BrowserPeer(self, attached["sessionId"], target_id, context_id)
        with self._peers_lock:
            self._peers[peer._session_id] = peer
        try:
            with anyio.fail_after(timeout):
                await peer._load(self.page_url)
        except TimeoutError:
            await peer.aclose()
            raise BrowserTimeout(
                f"the peer page did not load within {timeout} s; console:\n"
                + "\n".join(peer.console)
            ) from None
        except BaseException:
            await peer.aclose()
            raise
        return peer


# -- one page ------------------------------------------------------------------------------


class BrowserPeer:
    """One page of a [`Chromium`][lkkit.testing.Chromium], running livekit-client: a
    LiveKit participant in a real browser.

    Drive it with [`connect`][lkkit.testing.BrowserPeer.connect], video with
    [`publish_canvas`][lkkit.testing.BrowserPeer.publish_canvas] and
    [`video_info`][lkkit.testing.BrowserPeer.video_info],
    [`call`][lkkit.testing.BrowserPeer.call] (the page's helpers in
    `browser/page.js`: `publishData`, `sendBytes`, `sendText`, `registerByteStream`,
    `registerTextStream`, `publishTone`, `mute`, `setMetadata`, `audioSnapshot`, ...)
    or any JavaScript with [`evaluate`][lkkit.testing.BrowserPeer.evaluate] (the room
    is `window.lkkit.room`, livekit-client is `window.LivekitClient`). What happens in
    the room arrives as [`BrowserEvent`][lkkit.testing.BrowserEvent]s, all kept in
    order: [`events`][lkkit.testing.BrowserPeer.events],
    [`wait_for`][lkkit.testing.BrowserPeer.wait_for],
    [`iter_events`][lkkit.testing.BrowserPeer.iter_events].

    Bound to the event loop that created it.
    """

    def __init__(self, browser: Chromium, session_id: str, target_id: str, context_id: str) -> None:
        self._browser = browser
        self._session_id = session_id
        self._target_id = target_id
        self._context_id = context_id
        self._loop = asyncio.get_running_loop()
        self._events: list[BrowserEvent] = []
        self._changed = asyncio.Event()
        self._console: deque[str] = deque(maxlen=_CONSOLE_LINES)
        self._closed: str | None = None
        self._identity: str | None = None

    # -- state ---------------------------------------------------------------------

    @property
    def identity(self) -> str | None:
        """The participant identity once connected."""
        return self._identity

    @property
    def closed(self) -> bool:
        """The page is closed (by `aclose`, a crash, or the browser stopping)."""
        return self._closed is not None

    @property
    def events(self) -> tuple[BrowserEvent, ...]:
        """Every event the page recorded so far, oldest first."""
        return tuple(self._events)

    @property
    def console(self) -> tuple[str, ...]:
        """The page's console messages and uncaught exceptions (the last 1,000)."""
        return tuple(self._console)

    # -- events from the browser (reader thread, then the loop) --------------------

    def _deliver_threadsafe(self, method: str, params: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self._loop.call_soon_threadsafe(self._on_cdp_event, method, params)

    def _closed_by_browser(self, reason: str) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._mark_closed, reason)

    def _mark_closed(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_cdp_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.bindingCalled" and params.get("name") == _BINDING:
            fields = json.loads(params["payload"])
            kind = fields.pop("kind")
            self._events.append(BrowserEvent(kind, fields, time.monotonic()))
            self._wake()
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(arg.get("value", arg.get("description", arg.get("type", ""))))
                for arg in params.get("args", [])
            )
            self._console.append(f"{params.get('type', 'log')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text")
            self._console.append(f"uncaught: {description}")
        elif method in ("Inspector.detached", "Inspector.targetCrashed"):
            self._mark_closed(f"the page closed ({method}: {params.get('reason', 'crashed')})")

    # -- calling the page ----------------------------------------------------------

    async def _load(self, url: str) -> None:
        session = self._session_id
        await self._browser._call("Runtime.addBinding", {"name": _BINDING}, session_id=session)
        await self._browser._call("Runtime.enable", session_id=session)
        navigated = await self._browser._call("Page.navigate", {"url": url}, session_id=session)
        if navigated.get("errorText"):
            raise BrowserError(f"the peer page {url} did not load: {navigated['errorText']}")
        await self.wait_for("ready", timeout=_START_TIMEOUT_S)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise BrowserError(self._closed)

    async def evaluate(self, expression: str, *, timeout: float = _CALL_TIMEOUT_S) -> Any:
        """Evaluate JavaScript in the page, await it if it is a promise, and return its
        value as JSON gives it (`None` for `undefined`).

        Raises:
            JavaScriptError: it threw, or its promise rejected (the JavaScript message).
            BrowserTimeout: no answer within `timeout`.
            BrowserError: the page is closed.
        """
        self._check_open()
        result = await self._browser._call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session_id=self._session_id,
            timeout=timeout,
        )
        details = result.get("exceptionDetails")
        if details is not None:
            exception = details.get("exception", {})
            stack = str(exception.get("description") or exception.get("value") or "")
            message = stack.split("\n", 1)[0] if stack else str(details.get("text", ""))
            raise JavaScriptError(message or "JavaScript error", stack)
        return result.get("result", {}).get("value")

    async def call(self, method: str, *args: Any, timeout: float = _CALL_TIMEOUT_S) -> Any:
        """Call the page helper `window.lkkit[method]` with JSON `args` (see
        `browser/page.js`); like [`evaluate`][lkkit.testing.BrowserPeer.evaluate]."""
        return await self.evaluate(
            f"window.lkkit[{json.dumps(method)}](...{json.dumps(list(args))})", timeout=timeout
        )

    async def connect(self, url: str, token: str, *, timeout: float = _CALL_TIMEOUT_S) -> str:
        """Join the room with livekit-client's `Room.connect(url, token)`; return the
        identity.

        Raises:
            JavaScriptError: livekit-client could not connect (its message).
        """
        joined = await self.call("connect", url, token, timeout=timeout)
        self._identity = str(joined["identity"])
        return self._identity

    async def disconnect(self, *, timeout: float = 10.0) -> None:
        """Leave the room (`Room.disconnect()`), telling the server."""
        await self.call("disconnect", timeout=timeout)

    async def unpublish(self, name: str, *, timeout: float = _CALL_TIMEOUT_S) -> None:
        """Unpublish the page's track `name` (from
        [`publish_canvas`][lkkit.testing.BrowserPeer.publish_canvas] or the
        `publishTone` helper) and stop what feeds it.

        Raises:
            JavaScriptError: nothing is published as `name`, or livekit-client failed.
        """
        await self.call("unpublish", name, timeout=timeout)

    # -- video ---------------------------------------------------------------------

    async def publish_canvas(
        self,
        name: str,
        *,
        width: int,
        height: int,
        rgb: tuple[int, int, int],
        fps: float = 15.0,
        source: VideoSource = "camera",
        simulcast: bool = True,
        timeout: float = _CALL_TIMEOUT_S,
    ) -> str:
        """Publish a `width` x `height` canvas of one colour, `rgb`, as the video track
        `name`; return the track's sid.

        The canvas is repainted `fps` times a second and published as
        `canvas.captureStream(fps)`, so frames keep coming while the picture stays
        the same. livekit-client picks the encoding (and, with `simulcast`, the lower
        layers) from the size. Stop it with
        [`unpublish`][lkkit.testing.BrowserPeer.unpublish].

        Raises:
            ValueError: a size, colour or frame rate out of range.
            JavaScriptError: not connected, or livekit-client refused the track.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"the canvas size must be positive, not {width}x{height}")
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise ValueError(f"rgb must be three values from 0 to 255, not {rgb!r}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, not {fps}")
        published = await self.call(
            "publishCanvas",
            name,
            width,
            height,
            [int(c) for c in rgb],
            fps,
            source,
            simulcast,
            timeout=timeout,
        )
        return str(published["sid"])

    async def video_info(
        self, identity: str, *, source: VideoSource = "camera", timeout: float = 10.0
    ) -> BrowserVideoInfo:
        """What the page shows of `identity`'s video track of `source`: its size, the
        frames shown, and the current frame's mean colour
        ([`BrowserVideoInfo`][lkkit.testing.BrowserVideoInfo]).

        The page plays every subscribed remote video track in a muted `<video>`
        element; this waits until that track is subscribed and its element plays
        (a decoded frame, a non-zero size), then reads the element once. Call it
        again for a later frame.

        Raises:
            BrowserTimeout: no such track played within `timeout`.
            JavaScriptError: the page is not connected.
        """
        try:
            with anyio.fail_after(timeout):
                # Polled: a track can be re-subscribed into a new element, which a
                # recorded "started playing" event would not tell apart.
                while True:
                    info = await self.call("videoInfo", identity, source)
                    if info is not None:
                        break
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise BrowserTimeout(
                f"no {source} video from {identity!r} played in the page within {timeout} s"
            ) from None
        red, green, blue = (float(c) for c in info["meanRgb"])
        return BrowserVideoInfo(
            width=int(info["width"]),
            height=int(info["height"]),
            mean_rgb=(red, green, blue),
            frames=int(info["frames"]),
        )

    # -- waiting for events --------------------------------------------------------

    async def wait_for(
        self,
        kind: str,
        where: Callable[[BrowserEvent], bool] | None = None,
        *,
        timeout: float = 10.0,
    ) -> BrowserEvent:
        """The first recorded event of `kind` for which `where` is true (already
        recorded, or the next to come).

        Raises:
            BrowserTimeout: none came within `timeout` (the message lists what did).
            BrowserError: the page closed first.
        """
        checked = 0
        try:
            with anyio.fail_after(timeout):
                while True:
                    while checked < len(self._events):
                        event = self._events[checked]
                        checked += 1
                        if event.kind == kind and (where is None or where(event)):
                            return event
                    self._check_open()
                    await self._changed.wait()
        except TimeoutError:
            seen = ", ".join(e.kind for e in self._events[-20:]) or "nothing"
            raise BrowserTimeout(
                f"no {kind!r} event matching within {timeout} s; the last events: {seen}"
            ) from None

    async def iter_events(self) -> AsyncIterator[BrowserEvent]:
        """Every event, from the first recorded, as it comes; ends when the page closes.
        Bound it with a timeout (`anyio.fail_after`)."""
        index = 0
        while True:
            while index < len(self._events):
                index += 1
                yield self._events[index - 1]
            if self._closed is not None:
                return
            await self._changed.wait()

    # -- closing -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Leave the room if connected, close the page and its browser context.
        Safe to call twice."""
        if self._closed is not None:
            self._browser._forget(self._session_id)
            return
        if self._identity is not None:
            with contextlib.suppress(BrowserError):
                await self.call("disconnect", timeout=3.0)
        self._mark_closed("the page was closed")
        self._browser._forget(self._session_id)
        with contextlib.suppress(BrowserError):
            await self._browser._call(
                "Target.closeTarget", {"targetId": self._target_id}, timeout=5
            )
            await self._browser._call(
                "Target.disposeBrowserContext", {"browserContextId": self._context_id}, timeout=5
            )

    async def __aenter__(self) -> BrowserPeer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<BrowserPeer identity={self._identity!r} {state} events={len(self._events)}>"
