"""The verifier's cost per challenge against the hop it checks, in one process, on a
~270M-parameter Llama-style model by default.

For a few steps k of a served session: the node's answer (reading the retained activations,
proofs, signature), the reveal's size, the verifier's cold load of one layer, its
recomputation of k + 1 steps of that layer and the whole check, against the cost of the hop
it checks (the span's steps 0..k). What serving with commitments costs the node is
``bench/commitments.py``.

Run: ``.venv/bin/python bench/verifier.py [--layers 16 --hidden 1024 --prompt 128
--decode 32]``; ``--smoke`` runs a seconds-long version on a 4x64 model. The model is
generated once into bench/out/; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from commitments import hidden_steps
from rich.console import Console
from rich.table import Table

from darwin.model import Checkpoint, SpanRunner, make_tiny
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan, CommittedStep
from darwin.node.serving.retention import RetentionConfig, RetentionStore
from darwin.protocol import (
    Challenge,
    Identity,
    ModelId,
    Outcome,
    Reveal,
    check_reveal,
    new_session_id,
)
from darwin.verifier import Judgement, LayerRecomputer, Verifier

MODEL_ID = ModelId(b"\x01" * 32)


def _model(args: argparse.Namespace) -> Path:
    path = Path(__file__).parent / "out" / f"llama-{args.layers}x{args.hidden}"
    if not (path / "model.safetensors").exists():
        make_tiny("llama", path, layers=args.layers, hidden=args.hidden, vocab=args.vocab)
    return path


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _serve(span: CommittedSpan, steps: list[torch.Tensor], store: RetentionStore,
           ) -> tuple[list[float], list[CommittedStep]]:
    """(step seconds, committed steps) of one session, every step retained in `store`."""
    session_id = new_session_id()
    session = span.runner.new_session(sum(t.shape[1] for t in steps))
    step_times, results = [], []
    for index, hidden in enumerate(steps):
        seconds, result = _timed(partial(span.step, session, session_id, index, hidden))
        assert isinstance(result, CommittedStep)
        step_times.append(seconds)
        results.append(result)
        store.put(result)
    return step_times, results


def _load_layer(recomputer: LayerRecomputer, layer: int, dtype: torch.dtype) -> None:
    """Open the one-layer streaming runner and read its block (streaming loads lazily)."""
    runner = recomputer.runner(layer, dtype)
    with runner.blocks.running():
        runner.blocks.get(layer)


def _decode_and_judge(verifier: Verifier, challenge: Challenge, wire: bytes) -> Judgement:
    return verifier.judge(challenge, Reveal.from_wire(wire))


def _challenge_table(args: argparse.Namespace, checkpoint: Checkpoint, span: CommittedSpan,
                     store: RetentionStore, results: list[CommittedStep],
                     step_times: list[float]) -> Table:
    receipts = tuple(r.receipt for r in results)
    verifier = Verifier(Identity.generate(), checkpoint, model_id=MODEL_ID)
    rng = random.Random(0)
    table = Table(title="challenges: one random layer at step k")
    for column in ("k", "layer", "node answer ms", "reveal KiB", "load layer ms",
                   "recompute ms", "verifier total ms", "hop steps 0..k ms", "verifier / hop"):
        table.add_column(column, justify="right")
    last = len(receipts) - 1
    for step in sorted({0, last // 2, last})[: args.challenges]:
        layer = rng.randrange(span.runner.start, span.runner.end)
        challenge = Challenge(receipts[: step + 1], layer, step)
        answer_s, reveal = _timed(partial(store.answer, challenge))
        assert isinstance(reveal, Reveal)
        wire = reveal.to_wire()
        cold = LayerRecomputer(checkpoint)
        load_s, _ = _timed(partial(_load_layer, cold, layer, span.runner.dtype))
        revealed = check_reveal(challenge, reveal)
        recompute_s, _ = _timed(partial(cold.recompute, revealed))
        verifier.recomputer = cold  # the layer is loaded: check_s is the check alone
        check_s, judgement = _timed(partial(_decode_and_judge, verifier, challenge, wire))
        assert isinstance(judgement, Judgement) and judgement.outcome is Outcome.PASS
        hop_s = sum(step_times[: step + 1])
        table.add_row(str(step), str(layer), f"{1e3 * answer_s:.2f}", f"{len(wire) / 1024:.0f}",
                      f"{1e3 * load_s:.1f}", f"{1e3 * recompute_s:.1f}",
                      f"{1e3 * (check_s + load_s):.1f}", f"{1e3 * hop_s:.1f}",
                      f"{(check_s + load_s) / hop_s:.2f}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--span", default=None, help="A:B, the hop's layers (default: all)")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--decode", type=int, default=32)
    parser.add_argument("--challenges", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="a 4x64 model, 16+4 tokens")
    args = parser.parse_args(argv)
    if args.smoke:
        args.layers, args.hidden, args.vocab, args.prompt, args.decode = 4, 64, 512, 16, 4
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    checkpoint = Checkpoint.open(_model(args))
    start, end = (map(int, args.span.split(":")) if args.span else (0, checkpoint.n_layers))
    runner = SpanRunner.load(checkpoint, start, end)
    span = CommittedSpan(runner, Identity.generate(), CommitConfig(MODEL_ID, retention_s=600))
    steps = hidden_steps(checkpoint, args.prompt, args.decode)
    console = Console(width=160)
    console.print(f"model {checkpoint.path.name}, {torch.get_num_threads()} threads, "
                  f"prompt {args.prompt}, decode {args.decode}")
    store = RetentionStore(span.identity, RetentionConfig(memory_bytes=2**40))
    with torch.inference_mode():
        _serve(span, steps[:2], store)  # warm-up
        step_times, results = _serve(span, steps, store)
        console.print(_challenge_table(args, checkpoint, span, store, results, step_times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
