"""How long each node's hop took per step, summarised once per session for the ledger.

Rules (``specs/ledger.md`` §7):
- A sample is the time one live step spent on one hop, measured by the client on trio's
  monotonic clock: relayed, from sending the hop its input to holding its checked result;
  pushed, the time the hop added to the step (from the previous hop's checked result, or from
  sending the step for the first hop, to this hop's checked result).
- The summary of a session is, per node, the median of its samples in whole milliseconds,
  capped at the ledger's bound: one ``latency`` entry per node per session however long the
  generation ran. The median, because the first step (the whole prompt) is an outlier that a
  mean would carry into every later routing decision.
- At most ``MAX_SAMPLES`` samples are kept per node (the latest), so memory is bounded too.
"""

from __future__ import annotations

import collections
import statistics

from darwin.ledger.entries import MAX_LATENCY_MS

MAX_SAMPLES = 1024  # per node and session: the median of the latest thousand steps


class StepLatencies:
    """The per-step hop times of one session, by node."""

    def __init__(self, max_samples: int = MAX_SAMPLES) -> None:
        self.max_samples = max_samples
        self._samples: dict[str, collections.deque[float]] = {}

    def add(self, peer: str, seconds: float) -> None:
        """One step's time on `peer`'s hop (a negative time, from clock jitter, counts as 0)."""
        samples = self._samples.setdefault(str(peer), collections.deque(maxlen=self.max_samples))
        samples.append(max(0.0, seconds))

    def medians_ms(self) -> dict[str, int]:
        """Per node with samples, the median step time in milliseconds (the ledger's ints)."""
        return {peer: min(MAX_LATENCY_MS, round(statistics.median(samples) * 1000))
                for peer, samples in self._samples.items()}
