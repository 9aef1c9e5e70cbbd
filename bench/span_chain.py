"""Span chain against plain transformers, in one process, on a ~270M-parameter Llama-style model.

Prints decode tokens/s, time to first token and per-token latency of `model.generate` and of
the same checkpoint cut into a chain of committed spans (every step hashed per layer and signed,
receipts checked). What the commitments cost on their own is ``bench/commitments.py``.

Run: ``.venv/bin/python bench/span_chain.py [--layers 16 --hidden 1024 --new-tokens 64]``
(the model is generated once into bench/out/; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import trio
from rich.console import Console
from rich.table import Table
from timing import Run, transformers_run
from transformers import AutoModelForCausalLM

from darwin.client.generation import generate
from darwin.client.sampling import SamplingConfig
from darwin.client.session import Hop, InferenceSession, SessionInfo
from darwin.model import Checkpoint, ClientParts, SpanRunner, make_tiny
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan
from darwin.node.serving.local_hop import LocalHop
from darwin.protocol import Identity, ModelId, new_session_id

MODEL_ID = ModelId(b"\x01" * 32)


def _model(args: argparse.Namespace) -> Path:
    path = Path(__file__).parent / "out" / f"llama-{args.layers}x{args.hidden}"
    if not (path / "model.safetensors").exists():
        make_tiny("llama", path, layers=args.layers, hidden=args.hidden, vocab=32000)
    return path


def _chain_run(path: Path, prompt: list[int], new_tokens: int,
               cuts: list[tuple[int, int]]) -> Run:
    """One timed greedy generation through the span chain (after a warm-up)."""
    checkpoint = Checkpoint.open(path)
    spans = [CommittedSpan(SpanRunner.load(checkpoint, a, b), Identity.generate(),
                           CommitConfig(model_id=MODEL_ID, retention_s=60)) for a, b in cuts]
    parts = ClientParts.load(checkpoint)

    def run(tokens: int) -> Run:
        info = SessionInfo(model_id=MODEL_ID, n_layers=checkpoint.n_layers,
                           session_id=new_session_id())
        hops: list[Hop] = [LocalHop(s, info.session_id, len(prompt) + tokens + 1)
                           for s in spans]
        stamps = [time.perf_counter()]
        out = trio.run(generate, parts, InferenceSession(hops, info), prompt,
                       SamplingConfig(max_new_tokens=tokens),
                       lambda _: stamps.append(time.perf_counter()))
        return Run.from_stamps(out, stamps)

    run(2)  # warm-up
    return run(new_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    path = _model(args)
    n = args.layers
    cuts = [(0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n)]
    prompt = torch.randint(3, 30000, (args.prompt_tokens,)).tolist()
    params = sum(math.prod(info.shape) for info in Checkpoint.open(path).tensors.values())
    console = Console()
    console.print(
        f"model: {path.name}, {params / 1e6:.0f}M parameters, fp32, "
        f"{torch.get_num_threads()} threads; prompt {args.prompt_tokens}, "
        f"{args.new_tokens} new tokens"
    )

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    transformers_run(model, prompt, 2)  # warm-up
    reference = transformers_run(model, prompt, args.new_tokens)
    del model
    chain = _chain_run(path, prompt, args.new_tokens, cuts)
    table = Table(title="span chain (3 hops, in process) vs transformers generate")
    for column in ("run", "TTFT ms", "decode tok/s", "p50 ms", "p95 ms", "p99 ms", "ratio"):
        table.add_column(column, justify="right")
    for name, run in (("transformers", reference), ("span chain", chain)):
        table.add_row(name, f"{run.ttft * 1e3:.1f}", f"{run.tokens_per_s:.2f}",
                      *(f"{run.quantile_ms(q):.1f}" for q in (50, 95, 99)),
                      f"{run.tokens_per_s / reference.tokens_per_s:.2f}")
    console.print(table)
    console.print(f"tokens identical to transformers: {chain.tokens == reference.tokens}")


if __name__ == "__main__":
    main()
