"""Timing shared by the benchmarks: one generation's token stamps and their statistics.

Both sides of a comparison are timed the same way: a stamp when generation starts and one as
each new token is chosen (transformers through a streamer, Darwin through ``on_token``).
Run as a script, it is the plain-transformers side of a benchmark in a process of its own:
``python bench/timing.py MODEL NEW_TOKENS`` reads prompts (JSON) on stdin and writes runs
(JSON) on stdout.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


def transformers_runs(path: Path, prompts: list[list[int]], new_tokens: int) -> list[Run]:
    """`model.generate` of each prompt (after a warm-up each) in a fresh process.

    The process gets libgomp's default spin-wait, not the shorter one ``import darwin`` sets
    for swarms (specs/node.md, "Threads"): the baseline is transformers as its users run it.
    """
    env = {key: value for key, value in os.environ.items() if key != "GOMP_SPINCOUNT"}
    done = subprocess.run([sys.executable, __file__, str(path), str(new_tokens)],
                          input=json.dumps(prompts), capture_output=True, text=True, env=env,
                          check=True)
    return [Run(**run) for run in json.loads(done.stdout)]


def _main() -> None:
    path, new_tokens = Path(sys.argv[1]), int(sys.argv[2])
    prompts = json.load(sys.stdin)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    runs = []
    for prompt in prompts:
        transformers_run(model, prompt, 2)  # warm-up
        runs.append(dataclasses.asdict(transformers_run(model, prompt, new_tokens)))
    json.dump(runs, sys.stdout)


if __name__ == "__main__":
    _main()
