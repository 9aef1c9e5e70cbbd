"""What a run measures, per policy: time series in buckets, and the totals behind the claims.

Inference and verification are counted in *layer-tokens* (one layer run over one token's
position): a hop of ``b`` blocks serving a request costs ``b * (prompt + steps)``; a challenge
of step ``k`` re-runs one layer over the ``prompt + k + 1`` positions it reveals
(``specs/verification.md`` section 1), which is what a verifier computes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

__all__ = ["SERIES", "Metrics"]

SERIES = ("requests", "no_route", "touched", "corrupted", "latency_s", "tokens",
          "inference", "verification", "checks")


@dataclass
class Metrics:
    duration_s: float
    buckets: int
    series: dict[str, list[float]] = field(default_factory=dict)
    detection_delays_s: list[float] = field(default_factory=list)
    cheaters: int = 0  # keys that cheated at least once
    false_bans: list[str] = field(default_factory=list)  # honest keys some client banned
    refuted_accusations: int = 0
    hops_to_slow: int = 0
    hops: int = 0

    def __post_init__(self) -> None:
        self.series = {name: [0.0] * self.buckets for name in SERIES}

    def add(self, now_s: float, **values: float) -> None:
        bucket = min(self.buckets - 1, max(0, int(now_s / self.duration_s * self.buckets)))
        for name, value in values.items():
            self.series[name][bucket] += value

    def _share(self, name: str, of: str, start: int) -> float:
        total = sum(self.series[of][start:])
        return sum(self.series[name][start:]) / total if total else 0.0

    def summary(self, slow_share: float) -> dict[str, float | int | None]:
        """The headline numbers; *steady* is the second half of the run (after warm-up)."""
        half = self.buckets // 2
        requests = sum(self.series["requests"])
        delays = sorted(self.detection_delays_s)
        return {
            "requests": int(requests),
            "no_route": int(sum(self.series["no_route"])),
            "touched_share": self._share("touched", "requests", 0),
            "touched_share_steady": self._share("touched", "requests", half),
            "corrupted_share": self._share("corrupted", "requests", 0),
            "corrupted_share_steady": self._share("corrupted", "requests", half),
            "verification_cost_steady": self._share("verification", "inference", half),
            "verification_cost": self._share("verification", "inference", 0),
            "latency_s_mean": self._share("latency_s", "requests", 0),
            "tokens_per_s": (sum(self.series["tokens"]) / sum(self.series["latency_s"])
                             if sum(self.series["latency_s"]) else 0.0),
            "cheaters": self.cheaters,
            "cheaters_caught": len(delays),
            "detection_delay_s_median": statistics.median(delays) if delays else None,
            "detection_delay_s_p90": delays[int(0.9 * (len(delays) - 1))] if delays else None,
            "false_bans": len(self.false_bans),
            "refuted_accusations": self.refuted_accusations,
            "slow_traffic_share": self.hops_to_slow / self.hops if self.hops else 0.0,
            "slow_node_share": slow_share,
        }

    def to_json(self, slow_share: float) -> dict[str, object]:
        return {"summary": self.summary(slow_share), "series": self.series,
                "detection_delays_s": self.detection_delays_s, "false_bans": self.false_bans}
