"""A hop served in this process: a `CommittedSpan` behind the client's `Hop` interface.

Used where no network is wanted (the single-process chain of the benchmarks and tests); the
torch work runs in a worker thread, as it does in a serving node.
"""

from __future__ import annotations

import torch
import trio

from darwin.node.serving.committed_span import CommittedSpan
from darwin.protocol import PeerId, Receipt, SessionId


class LocalHop:
    """One session on an in-process span."""

    def __init__(self, span: CommittedSpan, session_id: SessionId, max_length: int) -> None:
        self.committed = span
        self.session_id = session_id
        self.session = span.runner.new_session(max_length)

    @property
    def span(self) -> tuple[int, int]:
        return (self.committed.runner.start, self.committed.runner.end)

    @property
    def peer_id(self) -> PeerId:
        return self.committed.identity.peer_id

    async def step(self, step: int, hidden: torch.Tensor) -> tuple[torch.Tensor, Receipt]:
        result = await trio.to_thread.run_sync(
            self.committed.step, self.session, self.session_id, step, hidden
        )
        return result.output, result.receipt

    async def aclose(self) -> None:
        """Nothing to release: the session's cache goes with this object."""
