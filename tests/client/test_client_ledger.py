"""The client's ledger records who served, who failed or broke the protocol and how fast each
node was, and routing reads its standing."""

from __future__ import annotations

from pathlib import Path

import pytest

from darwin.client.client_ledger import Observations, record_generation, standing
from darwin.client.route import Provider, RouteCosts, route_admitting
from darwin.home import LEDGER_FILE
from darwin.ledger import EntryKind, Ledger, verify_ledger
from darwin.ledger.reputation import DEFAULT_PARAMS, unknown_score
from darwin.protocol import Identity, PeerId


def _peer() -> PeerId:
    return Identity.generate().peer_id


def test_a_generation_is_recorded_and_moves_the_standing(tmp_path: Path) -> None:
    me, good, flaky = Identity.generate(), _peer(), _peer()
    for _ in range(12):
        record_generation(tmp_path, me, Observations(served=[good, good]))
    record_generation(tmp_path, me, Observations(served=[good], failed={flaky: "stream reset"}))

    assert verify_ledger(tmp_path / "ledger.sqlite").ok
    scores = standing(tmp_path, me)
    assert scores[good].trust > scores[flaky].trust
    assert not scores[good].probation
    providers = [Provider(peer, 0, 4, trust=scores[peer].trust, probation=scores[peer].probation)
                 for peer in (flaky, good)]
    route = route_admitting(providers, 4, RouteCosts(), frozenset(), admit_probation=False)
    assert route[0].provider.peer_id == good


def test_a_violation_is_recorded_instead_of_a_failure_and_costs_its_weight(
        tmp_path: Path) -> None:
    me, liar, flaky = Identity.generate(), _peer(), _peer()
    record_generation(tmp_path, me, Observations(
        served=[], failed={liar: "protocol violation at step 0: bad receipt",
                           flaky: "stream reset"},
        violations={liar: "protocol violation at step 0: bad receipt"}))

    with Ledger.open(tmp_path / LEDGER_FILE, me) as ledger:
        kinds = {(e.record.subject, e.record.kind) for e in ledger.entries()
                 if e.record.subject in (liar, flaky)}
    assert kinds == {(liar, EntryKind.PROTOCOL_VIOLATION), (flaky, EntryKind.FAILURE)}
    scores = standing(tmp_path, me)
    # counted once, at the violation's weight (not also as a failure); decay is a few ms
    assert scores[liar].failures == pytest.approx(DEFAULT_PARAMS.violation_weight)
    assert scores[liar].trust < scores[flaky].trust < unknown_score(flaky).trust


def test_one_latency_per_node_per_generation_sets_the_latency_routing_uses(
        tmp_path: Path) -> None:
    me, fast, slow = Identity.generate(), _peer(), _peer()
    record_generation(tmp_path, me, Observations(served=[fast, slow],
                                                 latencies_ms={fast: 10, slow: 90}))
    record_generation(tmp_path, me, Observations(served=[fast, slow],
                                                 latencies_ms={fast: 30, slow: 110}))

    with Ledger.open(tmp_path / LEDGER_FILE, me) as ledger:
        latencies = list(ledger.entries(kinds=[EntryKind.LATENCY]))
    assert len(latencies) == 4
    scores = standing(tmp_path, me)
    assert scores[fast].latency_ms is not None and 10 <= scores[fast].latency_ms <= 30
    assert scores[slow].latency_ms is not None and 90 <= scores[slow].latency_ms <= 110
    providers = [Provider(peer, 0, 4, rtt_ms=1.0, latency_ms=scores[peer].latency_ms)
                 for peer in (slow, fast)]
    route = route_admitting(providers, 4, RouteCosts(), frozenset(), admit_probation=True)
    assert route[0].provider.peer_id == fast


def test_a_home_without_a_ledger_has_no_standing(tmp_path: Path) -> None:
    assert standing(tmp_path, Identity.generate()) == {}
