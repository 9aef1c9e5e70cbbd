"""In-process nodes (honest or cheating) that commit, retain and answer challenges.

A `ServingNode` is the synchronous core of a serving node: a `CommittedSpan` signing each
step and a `RetentionStore` keeping what it committed. Cheats are runners that commit what
a dishonest node would: the `CheatingRunner` runs the span layer by layer and can tamper
with any layer's output, skip a layer, or compute in another dtype than it commits in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from darwin.model import Checkpoint, ClientParts, SpanOutput, SpanRunner, SpanSession
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan
from darwin.node.serving.retention import RetentionConfig, RetentionError, RetentionStore
from darwin.protocol import (
    Challenge,
    Identity,
    ModelId,
    Receipt,
    RemoteProtocolError,
    Reveal,
    SessionId,
)

Tamper = Callable[[int, torch.Tensor], torch.Tensor]  # (layer, output) -> committed output


def embedded_steps(checkpoint: Checkpoint, sizes: Sequence[int], seed: int,
                   dtype: torch.dtype = torch.float32, batch: int = 1) -> list[torch.Tensor]:
    """Embeddings of random tokens cut into steps of ``sizes`` positions, (batch, size, hidden)."""
    parts = ClientParts.load(checkpoint)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, int(checkpoint.config.vocab_size), (batch, sum(sizes)),
                        generator=generator)
    hidden = parts.embed(ids).to(dtype)
    return list(torch.split(hidden, list(sizes), dim=1))


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch threads (unchanged when None)."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _LayeredSession:
    sessions: list[SpanSession]
    position: int = 0


class CheatingRunner:
    """A span run layer by layer, committing what a cheating node would.

    Args:
        base: the runner whose blocks are used (its dtype is the compute dtype).
        commit_dtype: the dtype tensors are committed and exchanged in (cast at each layer).
        tamper: replaces layer outputs (called for every layer).
        skip: layers whose output is their input.
    """

    def __init__(self, base: SpanRunner, *, commit_dtype: torch.dtype | None = None,
                 tamper: Tamper | None = None, skip: frozenset[int] = frozenset()) -> None:
        self.start, self.end = base.start, base.end
        self.dtype = commit_dtype if commit_dtype is not None else base.dtype
        self._layers = [base.sub_span(i, i + 1) for i in range(base.start, base.end)]
        self._compute = base.dtype
        self._tamper = tamper
        self._skip = skip

    def new_session(self, max_length: int) -> _LayeredSession:
        return _LayeredSession([layer.new_session(max_length) for layer in self._layers])

    def forward(self, session: _LayeredSession, hidden: torch.Tensor) -> SpanOutput:
        inputs = []
        for layer, layer_session in zip(self._layers, session.sessions, strict=True):
            inputs.append(hidden)
            if layer.start in self._skip:
                output = hidden
            else:
                output = layer.forward(layer_session, hidden.to(self._compute)).hidden
                output = output.to(self.dtype)
            if self._tamper is not None:
                output = self._tamper(layer.start, output)
            hidden = output
        session.position += hidden.shape[1]
        return SpanOutput(hidden=hidden, layer_inputs=inputs)


def noise_tamper(layer: int, scale: float = 0.01, seed: int = 0) -> Tamper:
    """Adds noise of ``scale`` times the output's norm to ``layer``'s output."""
    generator = torch.Generator().manual_seed(seed)

    def tamper(index: int, output: torch.Tensor) -> torch.Tensor:
        if index != layer:
            return output
        noise = torch.randn(output.shape, generator=generator)
        noise *= scale * float(output.float().norm()) / float(noise.norm())
        return (output.float() + noise).to(output.dtype)
    return tamper


@dataclass
class ServingNode:
    """One node: its key, its committed span and its retention store."""

    identity: Identity
    committed: CommittedSpan
    store: RetentionStore
    sessions: dict[SessionId, list[Receipt]] = field(default_factory=dict)

    @classmethod
    def create(cls, runner: SpanRunner | CheatingRunner, identity: Identity, model_id: ModelId,
               *, retention_s: int = 600, retention: RetentionConfig | None = None,
               clock: Callable[[], float] | None = None) -> ServingNode:
        committed = CommittedSpan(runner, identity,  # type: ignore[arg-type]
                                  CommitConfig(model_id=model_id, retention_s=retention_s))
        store = (RetentionStore(identity, retention) if clock is None
                 else RetentionStore(identity, retention, clock=clock))
        return cls(identity, committed, store)

    def serve(self, session_id: SessionId, steps: Sequence[torch.Tensor],
              thread_count: int | None = None) -> list[Receipt]:
        """Run one session's steps, retaining each; returns the receipts."""
        runner = self.committed.runner
        session = runner.new_session(sum(t.shape[1] for t in steps))
        receipts = []
        with threads(thread_count):
            for step, hidden in enumerate(steps):
                result = self.committed.step(session, session_id, step, hidden.to(runner.dtype))
                self.store.put(result)
                receipts.append(result.receipt)
        self.sessions[session_id] = receipts
        return receipts

    def answer(self, challenge: Challenge) -> Reveal | None:
        """The reveal as the verifier receives it (through the wire), or None if refused."""
        try:
            received = Challenge.from_wire(challenge.to_wire())
            return Reveal.from_wire(self.store.answer(received).to_wire())
        except (RetentionError, RemoteProtocolError):
            return None
