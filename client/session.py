"""An inference session over a chain of hops, checking every receipt as it arrives.

Rules (DESIGN.md, "The inference path"):
- A step sends hidden states through the hops in order; hop k's output is hop k+1's input.
- Each receipt must name the hop's node, the session, the step, the hop's span and positions,
  and the digests of exactly what the client sent and received; a bad receipt stops the step
  with `ReceiptError` or `SignatureError` before its output is used.
- The checked receipts, in order, are the session's trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from darwin.node.torch_wire import digest
from darwin.protocol import (
    AdapterId,
    ModelId,
    PeerId,
    Receipt,
    SessionId,
    Trace,
    check_receipt,
)


class Hop(Protocol):
    """One node serving one span for one session (in-process or over the network)."""

    @property
    def span(self) -> tuple[int, int]: ...

    @property
    def peer_id(self) -> PeerId: ...

    async def step(self, step: int, hidden: torch.Tensor) -> tuple[torch.Tensor, Receipt]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class SessionInfo:
    """What every receipt of a session must name."""

    model_id: ModelId
    n_layers: int
    session_id: SessionId
    adapter_id: AdapterId | None = None


class InferenceSession:
    """Runs steps through `hops` and keeps the trace of checked receipts."""

    def __init__(self, hops: list[Hop], info: SessionInfo) -> None:
        self.hops = hops
        self.info = info
        self.receipts: list[Receipt] = []
        self.next_step = 0
        self.position = 0

    async def step(self, hidden: torch.Tensor) -> torch.Tensor:
        """Send one step's hidden states (batch, seq, hidden) through every hop.

        Raises:
            ReceiptError, SignatureError: a hop's receipt does not match what it exchanged.
        """
        positions = (self.position, hidden.shape[1])
        for hop in self.hops:
            output, receipt = await hop.step(self.next_step, hidden)
            check_receipt(
                receipt, expected_node=hop.peer_id, model_id=self.info.model_id,
                session_id=self.info.session_id, step=self.next_step, span=hop.span,
                input_hash=digest(hidden), output_hash=digest(output),
                adapter_id=self.info.adapter_id, positions=positions,
            )
            self.receipts.append(receipt)
            hidden = output
        self.next_step += 1
        self.position += positions[1]
        return hidden

    def trace(self) -> Trace:
        """The session's trace so far."""
        return Trace(tuple(self.receipts))

    async def aclose(self) -> None:
        """Close every hop."""
        for hop in self.hops:
            await hop.aclose()
