"""Reputation: deterministic, decayed, transitive, with bans, penalties and probation."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from ledger_support import OWNER, T0, identity, verdict

from darwin.ledger import (
    DEFAULT_PARAMS,
    AccusationRefuted,
    EntryKind,
    FraudProof,
    FraudStatus,
    Record,
    ReputationParams,
    ReputationState,
    Score,
    reputation,
    unknown_score,
    verification_rate,
)
from darwin.protocol import Identity, PeerId

NOW = T0  # entries are dated T0 + 1, T0 + 2...: none has decayed at NOW (age counts from 0)
WEEK = DEFAULT_PARAMS.half_life_ms
HONEST, CHEATER, NEWCOMER = identity("honest"), identity("cheater"), identity("newcomer")
TRUSTED_V, WEAK_V, SYBIL_V = identity("trusted-v"), identity("weak-v"), identity("sybil-v")


class Clock:
    """Distinct entry times, so that records of the same kind and subject differ."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1
        return self.now


def own(kind: EntryKind, subject: Identity, payload: object, time_ms: int) -> Record:
    return Record.sign(OWNER, kind, subject.peer_id, payload, time_ms=time_ms)  # type: ignore[arg-type]


def successes(subject: Identity, count: int, clock: Clock) -> list[Record]:
    return [own(EntryKind.SUCCESS, subject, {}, clock()) for _ in range(count)]


def failures(subject: Identity, count: int, clock: Clock) -> list[Record]:
    return [own(EntryKind.FAILURE, subject, {"reason": "timeout"}, clock())
            for _ in range(count)]


def verdicts(verifier: Identity, subject: Identity, outcome: str, count: int,
             clock: Clock) -> list[Record]:
    return [verdict(verifier, subject, outcome, time_ms=clock(), refs={"n": i})
            for i in range(count)]


def score(records: list[Record], peer: Identity, now: int = NOW,
          params: ReputationParams = DEFAULT_PARAMS) -> Score:
    return reputation(records, now_ms=now, params=params, owner=OWNER.peer_id)[peer.peer_id]


def mixed_ledger() -> list[Record]:
    clock = Clock()
    return [*successes(HONEST, 30, clock), *failures(HONEST, 2, clock),
            *successes(TRUSTED_V, 40, clock), *successes(WEAK_V, 12, clock),
            *failures(WEAK_V, 10, clock), *verdicts(TRUSTED_V, CHEATER, "fail", 2, clock),
            *verdicts(TRUSTED_V, HONEST, "pass", 5, clock),
            *verdicts(WEAK_V, NEWCOMER, "pass", 3, clock),
            *verdicts(SYBIL_V, HONEST, "fail", 50, clock),
            own(EntryKind.LATENCY, HONEST, {"latency_ms": 30}, clock())]


def test_same_entries_give_the_same_scores_in_any_order() -> None:
    records = mixed_ledger()
    expected = reputation(records, now_ms=NOW, owner=OWNER.peer_id)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = records[:]
        rng.shuffle(shuffled)
        assert reputation(shuffled, now_ms=NOW, owner=OWNER.peer_id) == expected  # bit-exact
    assert reputation(records + records[:10], now_ms=NOW, owner=OWNER.peer_id) == expected
    assert list(expected) == sorted(expected)
    assert OWNER.peer_id not in expected


def test_the_state_fed_one_record_at_a_time_scores_as_reputation_does() -> None:
    records = mixed_ledger()
    expected = reputation(records, now_ms=NOW, owner=OWNER.peer_id)
    state = ReputationState(OWNER.peer_id, now_ms=NOW)
    for count, record in enumerate(records, 1):
        assert state.add(record)
        if count == len(records) // 2:  # a score read half-way matches the half ledger
            assert state.scores() == reputation(records[:count], now_ms=NOW,
                                                owner=OWNER.peer_id)
    assert state.scores() == expected  # mixed_ledger is in canonical (time) order: bit-exact


def test_the_state_counts_a_record_once_and_matches_in_any_order() -> None:
    records = mixed_ledger()
    expected = reputation(records, now_ms=NOW, owner=OWNER.peer_id)
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    state = ReputationState(OWNER.peer_id, now_ms=NOW)
    assert all(state.add(record) for record in shuffled)
    assert not any(state.add(record) for record in records[:10])  # replays change nothing
    scores = state.scores()
    assert list(scores) == list(expected)
    for peer, got in scores.items():  # sums taken in another order: equal up to rounding
        want = expected[peer]
        assert (got.banned, got.probation) == (want.banned, want.probation)
        assert got.trust == pytest.approx(want.trust, rel=1e-12)
        assert got.successes == pytest.approx(want.successes, rel=1e-12)


def test_scores_of_a_real_ledger_need_no_owner_argument(populated: object) -> None:
    from darwin.ledger import read_entries

    entries = read_entries(populated)  # type: ignore[arg-type]
    by_genesis = reputation(entries, now_ms=NOW)
    assert by_genesis == reputation(entries, now_ms=NOW, owner=OWNER.peer_id)
    with pytest.raises(ValueError, match="owner"):
        reputation(entries[1:], now_ms=NOW)


def test_evidence_decays_by_half_per_half_life() -> None:
    records = successes(HONEST, 8, Clock())
    fresh = score(records, HONEST, now=T0 + 8)
    old = score(records, HONEST, now=T0 + 8 + WEEK)
    assert old.successes == pytest.approx(fresh.successes / 2, rel=1e-6)
    assert fresh.trust > old.trust > 0.5
    ancient = score(records, HONEST, now=T0 + 52 * WEEK)
    assert ancient.trust == pytest.approx(0.5, abs=1e-3)  # back to the prior


def test_latency_is_a_decayed_mean_and_does_not_move_trust() -> None:
    clock = Clock()
    records = [own(EntryKind.LATENCY, HONEST, {"latency_ms": ms}, clock()) for ms in (10, 30)]
    result = score(records, HONEST)
    assert result.latency_ms == pytest.approx(20.0, rel=1e-6)
    assert result.trust == 0.5


def test_a_confirmed_fraud_proof_bans_forever() -> None:
    clock = Clock()
    proof = FraudProof(FraudStatus.CONFIRMED, b"\x01" * 32, TRUSTED_V.peer_id)
    records = [*successes(CHEATER, 500, clock), own(EntryKind.FRAUD_PROOF, CHEATER, proof, clock()),
               *successes(CHEATER, 500, clock)]
    for now in (NOW + 1_000, NOW + 520 * WEEK):  # ten years later
        banned = score(records, CHEATER, now=now)
        assert banned.banned and banned.trust == 0.0 and banned.traffic_share_cap == 0.0
        assert not banned.probation
    unconfirmed = dataclasses.replace(proof, status=FraudStatus.UNCONFIRMED)
    records[500] = own(EntryKind.FRAUD_PROOF, CHEATER, unconfirmed, T0 + 501)
    assert not score(records, CHEATER).banned


def test_a_banned_verifiers_verdicts_stop_counting() -> None:
    clock = Clock()
    records = [*successes(TRUSTED_V, 40, clock), *verdicts(TRUSTED_V, HONEST, "fail", 3, clock)]
    before = score(records, HONEST)
    proof = FraudProof(FraudStatus.CONFIRMED, b"\x01" * 32, HONEST.peer_id)
    after = score([*records, own(EntryKind.FRAUD_PROOF, TRUSTED_V, proof, clock())], HONEST)
    assert before.verified_fails > 0 and after.verified_fails == 0.0
    assert after.trust > before.trust


def test_a_refuted_accusation_costs_the_accuser_and_voids_its_fails() -> None:
    clock = Clock()
    records = [*successes(TRUSTED_V, 40, clock), *successes(HONEST, 20, clock),
               *verdicts(TRUSTED_V, HONEST, "fail", 1, clock)]
    accuser_before, subject_before = score(records, TRUSTED_V), score(records, HONEST)
    refuted = own(EntryKind.ACCUSATION_REFUTED, HONEST,
                  AccusationRefuted(TRUSTED_V.peer_id, b"\x02" * 32), clock())
    accuser_after = score([*records, refuted], TRUSTED_V)
    subject_after = score([*records, refuted], HONEST)
    assert accuser_after.failures == pytest.approx(
        accuser_before.failures + DEFAULT_PARAMS.refuted_accusation_penalty, rel=1e-6)
    assert accuser_after.trust < accuser_before.trust
    assert subject_before.verified_fails > 0 and subject_after.verified_fails == 0.0
    assert subject_after.trust > subject_before.trust


def test_a_low_trust_verifier_moves_a_score_less_than_a_trusted_one() -> None:
    clock = Clock()
    base = [*successes(TRUSTED_V, 40, clock), *successes(WEAK_V, 12, clock),
            *failures(WEAK_V, 10, clock), *successes(HONEST, 20, clock)]
    alone = score(base, HONEST)
    by_trusted = score([*base, *verdicts(TRUSTED_V, HONEST, "fail", 2, clock)], HONEST)
    by_weak = score([*base, *verdicts(WEAK_V, HONEST, "fail", 2, clock)], HONEST)
    by_sybil = score([*base, *verdicts(SYBIL_V, HONEST, "fail", 200, clock)], HONEST)
    assert alone.trust > by_weak.trust > by_trusted.trust
    assert by_sybil == alone  # a key on probation carries no weight, however many verdicts


def test_trust_is_transitive_from_the_owners_observations() -> None:
    clock = Clock()
    second_v = identity("second-v")
    records = [*successes(TRUSTED_V, 40, clock),
               *verdicts(TRUSTED_V, second_v, "pass", 15, clock),  # the owner never saw it
               *verdicts(second_v, NEWCOMER, "pass", 5, clock)]
    scores = reputation(records, now_ms=NOW, owner=OWNER.peer_id)
    second = scores[second_v.peer_id]
    assert not second.probation and second.verified_passes > 10
    assert scores[NEWCOMER.peer_id].verified_passes == pytest.approx(5 * second.trust, rel=1e-6)
    # Without the owner's own evidence about TRUSTED_V, nothing flows at all.
    unrooted = reputation(records[40:], now_ms=NOW, owner=OWNER.peer_id)
    assert unrooted[NEWCOMER.peer_id].verified_passes == 0.0
    assert unrooted[second_v.peer_id].probation


def test_one_verifier_cannot_inflate_a_peer_by_volume() -> None:
    clock = Clock()
    base = successes(TRUSTED_V, 40, clock)
    capped = score([*base, *verdicts(TRUSTED_V, NEWCOMER, "pass", 200, clock)], NEWCOMER)
    trust_v = score(base, TRUSTED_V).trust
    assert capped.verified_passes == pytest.approx(DEFAULT_PARAMS.verdict_cap * trust_v,
                                                   rel=1e-3)


def test_self_verdicts_and_forged_owner_kinds_are_ignored() -> None:
    clock = Clock()
    base = successes(HONEST, 12, clock)
    selfish = verdicts(HONEST, HONEST, "pass", 5, clock)
    forged = [Record.sign(HONEST, EntryKind.SUCCESS, HONEST.peer_id, {}, time_ms=clock())]
    assert score([*base, *selfish, *forged], HONEST) == score(base, HONEST)


def test_new_keys_start_on_probation_with_a_bounded_share() -> None:
    clock = Clock()
    fresh = unknown_score(PeerId(NEWCOMER.peer_id))
    assert fresh.probation and fresh.trust == 0.5
    assert fresh.traffic_share_cap == DEFAULT_PARAMS.probation_traffic_share < 1.0
    assert verification_rate(fresh) == 1.0
    needed = int(DEFAULT_PARAMS.probation_successes)
    records = successes(NEWCOMER, needed - 1, clock)
    assert score(records, NEWCOMER).probation
    graduated = score([*records, *successes(NEWCOMER, 1, clock)], NEWCOMER)
    assert not graduated.probation and graduated.traffic_share_cap == 1.0


def test_verification_rate_falls_as_reputation_rises_to_a_floor() -> None:
    clock = Clock()
    records: list[Record] = []
    rates = []
    for _ in range(40):
        records += successes(HONEST, 5, clock)
        rates.append(verification_rate(score(records, HONEST)))
    assert rates[0] == 1.0  # 5 successes: still on probation
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates))
    assert rates[2] < 0.5
    assert rates[-1] == DEFAULT_PARAMS.verification_rate_floor
    failing = score([*records, *failures(HONEST, 400, clock)], HONEST)
    assert verification_rate(failing) == 1.0  # distrusted again: verify everything


def test_params_are_validated_and_frozen() -> None:
    with pytest.raises(ValueError):
        ReputationParams(half_life_ms=0)
    with pytest.raises(ValueError):
        ReputationParams(probation_traffic_share=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_PARAMS.fail_weight = 0.0  # type: ignore[misc]


def test_stronger_params_change_the_outcome_predictably() -> None:
    clock = Clock()
    records = [*successes(HONEST, 20, clock), own(EntryKind.PROTOCOL_VIOLATION, HONEST,
                                                  {"reason": "bad receipt"}, clock())]
    lenient = score(records, HONEST, params=ReputationParams(violation_weight=1.0))
    strict = score(records, HONEST, params=ReputationParams(violation_weight=10.0))
    assert lenient.trust > strict.trust
