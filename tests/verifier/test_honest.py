"""Honest nodes pass every challenge, across span cuts, thread counts, step structures,
batch sizes and dtypes: zero failing verdicts over hundreds of challenges."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from verifier_harness import ServingNode, embedded_steps

from darwin.model import Checkpoint, SpanRunner
from darwin.protocol import Challenge, Identity, ModelId, Outcome, SessionId
from darwin.verifier import RecomputeConfig, Verifier, VerifierConfig

PROMPT_WHOLE = (5, 1, 1, 1, 1, 1, 1)  # one prefill, then decode steps
PROMPT_CHUNKED = (2, 2, 1, 1, 1, 1, 1, 1)  # the same prompt in chunks
CUTS = ((0, 4), (1, 3), (2, 4), (0, 1), (3, 4), (1, 4), (0, 2))


def _challenge_all(node: ServingNode, verifier: Verifier, session: SessionId,
                   outcomes: Counter[str]) -> None:
    """Challenge every layer of the node's span at every step of the session."""
    receipts = node.sessions[session]
    start, end = node.committed.runner.start, node.committed.runner.end
    for step in range(len(receipts)):
        for layer in range(start, end):
            challenge = Challenge(tuple(receipts[: step + 1]), layer, step)
            judgement = verifier.judge(challenge, node.answer(challenge))
            outcomes[judgement.outcome.value] += 1
            if judgement.outcome is not Outcome.PASS:
                pytest.fail(f"honest node failed: {judgement.verdict.body.reason}")


def test_honest_nodes_get_zero_failing_verdicts_in_hundreds_of_challenges(
    checkpoint: Checkpoint, tiny_model_id: ModelId, node_identity: Identity,
    verifier_identity: Identity,
) -> None:
    verifiers = [
        Verifier(verifier_identity, checkpoint, model_id=tiny_model_id,
                 config=VerifierConfig(RecomputeConfig(cached_layers=8, merge_prefix=merge)))
        for merge in (False, True)
    ]
    outcomes: Counter[str] = Counter()
    variations = 0
    for cut_index, cut in enumerate(CUTS):
        for threads in (1, 2):
            for sizes in (PROMPT_WHOLE, PROMPT_CHUNKED):
                node = ServingNode.create(SpanRunner.load(checkpoint, *cut), node_identity,
                                          tiny_model_id)
                session = SessionId(bytes([cut_index, threads, len(sizes)]) + b"\x00" * 13)
                steps = embedded_steps(checkpoint, sizes, seed=cut_index * 10 + threads)
                node.serve(session, steps, thread_count=threads)
                _challenge_all(node, verifiers[variations % 2], session, outcomes)
                variations += 1
    for dtype in (torch.bfloat16, torch.float16):
        for batch in (1, 2):
            node = ServingNode.create(SpanRunner.load(checkpoint, 0, 4, dtype=dtype),
                                      node_identity, tiny_model_id)
            session = SessionId(bytes([99, batch]) + str(dtype).encode()[-14:].ljust(14, b"."))
            node.serve(session, embedded_steps(checkpoint, PROMPT_CHUNKED, seed=batch,
                                               dtype=dtype, batch=batch))
            _challenge_all(node, verifiers[batch % 2], session, outcomes)
            variations += 1
    print(f"\nhonest challenges: {outcomes['pass']} passed, {outcomes['fail']} failed, "
          f"{outcomes['unresponsive']} unresponsive over {variations} sessions")
    assert outcomes["pass"] >= 500
    assert outcomes["fail"] == 0 and outcomes["unresponsive"] == 0
