"""The EigenTrust-style baseline: transitive trust from opinions, without verification.

As in Kamvar et al. (2003): a rater's local trust in a node is ``max(satisfied - unsatisfied,
0)``, normalised over the nodes it rated; the global trust is the pre-trusted raters' average of
those vectors, iterated through the raters' own trust. Here the raters are the clients (all
pre-trusted: nodes never consume, so they rate no one) and one iteration is the fixed point.
Without verification a client knows an answer was inauthentic only when its user notices
(``Scenario.eigentrust_detect``), and cannot tell which hop was at fault, so it blames all.
"""

from __future__ import annotations

from collections.abc import Iterable

from .population import SimClient

__all__ = ["global_trust"]


def global_trust(clients: Iterable[SimClient]) -> dict[int, float]:
    """Node index -> trust in [0, 1], scaled so the most trusted node has 1."""
    total: dict[int, float] = {}
    raters = 0
    for client in clients:
        local = {node: max(sat - unsat, 0) for node, (sat, unsat) in client.opinions.items()}
        norm = sum(local.values())
        if not norm:
            continue
        raters += 1
        for node, value in local.items():
            total[node] = total.get(node, 0.0) + value / norm
    top = max(total.values(), default=0.0)
    return {node: value / top for node, value in total.items()} if top else {}
