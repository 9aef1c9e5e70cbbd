"""What the explorer shows about each peer, folded from the ledger's entries as they arrive.

Rules (``specs/explorer.md``):

* Scores come from ``darwin.ledger.ReputationState`` (the one implementation of
  ``specs/reputation.md``), fed each entry once, at the ``now_ms`` the book was opened for; the
  trust rounds run again only when a table is drawn after new entries (``rows``).
* The counts beside the score are plain counts of entries about the peer (the score holds the
  decayed, weighted ones): requests served (own ``success``), the median of the owner's latency
  observations, verdicts by outcome, and the time of the newest entry about it.
* The trust history samples every peer's trust ``HISTORY_POINTS`` times over the ledger, each
  from the evidence up to that point, weighed as of ``now_ms``.
* Confidence is the half-width of the 95 % interval of the beta estimate behind the trust:
  ``1.96 * sqrt(αβ / ((α + β)² (α + β + 1)))``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from darwin.ledger import (
    DEFAULT_PARAMS,
    Entry,
    Latency,
    ReputationParams,
    ReputationState,
    Score,
    Success,
    Verdict,
    VerdictOutcome,
    unknown_score,
)
from darwin.protocol import PeerId, short_peer_id

from .source import LedgerSource

__all__ = ["HISTORY_POINTS", "PeerBook", "PeerRow", "PeerStatus", "confidence", "status_of"]

HISTORY_POINTS = 24  # samples taken while a ledger is loaded
HISTORY_KEPT = 120  # samples kept per peer; live updates add one per batch of new entries
LOAD_PAGE = 5_000  # the most entries read in one query while loading


class PeerStatus(StrEnum):
    """How the owner treats a peer (``specs/reputation.md`` rules 5 and 6)."""

    TRUSTED = "trusted"
    PROBATION = "probation"
    BANNED = "banned"


def status_of(score: Score) -> PeerStatus:
    if score.banned:
        return PeerStatus.BANNED
    return PeerStatus.PROBATION if score.probation else PeerStatus.TRUSTED


def confidence(score: Score, params: ReputationParams = DEFAULT_PARAMS) -> float:
    """The half-width of the 95 % interval of ``score``'s beta estimate (0 when banned)."""
    if score.banned:
        return 0.0
    alpha = params.prior_successes + score.successes
    beta = params.prior_failures + score.failures
    total = alpha + beta
    return 1.96 * math.sqrt(alpha * beta / (total * total * (total + 1.0)))


@dataclass
class _Counts:
    served: int = 0
    latencies: list[int] = field(default_factory=list)
    verdicts: dict[VerdictOutcome, int] = field(
        default_factory=lambda: dict.fromkeys(VerdictOutcome, 0))
    last_seen_ms: int | None = None


@dataclass(frozen=True)
class PeerRow:
    """One line of the peers table."""

    score: Score
    status: PeerStatus
    confidence: float
    served: int
    latency_p50_ms: float | None
    verdicts: dict[VerdictOutcome, int]
    last_seen_ms: int | None

    @property
    def peer(self) -> PeerId:
        return self.score.peer

    @property
    def short(self) -> str:
        return short_peer_id(self.score.peer)

    def to_json(self) -> dict[str, object]:
        """The score's own JSON view, with the explorer's counts beside it."""
        return {**self.score.to_json(), "status": str(self.status),
                "confidence": self.confidence, "served": self.served,
                "latency_p50_ms": self.latency_p50_ms,
                "verdicts": {str(outcome): count for outcome, count in self.verdicts.items()},
                "last_seen_ms": self.last_seen_ms}


class PeerBook:
    """Every peer's score and counts, kept up to date one entry at a time."""

    def __init__(self, owner: PeerId, *, now_ms: int,
                 params: ReputationParams = DEFAULT_PARAMS) -> None:
        self.owner = owner
        self.now_ms = now_ms
        self.params = params
        self.head_seq = 0  # the last entry folded in
        self._state = ReputationState(owner, now_ms=now_ms, params=params)
        self._counts: dict[PeerId, _Counts] = {}
        self._scores: dict[PeerId, Score] | None = {}
        self.history: dict[PeerId, list[float]] = {}

    @classmethod
    def load(cls, source: LedgerSource, *, now_ms: int,
             params: ReputationParams = DEFAULT_PARAMS,
             progress: Callable[[int, int], None] | None = None) -> PeerBook:
        """Fold every entry of ``source`` in, sampling the history as it goes.

        Args:
            progress: called with (entries folded, entries at the start) after each page.

        Raises:
            LedgerUnavailable: the ledger cannot be read.
        """
        book = cls(PeerId(source.owner), now_ms=now_ms, params=params)
        total = source.count()
        page = max(1, min(LOAD_PAGE, total // HISTORY_POINTS))
        while entries := source.entries_after(book.head_seq, limit=page):
            book.add(entries)
            book.sample_history()
            if progress is not None:
                progress(book.head_seq, total)
        return book

    def add(self, entries: Iterable[Entry]) -> None:
        """Fold entries in, in seq order; ones already folded (by seq) are skipped."""
        for entry in entries:
            if entry.seq <= self.head_seq:
                continue
            self.head_seq = entry.seq
            if not self._state.add(entry):
                continue
            self._scores = None
            self._count(entry)

    def _count(self, entry: Entry) -> None:
        subject = PeerId(entry.subject)
        if subject in ("", self.owner):
            return
        counts = self._counts.setdefault(subject, _Counts())
        body = entry.body
        if isinstance(body, Success):
            counts.served += 1
        elif isinstance(body, Latency):
            counts.latencies.append(body.latency_ms)
        elif isinstance(body, Verdict) and entry.signer != subject:
            counts.verdicts[body.outcome] += 1
        if counts.last_seen_ms is None or entry.time_ms > counts.last_seen_ms:
            counts.last_seen_ms = entry.time_ms

    def scores(self) -> dict[PeerId, Score]:
        """Every peer's score; the trust rounds run again only after new entries."""
        if self._scores is None:
            self._scores = self._state.scores()
        return self._scores

    def score(self, peer: str) -> Score:
        """``peer``'s score, or the prior for a key the ledger never mentions."""
        return self.scores().get(PeerId(peer)) or unknown_score(PeerId(peer), self.params)

    def sample_history(self) -> None:
        """Append every scored peer's current trust to its history."""
        for peer, score in self.scores().items():
            history = self.history.setdefault(peer, [])
            history.append(score.trust)
            del history[:-HISTORY_KEPT]

    def row(self, peer: PeerId) -> PeerRow:
        score = self.score(peer)
        counts = self._counts.get(peer, _Counts())
        p50 = statistics.median(counts.latencies) if counts.latencies else None
        return PeerRow(score=score, status=status_of(score),
                       confidence=confidence(score, self.params), served=counts.served,
                       latency_p50_ms=None if p50 is None else float(p50),
                       verdicts=dict(counts.verdicts), last_seen_ms=counts.last_seen_ms)

    def rows(self) -> list[PeerRow]:
        """Every peer's row, in peer id order."""
        return [self.row(peer) for peer in self.scores()]
