"""Which span a node should serve: the one that covers the blocks the swarm serves least.

Rules (as Petals' ``block_selection.py``): pure functions over plain data, so they are tested
without a network and reused by simulations. A candidate span is judged by the provider counts
of its blocks, sorted ascending and compared lexicographically: the span whose worst-served
block is served least wins, then its second worst, and so on; ties go to the lowest start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["choose_span", "coverage"]


def coverage(n_layers: int, spans: Iterable[tuple[int, int]]) -> list[int]:
    """Providers per block, from the spans announced (parts outside ``[0, n_layers)`` ignored)."""
    counts = [0] * n_layers
    for start, end in spans:
        for block in range(max(0, start), min(end, n_layers)):
            counts[block] += 1
    return counts


def choose_span(counts: Sequence[int], length: int) -> tuple[int, int]:
    """The span ``[start, start + length)`` to serve, given providers per block.

    Args:
        counts: how many nodes serve each block now (``len(counts)`` is the model's n_layers).
        length: blocks the node will serve; clamped to the model's size.

    Raises:
        ValueError: the model has no blocks or ``length`` < 1.
    """
    if not counts or length < 1:
        raise ValueError(f"cannot choose {length} of {len(counts)} blocks")
    length = min(length, len(counts))
    start = min(range(len(counts) - length + 1), key=lambda s: (sorted(counts[s : s + length]), s))
    return (start, start + length)
