"""Route finding: the cheapest chain of providers that covers every block of the model.

Rules (``docs/architecture.md``, "The inference path"; as Petals' sequence manager):
- A route is a list of hops ``(provider, start, end)`` whose spans chain from 0 to ``n_layers``;
  a hop may use any contiguous part of a provider's span.
- Cost is expected latency: each hop pays the provider's round trip (the step latency the
  client's ledger measured for it when it has one, else the info round trip of discovery;
  ``specs/reputation.md`` §3) plus a fixed per-hop overhead (so fewer hops win ties), and
  each block it runs costs ``block_ms`` scaled by the provider's reported load. Distrust
  costs too: a hop through a provider of trust t pays ``distrust_ms * (1 - t)`` more (the
  expected price of a failover or a failed check).
  Dijkstra over block boundaries finds the minimum.
- Banned providers (a confirmed fraud proof) are never used. Providers on probation (new keys)
  are used only by the sessions that admit them (`admit_probation`, drawn per session with
  the probation share), unless nobody else covers their blocks.
- Providers can be excluded (failed ones during failover); if no route exists, `NoRoute` names
  the first block nobody serves.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class NoRoute(Exception):
    """No chain of available providers covers the model."""

    def __init__(self, missing: tuple[int, int]) -> None:
        super().__init__(f"no available provider serves blocks [{missing[0]}, {missing[1]})")
        self.missing = missing


@dataclass(frozen=True)
class Provider:
    """A node's offer, as its info and our measurements describe it."""

    peer_id: str
    span_start: int
    span_end: int
    rtt_ms: float = 1.0  # measured round trip to the node (its info request, at discovery)
    latency_ms: float | None = None  # its step latency per the client's ledger; rtt_ms if None
    load: float = 0.0  # the node's reported load: active sessions / capacity
    trust: float = 1.0  # reputation in [0, 1] from the client's ledger
    banned: bool = False  # a confirmed fraud proof: never routed through
    probation: bool = False  # a new key: only in sessions that admit probation


@dataclass(frozen=True)
class Hop:
    """One hop of a route: blocks ``[start, end)`` on `provider`."""

    provider: Provider
    start: int
    end: int


@dataclass(frozen=True)
class RouteCosts:
    """The latency model behind route choice."""

    block_ms: float = 5.0  # compute time of one block for one step, unloaded
    hop_ms: float = 2.0  # fixed overhead of one more hop (framing, hashing, signing)
    distrust_ms: float = 50.0  # extra cost of a hop through a provider of trust 0


def find_route(providers: Iterable[Provider], n_layers: int,
               costs: RouteCosts = RouteCosts(), exclude: frozenset[str] = frozenset()
               ) -> list[Hop]:
    """The cheapest route over `providers` covering ``[0, n_layers)``.

    Raises:
        NoRoute: some block has no provider outside `exclude`.
    """
    usable = [p for p in providers if p.peer_id not in exclude and not p.banned
              and 0 <= p.span_start < p.span_end <= n_layers]
    best: dict[int, float] = {0: 0.0}
    came_from: dict[int, Hop] = {}
    queue: list[tuple[float, int]] = [(0.0, 0)]
    while queue:
        cost, boundary = heapq.heappop(queue)
        if boundary == n_layers:
            return _unwind(came_from, n_layers)
        if cost > best.get(boundary, float("inf")):
            continue
        for provider in usable:
            if not provider.span_start <= boundary < provider.span_end:
                continue
            for end in range(boundary + 1, provider.span_end + 1):
                total = cost + _hop_cost(provider, end - boundary, costs)
                if total < best.get(end, float("inf")):
                    best[end] = total
                    came_from[end] = Hop(provider, boundary, end)
                    heapq.heappush(queue, (total, end))
    raise NoRoute(_first_gap(usable, n_layers))


def route_admitting(providers: Sequence[Provider], n_layers: int, costs: RouteCosts,
                    exclude: frozenset[str], admit_probation: bool) -> list[Hop]:
    """`find_route`, leaving providers on probation out unless admitted or indispensable.

    Raises:
        NoRoute: some block has no usable provider even with probation admitted.
    """
    if not admit_probation:
        on_probation = frozenset(p.peer_id for p in providers if p.probation)
        try:
            return find_route(providers, n_layers, costs, exclude | on_probation)
        except NoRoute:
            pass
    return find_route(providers, n_layers, costs, exclude)


def _hop_cost(provider: Provider, blocks: int, costs: RouteCosts) -> float:
    distrust = costs.distrust_ms * (1.0 - min(max(provider.trust, 0.0), 1.0))
    round_trip = provider.rtt_ms if provider.latency_ms is None else provider.latency_ms
    return (costs.hop_ms + round_trip + distrust
            + blocks * costs.block_ms * (1.0 + provider.load))


def _unwind(came_from: dict[int, Hop], n_layers: int) -> list[Hop]:
    hops: list[Hop] = []
    boundary = n_layers
    while boundary > 0:
        hop = came_from[boundary]
        hops.append(hop)
        boundary = hop.start
    return hops[::-1]


def _first_gap(providers: Sequence[Provider], n_layers: int) -> tuple[int, int]:
    """The first run of blocks that no provider serves (what an error message should name)."""
    served = [False] * n_layers
    for p in providers:
        for block in range(p.span_start, p.span_end):
            served[block] = True
    start = served.index(False) if False in served else 0
    end = start
    while end < n_layers and not served[end]:
        end += 1
    return (start, max(end, start + 1))
