"""A span that commits to what it computes: run a step, hash every layer input, sign a receipt.

This is the synchronous core of a serving node (it runs in a worker thread); the libp2p handler
only decodes, calls `CommittedSpan.step` and encodes. The receipt's layer root is the Merkle root
over ``[input of each layer of the span..., span output]`` (``specs/receipts-and-traces.md``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from darwin.model import Span, SpanOutput, SpanSession
from darwin.model.torch_wire import digest_all
from darwin.protocol import (
    AdapterId,
    Identity,
    ModelId,
    Receipt,
    ReceiptBody,
    SessionId,
    layer_root_for,
)


@dataclass(frozen=True)
class CommittedStep:
    """One step's output, its signed receipt, and the digests behind the layer root."""

    output: torch.Tensor  # (batch, seq, hidden)
    receipt: Receipt
    layer_digests: tuple[bytes, ...]  # the Merkle leaves: each layer's input, then the output
    layer_inputs: tuple[torch.Tensor, ...]  # kept for challenges by the retention store


@dataclass(frozen=True)
class CommitConfig:
    """What every receipt of a serving span states besides the step itself."""

    model_id: ModelId  # the 32-byte id of the checkpoint served
    retention_s: int  # how long activations are kept for challenges


class CommittedSpan:
    """A `Span` whose every step yields a receipt signed by the node's identity."""

    def __init__(self, runner: Span, identity: Identity, config: CommitConfig) -> None:
        self.runner = runner
        self.identity = identity
        self.config = config

    def step(
        self,
        session: SpanSession,
        session_id: SessionId,
        step: int,
        hidden: torch.Tensor,
        adapter_id: AdapterId | None = None,
        input_digest: bytes | None = None,
    ) -> CommittedStep:
        """Run one step of a session and sign what it computed.

        `input_digest`, when given, is the digest of `hidden` already checked by the caller
        (a decoded `StepRequest` checks its ``input_hash``); it is not hashed again.

        Raises:
            ModelError: the step is invalid for this span or session (see `SpanRunner.forward`).
        """
        position = session.position
        result = self.runner.forward(session, hidden)
        return self.commit(result, session_id, step, position, adapter_id, input_digest)

    def commit(
        self,
        result: SpanOutput,
        session_id: SessionId,
        step: int,
        position: int,
        adapter_id: AdapterId | None = None,
        input_digest: bytes | None = None,
    ) -> CommittedStep:
        """Hash every layer input and the output of a computed step, root them and sign.

        Separate from `step` so that the cost of commitments can be measured on its own
        (``bench/commitments.py``). `input_digest`: as in `step`.
        """
        if input_digest is None:
            leaves = digest_all((*result.layer_inputs, result.hidden))
        else:
            leaves = (input_digest, *digest_all((*result.layer_inputs[1:], result.hidden)))
        layer_root = layer_root_for(leaves[:-1], leaves[-1])
        return self.signed(result, leaves, layer_root, session_id, step, position, adapter_id)

    def signed(
        self,
        result: SpanOutput,
        leaves: tuple[bytes, ...],
        layer_root: bytes,
        session_id: SessionId,
        step: int,
        position: int,
        adapter_id: AdapterId | None = None,
    ) -> CommittedStep:
        """The step with its receipt over `leaves` and their `layer_root`, signed once.

        Apart from `commit` so that the benchmark can sign leaves hashed another way.
        """
        body = ReceiptBody(
            model_id=self.config.model_id,
            adapter_id=adapter_id,
            session_id=session_id,
            step=step,
            span_start=self.runner.start,
            span_end=self.runner.end,
            input_hash=leaves[0],
            output_hash=leaves[-1],
            layer_root=layer_root,
            position_start=position,
            position_count=result.hidden.shape[1],
            node_id=self.identity.peer_id,
            time_ms=time.time_ns() // 1_000_000,
            retention_s=self.config.retention_s,
        )
        return CommittedStep(
            result.hidden, body.sign(self.identity), leaves, tuple(result.layer_inputs)
        )
