"""Choosing the next token from logits: greedy, or temperature with nucleus (top-p) sampling.

Rules: temperature 0 is greedy (argmax, ties to the lowest id, as torch does); sampling draws
from a `torch.Generator` seeded once per generation, so a seed reproduces a run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class SamplingError(ValueError):
    """A sampling setting outside its range."""


@dataclass(frozen=True)
class SamplingConfig:
    """How a generation picks tokens and when it stops."""

    max_new_tokens: int = 32  # tokens to generate after the prompt
    temperature: float = 0.0  # 0 is greedy; otherwise logits are divided by it
    top_p: float = 1.0  # nucleus: smallest set of tokens whose probability reaches top_p
    seed: int | None = None  # seeds the sampler; None draws a fresh seed
    stop_token_id: int | None = None  # generation ends after emitting it (e.g. EOS)

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 1_000_000:
            raise SamplingError(
                f"max_new_tokens must be in [1, 1000000], not {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= 100.0:
            raise SamplingError(f"temperature must be in [0, 100], not {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise SamplingError(f"top_p must be in (0, 1], not {self.top_p}")


class Sampler:
    """Picks tokens under one `SamplingConfig`, with its own random stream."""

    def __init__(self, config: SamplingConfig) -> None:
        self.config = config
        self.generator = torch.Generator()
        if config.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(config.seed)

    def pick(self, logits: torch.Tensor) -> int:
        """The next token id from one position's logits, shape (vocab,)."""
        if self.config.temperature == 0.0:
            return int(torch.argmax(logits).item())
        probs = torch.softmax(logits.float() / self.config.temperature, dim=-1)  # (vocab,)
        if self.config.top_p < 1.0:
            probs = _nucleus(probs, self.config.top_p)
        return int(torch.multinomial(probs, 1, generator=self.generator).item())


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose mass reaches `top_p`, renormalised."""
    sorted_probs, order = torch.sort(probs, descending=True)  # (vocab,)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the better tokens
    sorted_probs[before >= top_p] = 0.0
    kept = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return kept / kept.sum()
