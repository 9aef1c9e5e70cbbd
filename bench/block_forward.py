"""Decode-step time of Darwin's `SpanRunner` over every block against transformers' own model.

Isolates the blocks from everything around them (client loop, hashing, transport): both run a
128-token prefill, then timed one-token decode steps with their KV caches.

Run: ``.venv/bin/python bench/block_forward.py [--layers 16 --hidden 1024 --steps 20]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM, DynamicCache

from darwin.model import Checkpoint, SpanRunner, make_tiny


def _quantiles(times: list[float]) -> tuple[float, float]:
    ms = sorted(t * 1e3 for t in times)
    return statistics.median(ms), statistics.quantiles(ms, n=100)[94]


def _darwin(path: Path, prompt: torch.Tensor, steps: int) -> list[float]:
    checkpoint = Checkpoint.open(path)
    runner = SpanRunner.load(checkpoint, 0, checkpoint.n_layers)
    session = runner.new_session(prompt.shape[1] + steps)
    runner.forward(session, prompt)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        runner.forward(session, prompt[:, -1:])
        times.append(time.perf_counter() - start)
    return times


def _transformers(path: Path, prompt: torch.Tensor, steps: int) -> list[float]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).model
    times = []
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        model(inputs_embeds=prompt, cache=cache, use_cache=True)
        for _ in range(steps):
            start = time.perf_counter()
            model(inputs_embeds=prompt[:, -1:], cache=cache, use_cache=True)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--context", type=int, default=128, help="tokens before the decode steps")
    args = parser.parse_args()
    path = Path(__file__).parent / "out" / f"llama-{args.layers}x{args.hidden}"
    if not (path / "model.safetensors").exists():
        make_tiny("llama", path, layers=args.layers, hidden=args.hidden, vocab=32000)
    prompt = torch.randn(1, args.context, args.hidden, generator=torch.Generator().manual_seed(0))
    table = Table(title=f"decode step over {args.layers} blocks ({args.context}-token context)")
    for column in ("run", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    for name, run in (("darwin SpanRunner", _darwin), ("transformers LlamaModel", _transformers)):
        p50, p95 = _quantiles(run(path, prompt, args.steps))
        table.add_row(name, f"{p50:.1f}", f"{p95:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
