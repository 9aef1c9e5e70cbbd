"""Checking receipts: one as the client receives it, and the trace of a whole session.

Rules (``specs/receipts-and-traces.md``):

* A trace is the receipts of one inference session in order: step 0's hops from layer 0 to
  the last layer, then step 1's, and so on. Each step's route may differ (after failover).
* Every receipt must verify and name the trace's model, adapter and session.
* Within a step the spans chain contiguously from 0 to ``n_layers``, hop k's ``output_hash``
  is hop k+1's ``input_hash``, and all hops cover the same positions.
* Steps run 0, 1, ..., N-1 with no gap, duplicate or reordering; step 0 starts at position 0
  and each step starts where the previous one ended.
* Any violation raises ``TraceError`` naming the step and hop where it was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LocalProtocolError, ReceiptError, SignatureError, TraceError, blame_peer
from .identity import PeerId
from .ids import AdapterId, ModelId, SessionId
from .receipt import Receipt, ReceiptBody
from .schema import MAX_LAYERS, MapReader, require_int

MAX_TRACE_RECEIPTS = 2**20


def check_receipt(
    receipt: Receipt,
    *,
    expected_node: PeerId,
    model_id: ModelId,
    session_id: SessionId,
    step: int,
    span: tuple[int, int],
    input_hash: bytes,
    output_hash: bytes,
    adapter_id: AdapterId | None = None,
    positions: tuple[int, int] | None = None,
) -> None:
    """Check the receipt a hop returned for one step against what the client exchanged.

    Args:
        positions: ``(position_start, position_count)`` to check, if given.

    Raises:
        ReceiptError: naming every field that differs from the expected value.
        SignatureError: if the fields match but the signature does not verify.
    """
    expected: dict[str, object] = {
        "node_id": expected_node, "model_id": model_id, "adapter_id": adapter_id,
        "session_id": session_id, "step": step, "span_start": span[0], "span_end": span[1],
        "input_hash": input_hash, "output_hash": output_hash,
    }
    if positions is not None:
        expected["position_start"], expected["position_count"] = positions
    wrong = [name for name, value in expected.items() if getattr(receipt.body, name) != value]
    if wrong:
        raise ReceiptError(f"receipt from {receipt.body.node_id} differs in {', '.join(wrong)}")
    receipt.verify()


class _Walker:
    """Walks a trace receipt by receipt, knowing which step and hop comes next."""

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.step = 0
        self.hop = 0
        self.next_position = 0
        self.previous: ReceiptBody | None = None

    def fail(self, reason: str) -> TraceError:
        return TraceError(reason, step=self.step, hop=self.hop)

    def add(self, body: ReceiptBody) -> None:
        if self.previous is None:
            self._start_step(body)
        else:
            self._continue_step(self.previous, body)
        if body.span_end > self.n_layers:
            raise self.fail(f"span ends at layer {body.span_end} of a {self.n_layers}-layer model")
        if body.span_end < self.n_layers:
            self.previous, self.hop = body, self.hop + 1
            return
        self.next_position = body.position_start + body.position_count
        self.previous, self.step, self.hop = None, self.step + 1, 0

    def _start_step(self, body: ReceiptBody) -> None:
        if body.step < self.step:
            raise self.fail(f"receipt of step {body.step} again (duplicated or replayed)")
        if body.step > self.step:
            raise self.fail(f"receipt of step {body.step} where step {self.step} is due")
        if body.span_start != 0:
            raise self.fail(f"first hop starts at layer {body.span_start}, not 0")
        if body.position_start != self.next_position:
            raise self.fail(
                f"step starts at position {body.position_start}, not {self.next_position}"
            )

    def _continue_step(self, previous: ReceiptBody, body: ReceiptBody) -> None:
        if body.step != self.step:
            raise self.fail(f"step stops at layer {previous.span_end} of {self.n_layers}")
        if body.span_start != previous.span_end:
            problem = "overlaps" if body.span_start < previous.span_end else "leaves a gap after"
            raise self.fail(f"span [{body.span_start}, {body.span_end}) {problem} "
                            f"the previous span ending at {previous.span_end}")
        if body.input_hash != previous.output_hash:
            raise self.fail("input_hash is not the previous hop's output_hash")
        if (body.position_start, body.position_count) != (
            previous.position_start, previous.position_count
        ):
            raise self.fail("positions differ from the previous hop's")

    def finish(self) -> None:
        if self.previous is not None:
            raise self.fail(f"trace ends at layer {self.previous.span_end} of {self.n_layers}")


def verify_trace(
    receipts: Sequence[Receipt],
    *,
    model_id: ModelId,
    n_layers: int,
    session_id: SessionId,
    adapter_id: AdapterId | None = None,
) -> None:
    """Check that ``receipts`` are the complete, untampered trace of one session.

    Raises:
        TraceError: naming the step and hop of the first violation of the module's rules.
        LocalProtocolError: if ``n_layers`` is not in ``[1, MAX_LAYERS]``.
    """
    require_int("n_layers", n_layers, 1, MAX_LAYERS)
    if not receipts:
        raise TraceError("empty trace")
    walker = _Walker(n_layers)
    for receipt in receipts:
        body = receipt.body
        try:
            receipt.verify()
        except SignatureError as exc:
            raise walker.fail(exc.reason) from exc
        for name, value in (("model_id", model_id), ("adapter_id", adapter_id),
                            ("session_id", session_id)):
            if getattr(body, name) != value:
                raise walker.fail(f"receipt names another {name}")
        walker.add(body)
    walker.finish()


@dataclass(frozen=True)
class Trace:
    """The receipts of one inference session, in trace order."""

    receipts: tuple[Receipt, ...]

    def __post_init__(self) -> None:
        """Raises LocalProtocolError: unless ``receipts`` is a tuple of ``Receipt``."""
        if not isinstance(self.receipts, tuple) or not all(
            isinstance(receipt, Receipt) for receipt in self.receipts
        ):
            raise LocalProtocolError("a trace is a tuple of receipts")
        require_int("len(receipts)", len(self.receipts), 0, MAX_TRACE_RECEIPTS)

    def verify(
        self,
        *,
        model_id: ModelId,
        n_layers: int,
        session_id: SessionId,
        adapter_id: AdapterId | None = None,
    ) -> None:
        """``verify_trace`` over this trace's receipts (raises ``TraceError``)."""
        verify_trace(self.receipts, model_id=model_id, n_layers=n_layers,
                     session_id=session_id, adapter_id=adapter_id)

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this trace."""
        return {"receipts": [receipt.to_obj() for receipt in self.receipts]}

    @classmethod
    def from_obj(cls, obj: object) -> Trace:
        """Decode a trace a peer sent; does not verify it.

        Raises:
            RemoteProtocolError: if the map or any receipt is malformed.
        """
        items = MapReader(obj, ("receipts",), "trace").array("receipts")
        with blame_peer("trace"):
            require_int("len(receipts)", len(items), 0, MAX_TRACE_RECEIPTS)
        return cls(tuple(Receipt.from_obj(item) for item in items))
