"""What every benchmark shares: one local server, tokens, and the result table."""

from __future__ import annotations

import os
import random
import secrets
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import lkkit
from lkkit.testing import LocalLiveKitServer


@dataclass(frozen=True)
class Comparison:
    """One measured quantity for lkkit and for the raw SDK (or another baseline)."""

    name: str
    unit: str
    lkkit: float
    baseline: float
    baseline_name: str = "raw SDK"
    target: str = ""
    lower_is_better: bool = True
    paired: Paired | None = None
    """When measured in pairs: the ratio is the median of the pairs' ratios, shown
    with its 95% interval."""

    @property
    def ratio(self) -> float:
        """lkkit / baseline (the median paired ratio when paired)."""
        if self.paired is not None:
            return self.paired.median
        return self.lkkit / self.baseline if self.baseline else float("inf")


@dataclass(frozen=True)
class Paired:
    """The ratios of measurements taken in pairs (lkkit and the baseline side by side
    or back to back, so that the machine's load drifts out): their median and a 95%
    bootstrap interval of that median."""

    ratios: tuple[float, ...]
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, lkkit: Sequence[float], baseline: Sequence[float]) -> Paired:
        ratios = tuple(a / b for a, b in zip(lkkit, baseline, strict=True) if b)
        rng = random.Random(0)  # the same interval for the same data
        medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
        return cls(ratios, statistics.median(ratios), medians[50], medians[1949])

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}]"


def report(title: str, rows: Sequence[Comparison]) -> None:
    """Print a table of comparisons with their lkkit/baseline ratio."""
    print(f"\n## {title}")
    header = f"{'measure':44} {'lkkit':>12} {'baseline':>12} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    for row in rows:
        interval = (
            f" (95%: {row.paired.low:.3f}-{row.paired.high:.3f}, {len(row.paired.ratios)} pairs)"
            if row.paired is not None
            else ""
        )
        print(
            f"{row.name + ' (' + row.unit + ')':44} {row.lkkit:12.4g} {row.baseline:12.4g} "
            f"{row.ratio:7.3f}  {row.target}{interval} [baseline: {row.baseline_name}]"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def room_name(prefix: str) -> str:
    return f"bench-{prefix}-{secrets.token_hex(3)}"


def token(server: LocalLiveKitServer, room: str, identity: str, **grants: object) -> str:
    fields: dict[str, object] = {"room_join": True, "room": room, **grants}
    return lkkit.Token(identity=identity, grants=lkkit.Grants.model_validate(fields)).sign(
        server.credentials
    )


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `samples`."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]
