"""A committed span signs exactly what it computed, layer by layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from darwin.model import Checkpoint, SpanRunner
from darwin.model.torch_wire import digest, from_wire, to_wire
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan
from darwin.protocol import (
    Identity,
    LocalProtocolError,
    ModelId,
    merkle_proof,
    merkle_root,
    new_session_id,
    verify_merkle_proof,
)

MODEL_ID = ModelId(bytes(range(32)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_wire_round_trip_preserves_bits_and_digest(dtype: torch.dtype) -> None:
    tensor = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    wire = to_wire(tensor)
    assert torch.equal(from_wire(wire), tensor)
    assert wire.digest() == digest(tensor)


def test_digest_of_a_non_contiguous_view_is_that_of_its_values() -> None:
    tensor = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    assert digest(tensor.t()) == digest(tensor.t().contiguous())


def test_only_allowlisted_dtypes_travel() -> None:
    with pytest.raises(LocalProtocolError):
        to_wire(torch.zeros(2, dtype=torch.float64))


def test_receipt_commits_to_every_layer_input_and_the_output(tiny_llama: Path) -> None:
    runner = SpanRunner.load(Checkpoint.open(tiny_llama), 1, 4)
    identity = Identity.from_seed(bytes(32))
    span = CommittedSpan(runner, identity, CommitConfig(model_id=MODEL_ID, retention_s=60))
    session_id = new_session_id()
    session = runner.new_session(16)
    hidden = torch.randn(1, 5, 64, generator=torch.Generator().manual_seed(1))

    result = span.step(session, session_id, 0, hidden)

    body = result.receipt.body
    result.receipt.verify()
    assert (body.span_start, body.span_end, body.step) == (1, 4, 0)
    assert (body.position_start, body.position_count) == (0, 5)
    assert body.input_hash == digest(hidden)
    assert body.output_hash == digest(result.output)
    assert len(result.layer_digests) == 3 + 1
    assert body.layer_root == merkle_root(list(result.layer_digests))
    for index, layer_input in enumerate(result.layer_inputs):
        proof = merkle_proof(list(result.layer_digests), index)
        assert verify_merkle_proof(digest(layer_input), proof, body.layer_root)

    decode = span.step(session, session_id, 1, hidden[:, :1])
    assert (decode.receipt.body.position_start, decode.receipt.body.position_count) == (5, 1)


def test_a_checked_input_digest_is_leaf_zero_without_hashing_again(tiny_llama: Path) -> None:
    runner = SpanRunner.load(Checkpoint.open(tiny_llama), 0, 2)
    span = CommittedSpan(runner, Identity.from_seed(bytes(32)),
                         CommitConfig(model_id=MODEL_ID, retention_s=60))
    hidden = torch.randn(1, 4, 64, generator=torch.Generator().manual_seed(2))
    session_id = new_session_id()

    hashed = span.step(runner.new_session(8), session_id, 0, hidden)
    given = span.step(runner.new_session(8), session_id, 0, hidden,
                      input_digest=to_wire(hidden).digest())

    assert given.layer_digests == hashed.layer_digests
    assert given.receipt.body.layer_root == hashed.receipt.body.layer_root
