"""What every benchmark shares: one local server, tokens, and the result table."""

from __future__ import annotations

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

    @property
    def ratio(self) -> float:
        """lkkit / baseline."""
        return self.lkkit / self.baseline if self.baseline else float("inf")


def report(title: str, rows: Sequence[Comparison]) -> None:
    """Print a table of comparisons with their lkkit/baseline ratio."""
    print(f"\n## {title}")
    header = f"{'measure':44} {'lkkit':>12} {'baseline':>12} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name + ' (' + row.unit + ')':44} {row.lkkit:12.4g} {row.baseline:12.4g} "
            f"{row.ratio:7.3f}  {row.target} [baseline: {row.baseline_name}]"
        )


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
