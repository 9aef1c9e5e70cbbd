"""Timing shared by the benchmarks: one generation's token stamps and their statistics.

Both sides of a comparison are timed the same way: a stamp when generation starts and one as
each new token is chosen (transformers through a streamer, Darwin through ``on_token``).
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM
from transformers.generation.streamers import BaseStreamer


@dataclass(frozen=True)
class Run:
    """One generation's timings: seconds to the first token, then between tokens."""

    tokens: list[int]
    ttft: float
    gaps: list[float]

    @classmethod
    def from_stamps(cls, tokens: list[int], stamps: list[float]) -> Run:
        """From the start stamp followed by one stamp per token."""
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        return cls(tokens, gaps[0], gaps[1:])

    @property
    def tokens_per_s(self) -> float:
        return len(self.gaps) / sum(self.gaps) if self.gaps else math.nan

    def quantile_ms(self, q: int) -> float:
        if len(self.gaps) < 2:
            return math.nan
        return statistics.quantiles([g * 1e3 for g in self.gaps], n=100)[q - 1]


class TokenStamps(BaseStreamer):
    """A transformers streamer noting when each new token arrives (the first put is the
    prompt)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.calls = 0

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls > 1:
            self.stamps.append(time.perf_counter())

    def end(self) -> None:
        pass


def transformers_run(model: AutoModelForCausalLM, prompt: list[int], new_tokens: int) -> Run:
    """Greedy `model.generate` of exactly `new_tokens`, timed token by token."""
    ids = torch.tensor([prompt])
    streamer = TokenStamps()
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             streamer=streamer)
    return Run.from_stamps(out[0, len(prompt):].tolist(), [start, *streamer.stamps])
