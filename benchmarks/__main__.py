"""`python -m benchmarks [NAME ...] [--quick]`: run the benchmarks (all by default).

Each `benchmarks/bench_NAME.py` defines `async def main(server, quick) -> None`, which
measures lkkit and the raw SDK in the same run and prints ratios. One local
livekit-server is shared by all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import pkgutil
from pathlib import Path

from lkkit.testing import LocalLiveKitServer


def _available() -> list[str]:
    folder = Path(__file__).parent
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(folder)])
        if m.name.startswith("bench_")
    )


async def _run(names: list[str], quick: bool) -> None:
    async with LocalLiveKitServer(log_level="warn") as server:
        for name in names:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            await module.main(server, quick)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(_available())}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    names = args.names or _available()
    unknown = set(names) - set(_available())
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    asyncio.run(_run(names, args.quick))


if __name__ == "__main__":
    main()
