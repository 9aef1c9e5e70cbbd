"""Failover: a replacement span rebuilt with `replay` continues generation identically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from span_chain_harness import NEW_TOKENS, Chain, load_chain

from darwin.model import (
    Checkpoint,
    ClientParts,
    InvalidInput,
    SessionLengthExceeded,
    SpanRunner,
)

CUT = [(0, 2), (2, 4)]
BEFORE_FAILURE = 10  # tokens generated before the second hop dies


@pytest.mark.parametrize("family", ["llama", "mistral", "gpt2"])
def test_replay_continues_generation_identically(
    tiny: Callable[..., Path], prompt: torch.Tensor, family: str
) -> None:
    checkpoint = Checkpoint.open(tiny(family))
    client = ClientParts.load(checkpoint)
    expected = Chain(client, load_chain(checkpoint, CUT)).greedy(prompt, NEW_TOKENS)

    chain = Chain(client, load_chain(checkpoint, CUT))
    first = chain.greedy(prompt, BEFORE_FAILURE)
    last_logits = chain.step(first[:, -1:])  # the step that feeds the last token
    # Hop 1 fails; a replacement (its own runner, in streaming mode) gets the history.
    replacement = SpanRunner.load(checkpoint, *CUT[1], resident_blocks=1)
    session = replacement.new_session(128)
    replayed = replacement.replay(session, chain.sent[1])
    assert session.position == prompt.shape[1] + BEFORE_FAILURE
    assert replayed.hidden.shape[1] == session.position
    # The replayed output of the last position gives the same logits as the dead hop's did.
    replayed_logits = client.logits(replayed.hidden[:, -1:])
    assert float((replayed_logits - last_logits[:, -1:]).abs().max()) < 1e-4
    chain.runners[1], chain.sessions[1] = replacement, session
    rest = chain.continue_greedy(last_logits, NEW_TOKENS - BEFORE_FAILURE)
    assert torch.equal(torch.cat([first, rest], dim=1), expected)


def test_replay_needs_a_fresh_session(llama_checkpoint: Checkpoint) -> None:
    runner = SpanRunner.load(llama_checkpoint, 0, 1)
    session = runner.new_session(16)
    hidden = torch.zeros(1, 3, llama_checkpoint.hidden_size)
    runner.forward(session, hidden)
    with pytest.raises(InvalidInput, match="fresh session"):
        runner.replay(session, [hidden])
    with pytest.raises(InvalidInput, match="at least one"):
        runner.replay(runner.new_session(16), [])


def test_replay_longer_than_the_session_is_refused(llama_checkpoint: Checkpoint) -> None:
    runner = SpanRunner.load(llama_checkpoint, 0, 1)
    session = runner.new_session(5)
    steps = [torch.zeros(1, 3, llama_checkpoint.hidden_size)] * 2
    with pytest.raises(SessionLengthExceeded, match="max_length 5"):
        runner.replay(session, steps)
    assert session.position == 0  # nothing changed
