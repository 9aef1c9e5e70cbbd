"""The client's ledger records who served and who failed, and routing reads its standing."""

from __future__ import annotations

from pathlib import Path

from darwin.client.client_ledger import record_generation, standing
from darwin.client.route import Provider, RouteCosts, route_admitting
from darwin.ledger import verify_ledger
from darwin.protocol import Identity


def test_a_generation_is_recorded_and_moves_the_standing(tmp_path: Path) -> None:
    me, good, flaky = Identity.generate(), Identity.generate().peer_id, Identity.generate().peer_id
    for _ in range(12):
        record_generation(tmp_path, me, served=[good, good], failed={})
    record_generation(tmp_path, me, served=[good], failed={flaky: "stream reset"})

    assert verify_ledger(tmp_path / "ledger.sqlite").ok
    scores = standing(tmp_path, me)
    assert scores[good].trust > scores[flaky].trust
    assert not scores[good].probation
    providers = [Provider(peer, 0, 4, trust=scores[peer].trust, probation=scores[peer].probation)
                 for peer in (flaky, good)]
    route = route_admitting(providers, 4, RouteCosts(), frozenset(), admit_probation=False)
    assert route[0].provider.peer_id == good


def test_a_home_without_a_ledger_has_no_standing(tmp_path: Path) -> None:
    assert standing(tmp_path, Identity.generate()) == {}
