"""The pytest plugin is loaded in every pytest run of every project that installs lkkit,
so loading it must stay cheap: no SDK, no numpy, no pydantic, no session machinery until
a test asks for one of its fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# What loading the plugin must not import: the SDK (and its native library), the heavy
# dependencies, and lkkit's own session machinery.
HEAVY_MODULES = ("livekit", "livekit.rtc", "livekit.api", "numpy", "pydantic", "lkkit._session")


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    # The subprocesses must load the plugin the way a user's pytest run does.
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def test_importing_the_plugin_imports_no_heavy_module() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import lkkit
        import lkkit.testing._pytest_plugin
        assert lkkit.__version__
        print(",".join(m for m in {HEAVY_MODULES!r} if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    )
    assert result.stdout.strip() == "", f"imported by the plugin: {result.stdout.strip()}"


def test_a_pytest_run_that_uses_no_fixture_imports_no_heavy_module(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_trivial.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            def test_trivial(pytestconfig):
                assert pytestconfig.pluginmanager.has_plugin("lkkit")
                loaded = [m for m in {HEAVY_MODULES!r} if m in sys.modules]
                assert loaded == []
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
