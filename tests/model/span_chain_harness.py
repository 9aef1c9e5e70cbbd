"""Run a chain of spans plus client parts the way a Darwin client does, for the tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from darwin.model import Checkpoint, ClientParts, SpanRunner, SpanSession

DECODERS = ("llama", "mistral", "qwen2", "gpt2")
PROMPT_LEN = 20
NEW_TOKENS = 32
CUTS = {
    "one-span": [(0, 4)],
    "1+3": [(0, 1), (1, 4)],
    "2+1+1": [(0, 2), (2, 3), (3, 4)],
}


def load_chain(
    checkpoint: Checkpoint, cuts: Sequence[tuple[int, int]], resident_blocks: int | None = None
) -> list[SpanRunner]:
    return [SpanRunner.load(checkpoint, a, b, resident_blocks=resident_blocks) for a, b in cuts]


class Chain:
    """One inference session through every span of a chain."""

    def __init__(self, client: ClientParts, runners: list[SpanRunner], max_length: int = 128):
        self.client = client
        self.runners = runners
        self.sessions: list[SpanSession] = [r.new_session(max_length) for r in runners]
        self.position = 0
        self.sent: list[list[torch.Tensor]] = [[] for _ in runners]  # inputs per hop, per step

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed (batch, seq) ids; return logits (batch, seq, vocab)."""
        hidden = self.client.embed(ids, position_offset=self.position)
        for hop, (runner, session) in enumerate(zip(self.runners, self.sessions, strict=True)):
            self.sent[hop].append(hidden)
            hidden = runner.forward(session, hidden).hidden
        self.position += ids.shape[1]
        return self.client.logits(hidden)

    def prefill(self, ids: torch.Tensor, chunks: Sequence[int] | None = None) -> torch.Tensor:
        """Prefill in chunks of the given sizes; return the logits of all prompt positions."""
        sizes = list(chunks) if chunks else [ids.shape[1]]
        assert sum(sizes) == ids.shape[1]
        pieces = torch.split(ids, sizes, dim=1)
        return torch.cat([self.step(piece) for piece in pieces], dim=1)

    def greedy(
        self, ids: torch.Tensor, n: int, chunks: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Greedy decode `n` tokens after the prompt: (batch, n)."""
        return self.continue_greedy(self.prefill(ids, chunks), n)

    def continue_greedy(self, last_logits: torch.Tensor, n: int) -> torch.Tensor:
        """Greedy decode `n` tokens given the logits of the last step."""
        tokens = []
        logits = last_logits
        for _ in range(n):
            nxt = logits[:, -1].argmax(dim=-1, keepdim=True)  # (batch, 1)
            tokens.append(nxt)
            if len(tokens) < n:
                logits = self.step(nxt)
        return torch.cat(tokens, dim=1)
