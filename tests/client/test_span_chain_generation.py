"""Generation through a chain of committed spans is plain transformers' generation, with a trace.

Every hop signs each step; the client checks each receipt and the whole trace; a hop whose
output or receipt does not match is stopped at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import trio
from transformers import AutoModelForCausalLM

from darwin.client.generation import generate
from darwin.client.sampling import SamplingConfig
from darwin.client.session import Hop, InferenceSession, SessionInfo
from darwin.model import Checkpoint, ClientParts, SpanRunner, make_tiny
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan
from darwin.node.serving.local_hop import LocalHop
from darwin.protocol import (
    Identity,
    ModelId,
    PeerId,
    Receipt,
    ReceiptError,
    TraceError,
    new_session_id,
)

MODEL_ID = ModelId(b"\x07" * 32)
PROMPT = [5, 17, 42, 99, 123, 7, 250, 31]
NEW_TOKENS = 32


def _session(path: Path, cuts: list[tuple[int, int]]) -> tuple[InferenceSession, ClientParts]:
    checkpoint = Checkpoint.open(path)
    info = SessionInfo(model_id=MODEL_ID, n_layers=checkpoint.n_layers,
                       session_id=new_session_id())
    hops: list[Hop] = [
        LocalHop(CommittedSpan(SpanRunner.load(checkpoint, a, b), Identity.generate(),
                               CommitConfig(model_id=MODEL_ID, retention_s=60)),
                 info.session_id, max_length=64)
        for a, b in cuts
    ]
    return InferenceSession(hops, info), ClientParts.load(checkpoint)


def _reference(path: Path) -> list[int]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    out = model.generate(torch.tensor([PROMPT]), do_sample=False, max_new_tokens=NEW_TOKENS,
                         min_new_tokens=NEW_TOKENS, attention_mask=torch.ones(1, len(PROMPT)))
    return out[0, len(PROMPT):].tolist()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_greedy_generation_through_three_hops_matches_transformers(
    family: str, tmp_path: Path
) -> None:
    path = make_tiny(family, tmp_path / family, layers=4, hidden=64)
    session, parts = _session(path, [(0, 1), (1, 3), (3, 4)])
    streamed: list[int] = []

    tokens = trio.run(generate, parts, session, PROMPT,
                      SamplingConfig(max_new_tokens=NEW_TOKENS), streamed.append)

    assert tokens == _reference(path)
    assert streamed == tokens
    session.trace().verify(model_id=MODEL_ID, n_layers=4, session_id=session.info.session_id)
    assert len(session.receipts) == 3 * NEW_TOKENS


def test_a_seeded_sampled_generation_repeats_exactly(tiny_llama: Path) -> None:
    sampling = SamplingConfig(max_new_tokens=12, temperature=0.8, top_p=0.9, seed=11)
    runs = []
    for _ in range(2):
        session, parts = _session(tiny_llama, [(0, 2), (2, 4)])
        runs.append(trio.run(generate, parts, session, PROMPT, sampling))
    assert runs[0] == runs[1]


@dataclass
class _TamperingHop:
    """Wraps an honest hop and changes what it returns."""

    inner: LocalHop
    tamper_output: bool = False
    claimed_peer: PeerId | None = None

    @property
    def span(self) -> tuple[int, int]:
        return self.inner.span

    @property
    def peer_id(self) -> PeerId:
        return self.claimed_peer or self.inner.peer_id

    async def step(self, step: int, hidden: torch.Tensor) -> tuple[torch.Tensor, Receipt]:
        output, receipt = await self.inner.step(step, hidden)
        if self.tamper_output:
            output = output + 1e-3
        return output, receipt

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("tamper", ["output", "peer"])
def test_a_hop_whose_receipt_does_not_match_is_stopped(tiny_llama: Path, tamper: str) -> None:
    session, parts = _session(tiny_llama, [(0, 2), (2, 4)])
    honest = session.hops[1]
    assert isinstance(honest, LocalHop)
    session.hops[1] = _TamperingHop(
        honest, tamper_output=tamper == "output",
        claimed_peer=Identity.generate().peer_id if tamper == "peer" else None)
    with pytest.raises(ReceiptError):
        trio.run(generate, parts, session, PROMPT, SamplingConfig(max_new_tokens=2))


def test_a_trace_missing_a_hop_fails_verification(tiny_llama: Path) -> None:
    session, parts = _session(tiny_llama, [(0, 2), (2, 4)])
    trio.run(generate, parts, session, PROMPT, SamplingConfig(max_new_tokens=3))
    receipts = session.receipts
    del receipts[1]
    with pytest.raises(TraceError):
        session.trace().verify(model_id=MODEL_ID, n_layers=4,
                               session_id=session.info.session_id)
