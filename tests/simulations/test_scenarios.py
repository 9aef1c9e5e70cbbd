"""Every scenario, reduced: the properties specs/reputation.md and specs/verification.md claim.

``docs/simulations.md`` has the full-size runs; here each scenario runs at 150 nodes and 6 000
requests with a fixed seed, under Darwin's policy and the baseline it must beat.
"""

from __future__ import annotations

import pytest

from darwin.simulations.scenario import Policy

from .conftest import summary

DARWIN, TRUST_ALL, EIGENTRUST = Policy.DARWIN, Policy.TRUST_ALL, Policy.EIGENTRUST
ALL = ("always-cheaters", "always-cheaters-70", "rare-cheaters", "targeted-cheaters",
       "colluding-verifiers", "sybil-waves", "whitewashing", "slow-honest")


@pytest.mark.parametrize("name", ALL)
def test_no_honest_node_is_ever_banned(name: str) -> None:
    assert summary(name, DARWIN)["false_bans"] == 0


@pytest.mark.parametrize("name", ALL)
def test_verification_costs_at_most_two_percent_of_inference_at_steady_state(name: str) -> None:
    cost = summary(name, DARWIN)["verification_cost_steady"]
    assert isinstance(cost, float) and 0.0 < cost <= 0.02


def test_with_a_fifth_of_nodes_always_cheating_under_one_percent_touch_one_after_warm_up() -> None:
    darwin, trust_all = summary("always-cheaters", DARWIN), summary("always-cheaters", TRUST_ALL)
    assert darwin["touched_share_steady"] < 0.01 < 0.3 < trust_all["touched_share_steady"]
    assert darwin["cheaters_caught"] == darwin["cheaters"] or darwin["cheaters_caught"] >= 0.9 * (
        darwin["cheaters"] or 0)


def test_with_seventy_percent_cheaters_darwin_beats_the_eigentrust_baseline() -> None:
    darwin = summary("always-cheaters-70", DARWIN)["corrupted_share_steady"]
    eigentrust = summary("always-cheaters-70", EIGENTRUST)["corrupted_share_steady"]
    assert isinstance(darwin, float) and isinstance(eigentrust, float)
    assert darwin < 0.05 and darwin < eigentrust / 10


def test_a_rare_cheater_gains_no_more_than_without_verification() -> None:
    darwin = summary("rare-cheaters", DARWIN)["corrupted_share_steady"]
    trust_all = summary("rare-cheaters", TRUST_ALL)["corrupted_share_steady"]
    assert isinstance(darwin, float) and isinstance(trust_all, float) and darwin <= trust_all


def test_targeted_cheaters_are_caught_by_the_clients_they_target() -> None:
    darwin, trust_all = summary("targeted-cheaters", DARWIN), summary("targeted-cheaters",
                                                                       TRUST_ALL)
    assert darwin["cheaters_caught"]
    assert darwin["corrupted_share_steady"] < trust_all["corrupted_share_steady"]  # type: ignore[operator]


def test_colluding_verifiers_false_accusations_are_refuted_and_cheaters_still_caught() -> None:
    darwin = summary("colluding-verifiers", DARWIN)
    assert darwin["refuted_accusations"] and darwin["cheaters_caught"]
    assert darwin["touched_share_steady"] < 0.05  # type: ignore[operator]


def test_a_sybil_wave_of_fresh_keys_gets_little_traffic() -> None:
    darwin, trust_all = summary("sybil-waves", DARWIN), summary("sybil-waves", TRUST_ALL)
    assert darwin["touched_share_steady"] < trust_all["touched_share_steady"] / 3  # type: ignore[operator]


def test_a_whitewashing_cheater_gains_little_from_its_new_keys() -> None:
    darwin, trust_all = summary("whitewashing", DARWIN), summary("whitewashing", TRUST_ALL)
    assert darwin["touched_share_steady"] < trust_all["touched_share_steady"] / 3  # type: ignore[operator]


def test_slow_honest_nodes_get_less_than_their_share_of_traffic_and_no_ban() -> None:
    darwin = summary("slow-honest", DARWIN)
    assert darwin["false_bans"] == 0 and darwin["touched_share"] == 0.0
    assert darwin["slow_traffic_share"] < darwin["slow_node_share"]  # type: ignore[operator]
