"""--blocks auto: the span whose least-served blocks are served least, lowest start on ties."""

from __future__ import annotations

import pytest

from darwin.node.block_selection import choose_span, coverage


def test_an_empty_swarm_starts_at_block_zero() -> None:
    assert choose_span([0] * 8, 3) == (0, 3)


def test_the_uncovered_gap_is_chosen() -> None:
    counts = coverage(8, [(0, 3), (5, 8)])
    assert counts == [1, 1, 1, 0, 0, 1, 1, 1]
    assert choose_span(counts, 2) == (3, 5)
    assert choose_span(counts, 3) == (2, 5)  # both gaps, and the lower start of the two


def test_the_worst_block_decides_then_the_next_worst() -> None:
    # [0, 2) holds a block served twice; [2, 4) only blocks served once; [4, 6) one unserved
    assert choose_span([2, 1, 1, 1, 0, 3], 2) == (3, 5)
    assert choose_span([1, 2, 1, 1, 2, 2], 2) == (2, 4)


def test_a_span_longer_than_the_model_is_the_whole_model() -> None:
    assert choose_span([3, 0, 1], 10) == (0, 3)


def test_coverage_ignores_what_lies_outside_the_model() -> None:
    assert coverage(4, [(-2, 1), (3, 9), (2, 2)]) == [1, 0, 0, 1]


@pytest.mark.parametrize("counts, length", [([], 1), ([0, 0], 0)])
def test_nothing_to_choose_is_an_error(counts: list[int], length: int) -> None:
    with pytest.raises(ValueError):
        choose_span(counts, length)
