"""An inference session over a chain of hops, checking every receipt as it arrives.

Rules (``docs/architecture.md``, "The inference path"; ``specs/forward-protocol.md``):
- A step sends hidden states through the hops in order; hop k's output is hop k+1's input.
- Each receipt must name the hop's node, the session, the step, the hop's span and positions,
  and the digests of exactly what the client sent and received; a bad receipt stops the step
  with `ReceiptError` or `SignatureError` before its output is used.
- The checked receipts, in order, are the session's trace.
- A hop that can no longer serve the session raises `HopFailed` (its node is gone, timed out,
  refused, or broke the protocol); a session with failover routes around it
  (`darwin.client.failover`). `HopViolation` is the case where the node broke the protocol,
  which the network cannot cause: the client records it against the node. `StepRefused` is
  the node saying *we* sent a bad step: routing around it would not help, so it ends the
  session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from darwin.model.torch_wire import digest
from darwin.protocol import (
    AdapterId,
    ModelId,
    PeerId,
    Receipt,
    SessionId,
    Trace,
    check_receipt,
)


class HopFailed(Exception):
    """A hop cannot continue the session; the client should route around its node.

    Attributes:
        peer_id: the node behind the hop.
        reason: what went wrong, for the user and the logs.
    """

    def __init__(self, peer_id: str, reason: str) -> None:
        super().__init__(f"{peer_id}: {reason}")
        self.peer_id = peer_id
        self.reason = reason


class HopViolation(HopFailed):
    """A hop broke the protocol: a receipt that does not check (bad signature, not what was
    exchanged), a malformed, mismatched or out-of-order answer. Frames arrive on an
    authenticated, integrity-checked stream, so this is the node's own doing (a bug or a lie),
    never the network's; the client records it as a ``protocol_violation``
    (``specs/ledger.md`` §7)."""

    @classmethod
    def at_step(cls, peer_id: str, step: int, error: Exception) -> HopViolation:
        """The hop's answer to `step` broke the protocol (`error`: say, its receipt does not
        check against what was exchanged)."""
        return cls(peer_id, f"protocol violation at step {step}: {error}")


class LinkFailed(HopFailed):
    """A hop says the push link it shares with a neighbour failed (``push_failed``), or its
    receipt's input is not the output the previous hop's receipt names. Either side may be
    at fault and the client cannot tell which, so nobody is excluded for it; the session
    stops pushing (`darwin.client.failover`)."""


class StepRefused(Exception):
    """A node refused a step as malformed or out of order: a client-side bug, not the node's."""


class Hop(Protocol):
    """One node serving one span for one session (in-process or over the network)."""

    @property
    def span(self) -> tuple[int, int]: ...

    @property
    def peer_id(self) -> PeerId: ...

    async def step(self, step: int, hidden: torch.Tensor) -> tuple[torch.Tensor, Receipt]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class PushedHop(Hop, Protocol):
    """A hop of a pushing route: a step is sent (`request` to the first hop, `request_pushed`,
    without hidden states, to the others) apart from reading its result, so the client can
    ask every hop before the first one answers. A result's output is None from every hop but
    the last: it went to the next hop, and the client has only its receipt."""

    async def request(self, step: int, hidden: torch.Tensor) -> None: ...

    async def request_pushed(self, step: int, like: torch.Tensor) -> None: ...

    async def result(self, step: int,
                     like: torch.Tensor) -> tuple[torch.Tensor | None, Receipt]: ...


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
            hidden, receipt = await self.run_hop(hop, self.next_step, hidden, positions)
            self.receipts.append(receipt)
        self.next_step += 1
        self.position += positions[1]
        return hidden

    async def run_hop(self, hop: Hop, step: int, hidden: torch.Tensor,
                      positions: tuple[int, int]) -> tuple[torch.Tensor, Receipt]:
        """Run one step on one hop and check its receipt; returns the output and the receipt.

        Raises:
            HopFailed, StepRefused: from the hop.
            ReceiptError, SignatureError: the receipt does not match what was exchanged.
        """
        output, receipt = await hop.step(step, hidden)
        self.check_result(hop, step, digest(hidden), digest(output), receipt, positions)
        return output, receipt

    def check_result(self, hop: Hop, step: int, input_hash: bytes, output_hash: bytes,
                     receipt: Receipt, positions: tuple[int, int]) -> None:
        """Check a hop's receipt for one step against the digests of its input and output.

        Raises:
            ReceiptError, SignatureError: the receipt does not match what was exchanged.
        """
        check_receipt(
            receipt, expected_node=hop.peer_id, model_id=self.info.model_id,
            session_id=self.info.session_id, step=step, span=hop.span,
            input_hash=input_hash, output_hash=output_hash,
            adapter_id=self.info.adapter_id, positions=positions,
        )

    def trace(self) -> Trace:
        """The session's trace so far."""
        return Trace(tuple(self.receipts))

    async def aclose(self) -> None:
        """Close every hop."""
        for hop in self.hops:
            await hop.aclose()
