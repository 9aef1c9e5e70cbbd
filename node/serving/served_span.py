"""What a node serves: one loaded span of one checkpoint, and the compute of its sessions.

Rules:
- The span is loaded once at startup; a session runs on it or on a sub-span view of it
  (``Span.sub_span``: the same blocks, nothing loaded twice).
- Everything here is synchronous torch work for a worker thread; the stream handler only
  decodes, checks and encodes around it.
- A step either returns the encoded `StepResult` or raises ``ModelError`` having changed
  nothing (the runner validates before it touches the cache).
- Every committed step, replays included (the node cannot tell them apart), goes into the
  node's `RetentionStore` before its result is returned, so a challenge about any receipt the
  node signed can be answered for as long as the receipt promises.
"""

from __future__ import annotations

from dataclasses import dataclass

from darwin.model import Span, SpanSession
from darwin.model.torch_wire import from_wire, to_wire, wire_dtype
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan, CommittedStep
from darwin.node.serving.retention import RetentionStore
from darwin.node.serving.sessions import kv_bytes_per_row
from darwin.protocol import (
    DType,
    Identity,
    ModelId,
    Receipt,
    SessionId,
    StepRequest,
    StepResult,
)

__all__ = ["ServedSpan", "SessionCompute"]


@dataclass
class SessionCompute:
    """One forward session's compute state: its (sub-)span and its KV cache."""

    session_id: SessionId
    span: CommittedSpan
    state: SpanSession
    store: RetentionStore  # where every committed step is kept for challenges
    last_receipt: Receipt | None = None  # the latest step's (for StepReceipt)

    @property
    def batch_size(self) -> int | None:
        """The batch fixed by the first step that ran, or None before it."""
        return self.state.batch_size

    def run_step(self, request: StepRequest) -> bytes:
        """Run one step and return the encoded `StepResult` frame.

        Raises:
            ModelError: wrong width, dtype, batch or length; the session is unchanged.
        """
        done = self.commit(request)
        output = to_wire(done.output, digest=done.receipt.body.output_hash)
        return StepResult(request.step, output, done.receipt).to_wire()

    def commit(self, request: StepRequest) -> CommittedStep:
        """Run one step, retain it and make its receipt the latest (raises as `run_step`)."""
        hidden = from_wire(request.hidden)  # (batch, seq, hidden)
        done = self.span.step(self.state, self.session_id, request.step, hidden,
                              input_digest=request.input_hash)
        self.store.put(done)
        self.last_receipt = done.receipt
        return done


class ServedSpan:
    """The node's loaded span, its identity and what every receipt states."""

    def __init__(self, runner: Span, identity: Identity, commit: CommitConfig,
                 store: RetentionStore | None = None) -> None:
        self.runner = runner
        self.identity = identity
        self.commit = commit
        self.store = store if store is not None else RetentionStore(identity)

    @property
    def model_id(self) -> ModelId:
        return self.commit.model_id

    @property
    def span(self) -> tuple[int, int]:
        return (self.runner.start, self.runner.end)

    @property
    def dtype(self) -> DType:
        return wire_dtype(self.runner.dtype)

    def kv_bytes_per_row(self, start: int, end: int, max_length: int) -> int:
        """KV-cache bound of one batch row of a session over ``[start, end)``."""
        return kv_bytes_per_row(self.runner.family, end - start, max_length, self.runner.dtype)

    def open(self, session_id: SessionId, start: int, end: int, max_length: int) -> SessionCompute:
        """A fresh session over ``[start, end)``, inside the served span (cheap: no allocation).

        Raises:
            SpanOutOfRange: the span is not inside the served one.
        """
        runner = self.runner if (start, end) == self.span else self.runner.sub_span(start, end)
        span = CommittedSpan(runner, self.identity, self.commit)
        return SessionCompute(session_id, span, runner.new_session(max_length), self.store)
