"""Shared builders for protocol tests: deterministic identities, receipts and traces."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import pytest

from darwin.protocol import (
    AdapterId,
    Identity,
    ModelId,
    Receipt,
    ReceiptBody,
    SessionId,
    layer_root_for,
)


def label_digest(*labels: object) -> bytes:
    """A 32-byte stand-in for a tensor digest, named by its labels."""
    return hashlib.blake2b(repr(labels).encode(), digest_size=32).digest()


@dataclass(frozen=True)
class Swarm:
    """A fixed model and three nodes serving layers [0, 3), [3, 5) and [5, 8)."""

    identities: tuple[Identity, ...]
    model_id: ModelId
    session_id: SessionId
    n_layers: int = 8
    cuts: tuple[int, ...] = (0, 3, 5, 8)
    prompt_tokens: int = 5  # step 0 is the prompt, every later step one token

    def hop_body(self, step: int, hop: int, /, **changes: object) -> ReceiptBody:
        """The honest receipt body of ``hop`` in ``step``; ``changes`` override fields."""
        start, end = self.cuts[hop], self.cuts[hop + 1]
        input_hash = label_digest("embedding", step) if hop == 0 else label_digest(step, hop - 1)
        output_hash = label_digest(step, hop)
        inner = [label_digest(step, "layer", i) for i in range(start + 1, end)]
        layer_inputs = [input_hash, *inner]
        body = ReceiptBody(
            model_id=self.model_id,
            adapter_id=None,
            session_id=self.session_id,
            step=step,
            span_start=start,
            span_end=end,
            input_hash=input_hash,
            output_hash=output_hash,
            layer_root=layer_root_for(layer_inputs, output_hash),
            position_start=0 if step == 0 else self.prompt_tokens + step - 1,
            position_count=self.prompt_tokens if step == 0 else 1,
            node_id=self.identities[hop].peer_id,
            time_ms=1_700_000_000_000 + 100 * step + hop,
            retention_s=3600,
        )
        return replace(body, **changes)

    def receipt(self, step: int, hop: int, /, **changes: object) -> Receipt:
        """The honest receipt of ``hop`` in ``step``, signed by that hop's node."""
        body = self.hop_body(step, hop, **changes)
        signer = next(i for i in self.identities if i.peer_id == body.node_id)
        return body.sign(signer)

    def trace(self, steps: int = 4) -> list[Receipt]:
        """An honest trace: every hop of every step, in order."""
        hops = range(len(self.cuts) - 1)
        return [self.receipt(step, hop) for step in range(steps) for hop in hops]

    def verify_kwargs(self) -> dict[str, object]:
        return {"model_id": self.model_id, "n_layers": self.n_layers, "session_id": self.session_id}


@pytest.fixture(scope="session")
def swarm() -> Swarm:
    identities = tuple(Identity.from_seed(bytes([seed]) * 32) for seed in (1, 2, 3))
    return Swarm(identities, ModelId(label_digest("model")), SessionId(b"\x5a" * 16))


@pytest.fixture(scope="session")
def adapter_id() -> AdapterId:
    return AdapterId(label_digest("adapter"))
