"""A sub-span view shares the loaded blocks and computes what those layers compute in the span."""

from __future__ import annotations

import pytest
import torch

from darwin.model import Checkpoint, SpanOutOfRange, SpanRunner


def test_sub_span_shares_blocks_and_matches_the_chain_of_its_parts(
    llama_checkpoint: Checkpoint,
) -> None:
    whole = SpanRunner.load(llama_checkpoint, 0, 4)
    head, tail = whole.sub_span(0, 2), whole.sub_span(2, 4)
    assert head.blocks is whole.blocks and (tail.start, tail.end) == (2, 4)
    hidden = torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(3))
    steps = [hidden[:, :5], hidden[:, 5:]]  # prefill, then one decode step

    sessions = [runner.new_session(8) for runner in (whole, head, tail)]
    for chunk in steps:
        expected = whole.forward(sessions[0], chunk).hidden
        middle = head.forward(sessions[1], chunk).hidden
        assert torch.equal(tail.forward(sessions[2], middle).hidden, expected)


@pytest.mark.parametrize("span", [(0, 5), (2, 2), (3, 1), (-1, 2)])
def test_sub_span_outside_the_runner_is_refused(
    llama_checkpoint: Checkpoint, span: tuple[int, int]
) -> None:
    runner = SpanRunner.load(llama_checkpoint, 0, 4)
    with pytest.raises(SpanOutOfRange):
        runner.sub_span(*span)
