"""What commitments cost a serving node: hashing, Merkle root, signature and retention per step.

The model is cut over three spans as in the swarm benchmark. For each span and each step of a
session (a prefill of each prompt length, then decode steps), it times, on the real serving
code: the span's forward (`SpanRunner.forward`), the commitment (`CommittedSpan.commit`:
BLAKE2b of every layer input and the output, the Merkle root, the signed receipt; the span's
input is hashed once, when the node checks the request's ``input_hash``, and that digest is
reused as the first leaf, so it is not timed here) and the
retention of the step for challenges (`RetentionStore.put`, in memory as configured by default,
and with every step spilled to disk). Each is summed over the spans and shown as a share of the
step (compute + commitment + retention).

Run: ``.venv/bin/python bench/commitments.py`` (the ~270M Llama-style model of the other
benchmarks, generated once into bench/out/; nothing is downloaded); ``--smoke`` runs a
seconds-long version on a 4x64 model.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from darwin.model import Checkpoint, ClientParts, SpanRunner, make_tiny
from darwin.model.torch_wire import digest
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan
from darwin.node.serving.retention import RetentionConfig, RetentionStore
from darwin.protocol import Identity, ModelId, new_session_id

MODEL_ID = ModelId(b"\x01" * 32)
T = TypeVar("T")


@dataclass(frozen=True)
class StepCost:
    """Seconds one span spent on one step: computing it, committing to it, retaining it."""

    compute: float
    commit: float
    retain: float
    spill: float  # retention with the step written to disk instead


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _model(args: argparse.Namespace) -> Path:
    path = Path(__file__).parent / "out" / f"llama-{args.layers}x{args.hidden}"
    if not (path / "model.safetensors").exists():
        make_tiny("llama", path, layers=args.layers, hidden=args.hidden, vocab=args.vocab)
    return path


def _session(span: CommittedSpan, steps: list[torch.Tensor], store: RetentionStore,
             spill: RetentionStore) -> list[StepCost]:
    """Serve one session of `steps` (hidden states) and time each part of each step."""
    runner, session_id = span.runner, new_session_id()
    session = runner.new_session(sum(t.shape[1] for t in steps))
    costs = []
    for index, hidden in enumerate(steps):
        position = session.position
        input_digest = digest(hidden)  # hashed when the node decodes the request: not timed
        compute, output = _timed(lambda: runner.forward(session, hidden))  # noqa: B023
        commit, done = _timed(
            lambda: span.commit(output, session_id, index, position,  # noqa: B023
                                input_digest=input_digest))  # noqa: B023
        retain, _ = _timed(lambda: store.put(done))  # noqa: B023
        spilled, _ = _timed(lambda: spill.put(done))  # noqa: B023
        costs.append(StepCost(compute, commit, retain, spilled))
    return costs


def _span_costs(span: CommittedSpan, steps: list[torch.Tensor], repeats: int,
                spill_dir: Path) -> tuple[StepCost, StepCost]:
    """(prefill, decode) medians of one span over `repeats` sessions of `steps`."""
    store = RetentionStore(span.identity, RetentionConfig(memory_bytes=2**40))
    spill = RetentionStore(span.identity, RetentionConfig(memory_bytes=0, directory=spill_dir))
    try:
        _session(span, steps[:2], store, spill)  # warm-up
        sessions = [_session(span, steps, store, spill) for _ in range(repeats)]
    finally:
        spill.close()
        store.close()
    prefills = [costs[0] for costs in sessions]
    decodes = [cost for costs in sessions for cost in costs[1:]]
    return _median(prefills), _median(decodes)


def _median(costs: list[StepCost]) -> StepCost:
    return StepCost(*(statistics.median(getattr(c, name) for c in costs)
                      for name in ("compute", "commit", "retain", "spill")))


def _total(costs: list[StepCost]) -> StepCost:
    return StepCost(*(sum(getattr(c, name) for c in costs)
                      for name in ("compute", "commit", "retain", "spill")))


def _share(cost: StepCost) -> float:
    """Commitment and in-memory retention as a share of the whole step."""
    overhead = cost.commit + cost.retain
    return overhead / (cost.compute + overhead)


def hidden_steps(checkpoint: Checkpoint, prompt: int, decode: int) -> list[torch.Tensor]:
    """The embedded hidden states of a random prompt, then `decode` one-token steps."""
    parts = ClientParts.load(checkpoint)
    ids = torch.randint(0, int(checkpoint.config.vocab_size), (1, prompt + decode),
                        generator=torch.Generator().manual_seed(0))
    hidden = parts.embed(ids)  # (1, prompt + decode, hidden)
    return list(torch.split(hidden, [prompt] + [1] * decode, dim=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--nodes", type=int, default=3, help="spans the model is cut into")
    parser.add_argument("--prompt-lengths", default="128,1024")
    parser.add_argument("--decode", type=int, default=24, help="decode steps per session")
    parser.add_argument("--repeats", type=int, default=3, help="sessions per span and prompt")
    parser.add_argument("--smoke", action="store_true", help="a 4x64 model, seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.layers, args.hidden, args.vocab = 4, 64, 512
        args.prompt_lengths, args.decode, args.repeats = "16", 4, 1
    checkpoint = Checkpoint.open(_model(args))
    n = checkpoint.n_layers
    bounds = [round(i * n / args.nodes) for i in range(args.nodes + 1)]
    spans = list(itertools.pairwise(bounds))
    identity = Identity.generate()
    console = Console(width=150)
    console.print(f"model {checkpoint.path.name}, fp32, {torch.get_num_threads()} threads, "
                  f"spans {' '.join(f'[{a}, {b})' for a, b in spans)}, {args.decode} decode "
                  f"steps x {args.repeats} sessions per prompt")
    lengths = [int(x) for x in args.prompt_lengths.split(",")]
    results: dict[int, list[tuple[StepCost, StepCost]]] = {length: [] for length in lengths}
    with torch.inference_mode(), tempfile.TemporaryDirectory() as spill_dir:
        for start, end in spans:
            span = CommittedSpan(SpanRunner.load(checkpoint, start, end), identity,
                                 CommitConfig(MODEL_ID, retention_s=600))
            for length in lengths:
                steps = hidden_steps(checkpoint, length, args.decode)
                results[length].append(_span_costs(span, steps, args.repeats, Path(spill_dir)))
    console.print(_table(results))
    return 0


def _table(results: dict[int, list[tuple[StepCost, StepCost]]]) -> Table:
    table = Table(title="serving overhead of commitments per step, summed over the spans")
    for column in ("step", "compute ms", "hash+Merkle+sign ms", "retain ms", "share",
                   "worst span", "retain on disk ms"):
        table.add_column(column, justify="right")
    for length, per_span in results.items():
        for label, pick in ((f"prefill {length}", 0), (f"decode after {length}", 1)):
            costs = [pair[pick] for pair in per_span]
            total = _total(costs)
            table.add_row(label, f"{total.compute * 1e3:.1f}", f"{total.commit * 1e3:.2f}",
                          f"{total.retain * 1e3:.2f}", f"{_share(total):.2%}",
                          f"{max(_share(c) for c in costs):.2%}", f"{total.spill * 1e3:.1f}")
    return table


if __name__ == "__main__":
    raise SystemExit(main())
