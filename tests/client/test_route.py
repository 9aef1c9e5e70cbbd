"""Routes cover every block, prefer cheap and few hops, and name what is missing."""

from __future__ import annotations

import itertools

import pytest

from darwin.client.route import NoRoute, Provider, RouteCosts, find_route, route_admitting


def _spans(route: list) -> list[tuple[str, int, int]]:
    return [(hop.provider.peer_id, hop.start, hop.end) for hop in route]


def test_a_single_full_provider_is_one_hop() -> None:
    route = find_route([Provider("a", 0, 8), Provider("b", 0, 4), Provider("c", 4, 8)], 8)
    assert _spans(route) == [("a", 0, 8)]


def test_overlapping_spans_are_cut_to_chain() -> None:
    route = find_route([Provider("a", 0, 3), Provider("b", 2, 6), Provider("c", 4, 8)], 8)
    assert route[0].start == 0 and route[-1].end == 8
    assert all(x.end == y.start for x, y in itertools.pairwise(route))
    assert [h.provider.peer_id for h in route] == ["a", "b", "c"]


def test_a_loaded_or_distant_provider_is_avoided() -> None:
    providers = [Provider("busy", 0, 4, load=3.0), Provider("idle", 0, 4),
                 Provider("far", 4, 8, rtt_ms=500.0), Provider("near", 4, 8, rtt_ms=2.0)]
    assert [h.provider.peer_id for h in find_route(providers, 8)] == ["idle", "near"]


def test_a_measured_step_latency_stands_in_for_the_discovery_round_trip() -> None:
    # "quick" answered its info request fast, but the ledger measured its steps as slow;
    # "steady" has no measurement yet and is judged by its round trip.
    providers = [Provider("quick", 0, 4, rtt_ms=1.0, latency_ms=300.0),
                 Provider("steady", 0, 4, rtt_ms=40.0)]
    assert _spans(find_route(providers, 4)) == [("steady", 0, 4)]
    providers[0] = Provider("quick", 0, 4, rtt_ms=1.0, latency_ms=20.0)
    assert _spans(find_route(providers, 4)) == [("quick", 0, 4)]


def test_excluded_providers_are_routed_around() -> None:
    providers = [Provider("a", 0, 4), Provider("a2", 0, 4), Provider("b", 4, 8)]
    route = find_route(providers, 8, exclude=frozenset({"a"}))
    assert [h.provider.peer_id for h in route] == ["a2", "b"]


def test_a_gap_raises_no_route_naming_the_missing_blocks() -> None:
    with pytest.raises(NoRoute, match=r"\[3, 5\)") as caught:
        find_route([Provider("a", 0, 3), Provider("b", 5, 8)], 8)
    assert caught.value.missing == (3, 5)


def test_fewer_hops_win_when_compute_is_equal() -> None:
    providers = [Provider("x", 0, 2), Provider("y", 2, 4), Provider("whole", 0, 4)]
    route = find_route(providers, 4, RouteCosts(block_ms=1.0, hop_ms=5.0))
    assert _spans(route) == [("whole", 0, 4)]


def test_a_banned_provider_is_never_used_even_when_cheapest() -> None:
    providers = [Provider("cheat", 0, 8, banned=True), Provider("a", 0, 4, rtt_ms=50.0),
                 Provider("b", 4, 8, rtt_ms=50.0)]
    assert [h.provider.peer_id for h in find_route(providers, 8)] == ["a", "b"]
    with pytest.raises(NoRoute):
        find_route([Provider("cheat", 0, 8, banned=True)], 8)


def test_distrust_outweighs_a_small_latency_advantage() -> None:
    providers = [Provider("fast-doubtful", 0, 4, rtt_ms=1.0, trust=0.2),
                 Provider("slower-trusted", 0, 4, rtt_ms=10.0, trust=0.95)]
    assert find_route(providers, 4)[0].provider.peer_id == "slower-trusted"


def test_probation_is_used_only_when_admitted_or_indispensable() -> None:
    providers = [Provider("new", 0, 4, rtt_ms=0.1, probation=True), Provider("old", 0, 4)]
    chosen = route_admitting(providers, 4, RouteCosts(), frozenset(), admit_probation=False)
    assert chosen[0].provider.peer_id == "old"
    chosen = route_admitting(providers, 4, RouteCosts(), frozenset(), admit_probation=True)
    assert chosen[0].provider.peer_id == "new"
    only_new = [Provider("new", 0, 4, probation=True)]
    chosen = route_admitting(only_new, 4, RouteCosts(), frozenset(), admit_probation=False)
    assert chosen[0].provider.peer_id == "new"
