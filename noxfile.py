"""Developer tasks. `nox -s tests` is the one command that runs the whole test suite.

Every session that talks to a livekit-server builds it first (cached in
`.cache/livekit-server/`) and runs inside lkkit's loopback sandbox, so WebRTC media
never leaves 127.0.0.0/8. The test sessions also install the browser test peer first
(Chromium with apt-get when missing, livekit-client with `npm ci` into `.cache/browser/`)
and Redis for the multi-node tests (`redis-server` with apt-get when missing): outside
the sandbox, which has no network.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install("-e", f".[{extras}]")


def _in_sandbox(
    session: nox.Session, *command: str, browser: bool = False, redis: bool = False
) -> None:
    session.run("python", "-m", "lkkit.testing", "install-server")
    if browser:
        session.run("python", "-m", "lkkit.testing", "install-browser")
    if redis:
        session.run("python", "-m", "lkkit.testing", "install-redis")
    session.run("python", "-m", "lkkit.testing", "sandbox", "--", *command)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite against a real livekit-server."""
    _install(session)
    _in_sandbox(session, "python", "-m", "pytest", *session.posargs, browser=True, redis=True)


# The lowest versions pyproject.toml allows; `tests_lowest` proves those bounds.
LOWEST = [
    "livekit==1.2.1",
    "livekit-api==1.2.2",
    "numpy==2.0.*",
    "pydantic==2.10.*",
    "anyio==4.6.*",
]


@nox.session
def tests_lowest(session: nox.Session) -> None:
    """The test suite with every runtime dependency at its lowest allowed version."""
    _install(session)
    session.install(*LOWEST)
    _in_sandbox(session, "python", "-m", "pytest", *session.posargs, browser=True, redis=True)


@nox.session
def tests_latest(session: nox.Session) -> None:
    """The test suite with the newest SDK release, past pyproject.toml's upper bound.

    lkkit uses SDK internals (all in `lkkit/_sdk_compat.py`); `tests/test_sdk_compat.py`
    names any that a new release changed.
    """
    _install(session)
    session.install("--upgrade", "livekit", "livekit-api", "livekit-protocol")
    _in_sandbox(session, "python", "-m", "pytest", *session.posargs, browser=True, redis=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the library, its tests, the demo and the benchmarks."""
    _install(session)
    session.install("mypy>=1.13")
    session.run("mypy", "--strict", "src", "tests", "examples", "benchmarks")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with mkdocs --strict."""
    _install(session, "dev")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def soak(session: nox.Session) -> None:
    """The long load and leak tests: 5 minutes of traffic, 200 connect/leave cycles."""
    _install(session)
    session.env["LKKIT_SOAK_SECONDS"] = "300"
    session.env["LKKIT_SOAK_CYCLES"] = "200"
    _in_sandbox(session, "python", "-m", "pytest", "-s", "tests/test_soak.py", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The fuzz properties (tests/test_fuzz.py) long: 10,000 examples each (or
    `LKKIT_FUZZ_EXAMPLES`), then 30 s each under atheris, coverage-guided (the inputs
    it crashes on go to `.cache/fuzz/`). No server needed."""
    _install(session)
    session.install("atheris")
    session.env["LKKIT_FUZZ_EXAMPLES"] = os.environ.get("LKKIT_FUZZ_EXAMPLES", "10000")
    session.run("python", "-m", "pytest", "--timeout=0", "tests/test_fuzz.py", *session.posargs)
    Path(".cache/fuzz").mkdir(parents=True, exist_ok=True)
    listed = session.run("python", "tests/test_fuzz.py", "--list", silent=True)
    for name in str(listed).split():
        session.run(
            "python",
            "tests/test_fuzz.py",
            name,
            "-max_total_time=30",
            "-len_control=0",  # long inputs at once: hypothesis draws many choices
            "-artifact_prefix=.cache/fuzz/",
        )


@nox.session
def demo(session: nox.Session) -> None:
    """Start a local server; two sessions join a room, one sends a message, both leave."""
    _install(session)
    _in_sandbox(session, "python", "-m", "lkkit", "demo")


# The agents benchmark's baseline: livekit-agents pins an older `livekit`, so it gets a
# virtualenv of its own (kept in .cache/), made here, outside the sandbox, which has no
# package index.
LIVEKIT_AGENTS_BASELINE = "livekit-agents==1.8.9"


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: lkkit against the raw SDK (or livekit-agents) in the same run."""
    _install(session)
    baseline = Path(".cache") / "livekit-agents-1.8.9"
    if not (baseline / "bin" / "python").exists():
        session.run("python", "-m", "venv", str(baseline))
        session.run(str(baseline / "bin" / "pip"), "install", "-q", LIVEKIT_AGENTS_BASELINE)
    _in_sandbox(session, "python", "-m", "benchmarks", *session.posargs)
