"""A chain of spans plus client parts reproduces plain transformers (Petals' block exact match)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from span_chain_harness import CUTS, DECODERS, NEW_TOKENS, Chain, load_chain
from transformers import AutoModel, AutoModelForCausalLM

from darwin.model import Checkpoint, ClientParts

ATOL = 1e-5
# A chunked prefill runs other kernels (a one-token chunk takes sdpa's decode path), so it
# differs from the single-pass reference by float32 rounding, which scales with the logits:
# the bound is ATOL relative to the largest logit (about 9 for the tiny models).


@dataclass
class Reference:
    checkpoint: Checkpoint
    client: ClientParts
    logits: torch.Tensor  # (batch, prompt, vocab) of the plain model
    generated: torch.Tensor  # (batch, NEW_TOKENS) greedy continuation of the plain model


@pytest.fixture(scope="module", params=DECODERS)
def reference(
    request: pytest.FixtureRequest, tiny: Callable[..., Path], prompt: torch.Tensor
) -> Reference:
    path = tiny(request.param)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    model.generation_config.eos_token_id = None  # always 32 tokens
    with torch.inference_mode():
        logits = model(prompt).logits
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
        )
    checkpoint = Checkpoint.open(path)
    generated = out[:, prompt.shape[1] :]
    assert generated.shape == (2, NEW_TOKENS)
    return Reference(checkpoint, ClientParts.load(checkpoint), logits, generated)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("cut", list(CUTS))
def test_prefill_logits_match(reference: Reference, prompt: torch.Tensor, cut: str) -> None:
    chain = Chain(reference.client, load_chain(reference.checkpoint, CUTS[cut]))
    logits = chain.prefill(prompt)
    assert _max_diff(logits, reference.logits) < ATOL


@pytest.mark.parametrize("cut", list(CUTS))
def test_greedy_generation_with_cache_matches(
    reference: Reference, prompt: torch.Tensor, cut: str
) -> None:
    chain = Chain(reference.client, load_chain(reference.checkpoint, CUTS[cut]))
    assert torch.equal(chain.greedy(prompt, NEW_TOKENS), reference.generated)


def test_streaming_generation_matches(reference: Reference, prompt: torch.Tensor) -> None:
    runners = load_chain(reference.checkpoint, [(0, 2), (2, 4)], resident_blocks=1)
    chain = Chain(reference.client, runners)
    assert torch.equal(chain.greedy(prompt, NEW_TOKENS), reference.generated)
    assert all(r.blocks.resident_count == 1 for r in runners)


@pytest.mark.parametrize("chunks", [(9, 11), (9, 1, 10)])
def test_chunked_prefill_matches(
    reference: Reference, prompt: torch.Tensor, chunks: tuple[int, ...]
) -> None:
    chain = Chain(reference.client, load_chain(reference.checkpoint, CUTS["1+3"]))
    logits = chain.prefill(prompt, chunks)
    scale = max(1.0, float(reference.logits.abs().max()))
    assert _max_diff(logits, reference.logits) < ATOL * scale
    assert torch.equal(chain.continue_greedy(logits, NEW_TOKENS), reference.generated)


def test_layer_inputs_are_the_chain_of_layer_outputs(
    reference: Reference, prompt: torch.Tensor
) -> None:
    whole, first, rest = (
        load_chain(reference.checkpoint, cut)[0] for cut in ([(0, 4)], [(0, 1)], [(1, 4)])
    )
    hidden = reference.client.embed(prompt)
    out = whole.forward(whole.new_session(64), hidden)
    assert len(out.layer_inputs) == 4 and out.layer_inputs[0] is hidden
    split = first.forward(first.new_session(64), hidden)
    assert _max_diff(split.hidden, out.layer_inputs[1]) == 0.0
    tail = rest.forward(rest.new_session(64), split.hidden)
    for mine, theirs in zip(tail.layer_inputs, out.layer_inputs[1:], strict=True):
        assert _max_diff(mine, theirs) == 0.0
    assert _max_diff(tail.hidden, out.hidden) == 0.0


# -- BERT ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert(tiny: Callable[..., Path]) -> tuple[Checkpoint, ClientParts, torch.nn.Module]:
    path = tiny("bert")
    checkpoint = Checkpoint.open(path)
    return checkpoint, ClientParts.load(checkpoint), AutoModel.from_pretrained(path).eval()


def _bert_chain(
    checkpoint: Checkpoint,
    client: ClientParts,
    cut: str,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    resident_blocks: int | None = None,
) -> torch.Tensor:
    hidden = client.embed(ids)
    for runner in load_chain(checkpoint, CUTS[cut], resident_blocks):
        hidden = runner.forward(runner.new_session(64), hidden, attention_mask=mask).hidden
    return hidden


@pytest.mark.parametrize("cut", list(CUTS))
def test_bert_last_hidden_state_matches(bert, prompt: torch.Tensor, cut: str) -> None:  # type: ignore[no-untyped-def]
    checkpoint, client, model = bert
    with torch.inference_mode():
        expected = model(prompt).last_hidden_state
    assert _max_diff(_bert_chain(checkpoint, client, cut, prompt, None), expected) < ATOL


def test_bert_padding_and_pooling_match(bert, prompt: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    checkpoint, client, model = bert
    mask = torch.ones_like(prompt)
    mask[1, 13:] = 0  # the second sequence is padded
    with torch.inference_mode():
        expected = model(prompt, attention_mask=mask).last_hidden_state
    hidden = _bert_chain(checkpoint, client, "2+1+1", prompt, mask, resident_blocks=1)
    assert _max_diff(hidden, expected) < ATOL
    pooled = client.pool(hidden, mask)
    manual = (expected * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert pooled.shape == (2, checkpoint.hidden_size)
    assert _max_diff(pooled, manual) < ATOL
    # padding changes nothing for the real tokens of the padded row
    alone = _bert_chain(checkpoint, client, "one-span", prompt[1:, :13], None)
    assert _max_diff(hidden[1:, :13], alone) < ATOL
