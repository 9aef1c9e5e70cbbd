"""What commitments cost a serving node: hashing, Merkle root, signature and retention per step.

The model is cut over three spans as in the swarm benchmark. For each span and each step of a
session (a prefill of each prompt length, then decode steps), it times, on the real serving
code: the span's forward (`SpanRunner.forward`), the commitment (`CommittedSpan.commit`:
BLAKE3 of every layer input and the output, the Merkle root, the signed receipt; the span's
input is hashed once, when the node checks the request's ``input_hash``, and that digest is
reused as the first leaf, so it is not timed here) and the
retention of the step for challenges (`RetentionStore.put`, in memory as configured by default,
and with every step spilled to disk). Each is summed over the spans and shown as a share of the
step (compute + commitment + retention).

Paired in the same run, on the same forward outputs, it times the BLAKE2b-256 commitment that
BLAKE3 replaced (``--hash``): the leaves hashed with hashlib behind the old digest header, large
ones on a thread pool, the Merkle root with BLAKE2b, then the same receipt signed by the serving
code. The two take turns going first, step by step, so neither always finds the caches cold
after the forward pass. That path lives here only; the product has no switch.

Run: ``.venv/bin/python bench/commitments.py`` (the ~270M Llama-style model of the other
benchmarks, generated once into bench/out/; nothing is downloaded); ``--smoke`` runs a
seconds-long version on a 4x64 model.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import os
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from darwin.model import Checkpoint, ClientParts, SpanOutput, SpanRunner, make_tiny
from darwin.model.torch_wire import bytes_view, digest, wire_dtype
from darwin.node.config import RetentionConfig
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan, CommittedStep
from darwin.node.serving.retention import RetentionStore
from darwin.protocol import Identity, ModelId, SessionId, new_session_id

MODEL_ID = ModelId(b"\x01" * 32)
T = TypeVar("T")


HASHES = ("blake3", "blake2b")


@dataclass(frozen=True)
class StepCost:
    """Seconds one span spent on one step: computing it, committing to it, retaining it."""

    compute: float
    commit: float  # BLAKE3, as served
    commit_blake2b: float  # the BLAKE2b commitment it replaced, on the same output
    retain: float
    spill: float  # retention with the step written to disk instead


_FIELDS = ("compute", "commit", "commit_blake2b", "retain", "spill")


# -- the BLAKE2b-256 commitment BLAKE3 replaced (specs before the switch) -----------------------

_BLAKE2B_TENSOR_TAG = b"darwin/tensor/1\0"
_BLAKE2B_PARALLEL_BYTES = 64 * 1024  # from here its leaves went to the thread pool


def _blake2b(*parts: bytes) -> bytes:
    return hashlib.blake2b(b"".join(parts), digest_size=32).digest()


@functools.cache
def _blake2b_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="blake2b")


def blake2b_leaves(tensors: Sequence[torch.Tensor]) -> tuple[bytes, ...]:
    """BLAKE2b-256 tensor digests: the header hashed once and copied, large leaves in parallel."""
    first = tensors[0]
    header = hashlib.blake2b(digest_size=32)
    header.update(_BLAKE2B_TENSOR_TAG + struct.pack(
        f"<BB{first.dim()}Q", wire_dtype(first.dtype).code, first.dim(), *first.shape))

    def one(view: memoryview) -> bytes:
        hasher = header.copy()
        hasher.update(view)
        return hasher.digest()

    views = [bytes_view(t) for t in tensors]
    if len(views) < 2 or views[0].nbytes < _BLAKE2B_PARALLEL_BYTES:
        return tuple(one(view) for view in views)
    return tuple(_blake2b_pool().map(one, views))


def blake2b_root(leaves: Sequence[bytes]) -> bytes:
    """The BLAKE2b-256 Merkle root of the same tree (leaf, node and count-bound root tags)."""
    level = [_blake2b(b"\x00", leaf) for leaf in leaves]
    while len(level) > 1:
        paired = [_blake2b(b"\x01", level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = [*paired, level[-1]] if len(level) % 2 else paired
    return _blake2b(b"\x02", struct.pack("<Q", len(leaves)), level[0])


def blake2b_commit(span: CommittedSpan, result: SpanOutput, session_id: SessionId, step: int,
                   position: int, input_digest: bytes) -> CommittedStep:
    """`CommittedSpan.commit` as it was with BLAKE2b-256, signed by the same serving code."""
    leaves = (input_digest, *blake2b_leaves((*result.layer_inputs[1:], result.hidden)))
    return span.signed(result, leaves, blake2b_root(leaves), session_id, step, position)


# -- timing ---------------------------------------------------------------------------------


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
             spill: RetentionStore, hashes: tuple[str, ...], turn: int) -> list[StepCost]:
    """Serve one session of `steps` (hidden states) and time each part of each step; the
    commitments of `hashes` take turns going first (`turn` offsets whose turn it is)."""
    runner, session_id = span.runner, new_session_id()
    session = runner.new_session(sum(t.shape[1] for t in steps))
    costs = []
    for index, hidden in enumerate(steps):
        position = session.position
        # Hashed when the node decodes the request: not timed.
        input_digest = {"blake3": digest(hidden), "blake2b": blake2b_leaves([hidden])[0]}
        compute, output = _timed(lambda: runner.forward(session, hidden))  # noqa: B023
        commits = {
            "blake3": lambda: span.commit(output, session_id, index, position,  # noqa: B023
                                          input_digest=input_digest["blake3"]),  # noqa: B023
            "blake2b": lambda: blake2b_commit(span, output, session_id, index,  # noqa: B023
                                              position, input_digest["blake2b"]),  # noqa: B023
        }
        first = (index + turn) % len(hashes)
        order = hashes[first:] + hashes[:first]
        timed = {name: _timed(commits[name]) for name in order}
        done = timed[hashes[0]][1]
        retain, _ = _timed(lambda: store.put(done))  # noqa: B023
        spilled, _ = _timed(lambda: spill.put(done))  # noqa: B023
        seconds = {name: timed[name][0] if name in timed else float("nan") for name in HASHES}
        costs.append(StepCost(compute, seconds["blake3"], seconds["blake2b"], retain, spilled))
    return costs


def _span_costs(span: CommittedSpan, steps: list[torch.Tensor], repeats: int, spill_dir: Path,
                hashes: tuple[str, ...]) -> tuple[StepCost, StepCost]:
    """(prefill, decode) medians of one span over `repeats` sessions of `steps`."""
    store = RetentionStore(span.identity, RetentionConfig(memory_bytes=2**40))
    spill = RetentionStore(span.identity, RetentionConfig(memory_bytes=0, directory=spill_dir))
    try:
        _session(span, steps[:2], store, spill, hashes, 0)  # warm-up
        sessions = [_session(span, steps, store, spill, hashes, turn)
                    for turn in range(repeats)]
    finally:
        spill.close()
        store.close()
    prefills = [costs[0] for costs in sessions]
    decodes = [cost for costs in sessions for cost in costs[1:]]
    return _median(prefills), _median(decodes)


def _median(costs: list[StepCost]) -> StepCost:
    return StepCost(*(statistics.median(getattr(c, name) for c in costs) for name in _FIELDS))


def _total(costs: list[StepCost]) -> StepCost:
    return StepCost(*(sum(getattr(c, name) for c in costs) for name in _FIELDS))


def _share(cost: StepCost, commit: float) -> float:
    """A commitment (`commit` seconds) and in-memory retention as a share of the whole step."""
    overhead = commit + cost.retain
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
    parser.add_argument("--hash", choices=("both", *HASHES), default="both",
                        help="the commitments timed: BLAKE3 as served, the BLAKE2b one it "
                             "replaced, or both paired (default)")
    parser.add_argument("--smoke", action="store_true", help="a 4x64 model, seconds")
    args = parser.parse_args(argv)
    hashes = HASHES if args.hash == "both" else (args.hash,)
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
                  f"steps x {args.repeats} sessions per prompt, {' vs '.join(hashes)}")
    lengths = [int(x) for x in args.prompt_lengths.split(",")]
    results: dict[int, list[tuple[StepCost, StepCost]]] = {length: [] for length in lengths}
    with torch.inference_mode(), tempfile.TemporaryDirectory() as spill_dir:
        for start, end in spans:
            span = CommittedSpan(SpanRunner.load(checkpoint, start, end), identity,
                                 CommitConfig(MODEL_ID, retention_s=600))
            for length in lengths:
                steps = hidden_steps(checkpoint, length, args.decode)
                results[length].append(
                    _span_costs(span, steps, args.repeats, Path(spill_dir), hashes))
    console.print(_table(results, hashes))
    return 0


def _table(results: dict[int, list[tuple[StepCost, StepCost]]], hashes: Sequence[str]) -> Table:
    table = Table(title="serving overhead of commitments per step, summed over the spans")
    columns = {"blake3": ("blake3 hash+Merkle+sign ms", "blake3 share", "worst span"),
               "blake2b": ("blake2b hash+Merkle+sign ms", "blake2b share", "worst span")}
    for column in ("step", "compute ms", "retain ms",
                   *(c for name in hashes for c in columns[name]), "retain on disk ms"):
        table.add_column(column, justify="right")
    for length, per_span in results.items():
        for label, pick in ((f"prefill {length}", 0), (f"decode after {length}", 1)):
            costs = [pair[pick] for pair in per_span]
            total = _total(costs)
            cells = []
            for name in hashes:
                field = "commit" if name == "blake3" else "commit_blake2b"
                cells += [f"{getattr(total, field) * 1e3:.2f}",
                          f"{_share(total, getattr(total, field)):.2%}",
                          f"{max(_share(c, getattr(c, field)) for c in costs):.2%}"]
            table.add_row(label, f"{total.compute * 1e3:.1f}", f"{total.retain * 1e3:.2f}",
                          *cells, f"{total.spill * 1e3:.1f}")
    return table


if __name__ == "__main__":
    raise SystemExit(main())
