"""Reputation: a deterministic function of a ledger's entries.

Rules (reasoning and every constant in ``specs/reputation.md``):

* Pure: ``reputation(entries, now_ms=..., params=...)`` reads no clock, no file and no global
  state. The entries are put in a canonical order (by time, signer, signature...) and duplicate
  records are counted once, so the same set of entries gives bit-identical scores in any input
  order, on any node.
* Per peer, a beta estimate: ``trust = α / (α + β)`` with ``α = prior + successes`` and
  ``β = prior + failures``; every piece of evidence is weighted by ``2 ** (-age / half_life)``.
* The owner's own observations weigh 1. A verdict weighs as much as its verifier is trusted
  (0 while the verifier is banned or on probation): trust is computed in rounds, starting from the
  owner's observations alone, until the verifiers' weights stop changing (EigenTrust's fixed
  point, seeded by the owner). One verifier's verdicts about one subject are capped.
* A fraud proof the owner confirmed bans its subject for good (trust 0, no traffic). A refuted
  accusation costs the accuser a penalty and voids its fail verdicts about that subject.
* A key is on probation until its weighted successes reach ``probation_successes``: it gets at
  most ``probation_traffic_share`` of the traffic and every one of its traces is verified.
* Owner-only kinds signed by someone else are ignored (``verify_ledger`` flags them); the owner
  is never scored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from darwin.protocol import PeerId

from .entries import (
    OWNER_KINDS,
    AccusationRefuted,
    EntryKind,
    Failure,
    FraudProof,
    FraudStatus,
    Latency,
    ProtocolViolation,
    Success,
    Verdict,
    VerdictOutcome,
)
from .record import Entry, Record

__all__ = ["DEFAULT_PARAMS", "ReputationParams", "ReputationState", "Score", "reputation",
           "unknown_score", "verification_rate", "verifier_weight"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class ReputationParams:
    """Every constant of the scoring; the reasoning for each is in ``specs/reputation.md``."""

    # Evidence loses half its weight every week: recent behaviour dominates, a long honest
    # history still counts, and a key that goes quiet drifts back toward the prior.
    half_life_ms: int = 7 * DAY_MS
    # Beta prior (α0, β0) = (1, 1): a key with no evidence has trust 0.5, and a single
    # observation moves it noticeably but not to an extreme.
    prior_successes: float = 1.0
    prior_failures: float = 1.0
    # One failed request (timeout, dropped stream) counts as one failure: often the network's
    # fault, so it weighs the same as one success.
    failure_weight: float = 1.0
    # A protocol violation (bad receipt, malformed frame) is never the network's fault.
    violation_weight: float = 3.0
    # A verified pass is worth one success, times the verifier's trust.
    pass_weight: float = 1.0
    # A failed verification is strong evidence of cheating: a cheater cheats only now and then,
    # so one caught fail outweighs several passes.
    fail_weight: float = 5.0
    # An unanswered challenge may be a crash, or a node hiding that it did not keep activations.
    unresponsive_weight: float = 1.0
    # A refuted accusation (the proof did not hold when re-run) costs the accuser this many
    # failures: false accusations must cost more than they can gain.
    refuted_accusation_penalty: float = 10.0
    # The most (decayed) verdicts one verifier contributes about one subject before its trust
    # weight: a colluding verifier cannot inflate (or sink) a peer by volume.
    verdict_cap: float = 20.0
    # A key leaves probation after this many weighted successes.
    probation_successes: float = 10.0
    # Share of traffic a key on probation may get at most (routing enforces it).
    probation_traffic_share: float = 0.1
    # Rounds of the trust fixed point, and the change in verifier weights that counts as fixed.
    trust_rounds: int = 16
    trust_tolerance: float = 1e-9
    # The verification rate never falls below this, however trusted a peer is.
    verification_rate_floor: float = 0.05
    # At or below this trust (and on probation) every trace is verified; above, the rate falls
    # in proportion to the remaining distrust: rate = (1 - trust) / (1 - this).
    full_verification_trust: float = 0.5

    def __post_init__(self) -> None:
        """Raises ValueError: if a constant is out of its range."""
        positive = ("half_life_ms", "prior_successes", "prior_failures", "trust_rounds")
        if any(getattr(self, name) <= 0 for name in positive):
            raise ValueError(f"ReputationParams: {', '.join(positive)} must be positive")
        weights = ("failure_weight", "violation_weight", "pass_weight", "fail_weight",
                   "unresponsive_weight", "refuted_accusation_penalty", "verdict_cap",
                   "probation_successes", "trust_tolerance")
        if any(getattr(self, name) < 0 for name in weights):
            raise ValueError(f"ReputationParams: {', '.join(weights)} must be non-negative")
        shares = (self.probation_traffic_share, self.verification_rate_floor)
        if not all(0.0 <= share <= 1.0 for share in shares) \
                or not 0.0 <= self.full_verification_trust < 1.0:
            raise ValueError("ReputationParams: shares and rates must be in [0, 1]")


DEFAULT_PARAMS = ReputationParams()


@dataclass(frozen=True)
class Score:
    """What the ledger says about one peer at one moment."""

    peer: PeerId
    trust: float  # 0..1, the decayed beta estimate; 0 when banned
    successes: float  # decayed weighted evidence for (own successes + weighted passes)
    failures: float  # decayed weighted evidence against (failures, violations, fails...)
    banned: bool  # a confirmed fraud proof: never route to it, ignore its verdicts
    probation: bool  # too little evidence yet: bounded traffic, every trace verified
    verified_passes: float  # decayed verdict passes, each times its verifier's trust
    verified_fails: float  # decayed verdict fails, each times its verifier's trust
    traffic_share_cap: float  # the most of the traffic routing may give it (0..1)
    latency_ms: float | None  # decayed mean of the owner's latency observations

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"peer": self.peer, "trust": self.trust, "successes": self.successes,
                "failures": self.failures, "banned": self.banned, "probation": self.probation,
                "verified_passes": self.verified_passes, "verified_fails": self.verified_fails,
                "traffic_share_cap": self.traffic_share_cap, "latency_ms": self.latency_ms}


def unknown_score(peer: PeerId, params: ReputationParams = DEFAULT_PARAMS) -> Score:
    """The score of a key the ledger says nothing about: the prior, on probation."""
    prior = params.prior_successes / (params.prior_successes + params.prior_failures)
    return Score(peer, prior, 0.0, 0.0, False, True, 0.0, 0.0,
                 params.probation_traffic_share, None)


def verification_rate(score: Score, params: ReputationParams = DEFAULT_PARAMS) -> float:
    """The probability that a trace through ``score.peer`` is sent to a verifier.

    1.0 on probation (and for a banned key, should it ever be used); above
    ``full_verification_trust`` it falls in proportion to the remaining distrust, down to
    ``verification_rate_floor``.
    """
    if score.banned or score.probation:
        return 1.0
    rate = (1.0 - score.trust) / (1.0 - params.full_verification_trust)
    return min(1.0, max(params.verification_rate_floor, rate))


def verifier_weight(score: Score) -> float:
    """How much a verdict signed by ``score.peer`` counts: its trust, 0 if banned or new."""
    return 0.0 if score.banned or score.probation else score.trust


@dataclass
class _Direct:
    """The owner's own decayed observations of one peer."""

    successes: float = 0.0
    failures: float = 0.0
    latency_weight: float = 0.0
    latency_sum: float = 0.0


@dataclass
class _Tally:
    """One verifier's decayed verdicts about one subject."""

    passes: float = 0.0
    fails: float = 0.0
    unresponsive: float = 0.0

    def capped(self, cap: float) -> _Tally:
        total = self.passes + self.fails + self.unresponsive
        if total <= cap:
            return self
        scale = cap / total
        return _Tally(self.passes * scale, self.fails * scale, self.unresponsive * scale)


@dataclass
class _Evidence:
    """Everything the ledger says, aggregated once; the trust rounds only re-weight it."""

    owner: PeerId
    peers: set[PeerId] = field(default_factory=set)
    direct: dict[PeerId, _Direct] = field(default_factory=dict)
    tallies: dict[tuple[PeerId, PeerId], _Tally] = field(default_factory=dict)
    penalties: dict[PeerId, float] = field(default_factory=dict)
    banned: set[PeerId] = field(default_factory=set)
    refuted: set[tuple[PeerId, PeerId]] = field(default_factory=set)

    def note(self, *peers: str) -> None:
        self.peers.update(PeerId(peer) for peer in peers if peer != self.owner)


def _canonical(entries: Iterable[Entry | Record]) -> list[Record]:
    """The distinct records, in an order that depends only on their content."""
    records: dict[tuple[str, bytes], Record] = {}
    for item in entries:
        record = item.record if isinstance(item, Entry) else item
        records.setdefault((record.signer, record.signature), record)
    return sorted(records.values(), key=lambda r: (r.time_ms, r.signer, r.signature, r.kind,
                                                   r.subject, r.payload, r.anchor))


def _find_owner(records: list[Record], owner: PeerId | None) -> PeerId:
    if owner is not None:
        return owner
    owners = {record.signer for record in records if record.kind == EntryKind.GENESIS}
    if len(owners) != 1:
        raise ValueError("pass owner=: the entries hold no single genesis to name the owner")
    return owners.pop()


def _collect(records: Iterable[Record], evidence: _Evidence, now_ms: int,
             params: ReputationParams) -> None:
    """Fold records into the evidence: each one only adds to sums, so the fold is incremental."""
    owner = evidence.owner
    for record in records:
        subject = PeerId(record.subject)
        if (record.kind in OWNER_KINDS and record.signer != owner) or subject in ("", owner):
            continue  # invalid for scoring, or about no one / ourselves
        decay = 2.0 ** (-max(0, now_ms - record.time_ms) / params.half_life_ms)
        evidence.note(subject)
        body = record.body
        direct = evidence.direct.setdefault(subject, _Direct())
        if isinstance(body, Success):
            direct.successes += decay
        elif isinstance(body, Failure):
            direct.failures += decay * params.failure_weight
        elif isinstance(body, ProtocolViolation):
            direct.failures += decay * params.violation_weight
        elif isinstance(body, Latency):
            direct.latency_weight += decay
            direct.latency_sum += decay * body.latency_ms
        elif isinstance(body, Verdict) and record.signer != subject:
            evidence.note(record.signer)
            tally = evidence.tallies.setdefault((record.signer, subject), _Tally())
            if body.outcome == VerdictOutcome.PASS:
                tally.passes += decay
            elif body.outcome == VerdictOutcome.FAIL:
                tally.fails += decay
            else:
                tally.unresponsive += decay
        elif isinstance(body, FraudProof):
            evidence.note(body.accuser)
            if body.status == FraudStatus.CONFIRMED:
                evidence.banned.add(subject)
        elif isinstance(body, AccusationRefuted):
            accuser = PeerId(body.accuser)
            evidence.note(accuser)
            penalty = decay * params.refuted_accusation_penalty
            evidence.penalties[accuser] = evidence.penalties.get(accuser, 0.0) + penalty
            evidence.refuted.add((accuser, subject))


def _verdicts_by_subject(evidence: _Evidence,
                         params: ReputationParams) -> dict[PeerId, list[tuple[PeerId, _Tally]]]:
    """Per subject, (verifier, tally) sorted by verifier: refuted fails voided, volume capped."""
    by_subject: dict[PeerId, list[tuple[PeerId, _Tally]]] = {}
    for (verifier, subject), tally in sorted(evidence.tallies.items()):
        if (verifier, subject) in evidence.refuted:
            tally = _Tally(tally.passes, 0.0, tally.unresponsive)
        if verifier != evidence.owner:
            tally = tally.capped(params.verdict_cap)
        by_subject.setdefault(subject, []).append((verifier, tally))
    return by_subject


def _score(peer: PeerId, evidence: _Evidence, verdicts: list[tuple[PeerId, _Tally]],
           weights: dict[PeerId, float], params: ReputationParams) -> Score:
    direct = evidence.direct.get(peer, _Direct())
    passes = fails = unresponsive = 0.0
    for verifier, tally in verdicts:
        weight = weights.get(verifier, 0.0)
        passes += weight * tally.passes
        fails += weight * tally.fails
        unresponsive += weight * tally.unresponsive
    successes = direct.successes + params.pass_weight * passes
    failures = (direct.failures + params.fail_weight * fails
                + params.unresponsive_weight * unresponsive + evidence.penalties.get(peer, 0.0))
    alpha = params.prior_successes + successes
    beta = params.prior_failures + failures
    banned = peer in evidence.banned
    probation = not banned and successes < params.probation_successes
    latency = direct.latency_sum / direct.latency_weight if direct.latency_weight else None
    share = 0.0 if banned else params.probation_traffic_share if probation else 1.0
    return Score(peer=peer, trust=0.0 if banned else alpha / (alpha + beta),
                 successes=successes, failures=failures, banned=banned, probation=probation,
                 verified_passes=passes, verified_fails=fails, traffic_share_cap=share,
                 latency_ms=latency)


def reputation(
    entries: Iterable[Entry | Record],
    *,
    now_ms: int,
    params: ReputationParams = DEFAULT_PARAMS,
    owner: PeerId | None = None,
) -> dict[PeerId, Score]:
    """Score every peer the entries mention, as seen by the ledger's owner at ``now_ms``.

    Args:
        entries: a ledger's entries (or bare records), in any order.
        now_ms: the moment the scores are for; evidence is decayed by its age at that moment
            (evidence dated after it counts as new).
        params: the scoring constants.
        owner: whose observations are trusted fully; by default the signer of the genesis.

    Returns:
        A score per peer id, the owner excluded, in peer id order.

    Raises:
        ValueError: ``owner`` is not given and the entries hold no single genesis.
    """
    records = _canonical(entries)
    state = ReputationState(_find_owner(records, owner), now_ms=now_ms, params=params)
    for record in records:
        state.add(record)
    return state.scores()


class ReputationState:
    """A ledger's evidence folded one record at a time: ``reputation`` kept up to date as
    entries arrive (the explorer's live view) without re-reading the ledger.

    ``add`` costs one record's arithmetic; ``scores`` runs the trust rounds over the aggregated
    evidence (its cost grows with peers and verdict pairs, not entries). A record is counted
    once by (signer, signature). The scores are ``reputation``'s over the same records at the
    same ``now_ms``: bit-identical when they were added in its canonical order, equal within
    float rounding in any other (the sums are taken in another order).
    """

    def __init__(self, owner: PeerId, *, now_ms: int,
                 params: ReputationParams = DEFAULT_PARAMS) -> None:
        self.owner = owner
        self.now_ms = now_ms
        self.params = params
        self._evidence = _Evidence(owner)
        self._seen: set[tuple[str, bytes]] = set()

    def add(self, item: Entry | Record) -> bool:
        """Fold one entry or record in; False (and nothing changes) if it was already added."""
        record = item.record if isinstance(item, Entry) else item
        key = (record.signer, record.signature)
        if key in self._seen:
            return False
        self._seen.add(key)
        _collect((record,), self._evidence, self.now_ms, self.params)
        return True

    def scores(self) -> dict[PeerId, Score]:
        """Every mentioned peer's score (the owner excluded), in peer id order."""
        evidence, params, owner = self._evidence, self.params, self.owner
        verdicts = _verdicts_by_subject(evidence, params)
        peers = sorted(evidence.peers)
        weights: dict[PeerId, float] = {owner: 1.0}
        scores: dict[PeerId, Score] = {}
        for _ in range(params.trust_rounds):
            scores = {peer: _score(peer, evidence, verdicts.get(peer, []), weights, params)
                      for peer in peers}
            updated = {owner: 1.0, **{peer: verifier_weight(scores[peer]) for peer in peers}}
            change = max((abs(updated[peer] - weights.get(peer, 0.0)) for peer in updated),
                         default=0.0)
            weights = updated
            if change <= params.trust_tolerance:
                break
        return scores
