"""Measure resident memory of loading spans of a checkpoint; run as a subprocess by the tests.

Usage: ``python memory_probe.py CHECKPOINT MODE...`` where MODE is ``full`` (all blocks and the
client parts), ``span:A:B`` or ``stream:A:B:K``. Imports happen once; each mode runs in a forked
child that loads, runs two steps, and prints its RSS growth over its own baseline (taken after
the imports) as one JSON line.
"""

from __future__ import annotations

import gc
import json
import os
import sys

import psutil
import torch
import transformers.models.llama.modeling_llama  # noqa: F401  (imports are not model memory)

from darwin.model import Checkpoint, ClientParts, SpanRunner


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def _warm_up(width: int) -> None:
    """Start the thread pool and kernels' scratch space, which are per process, not per model."""
    q = torch.randn(1, 4, 4, 16)
    torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    torch.randn(4, width) @ torch.randn(width, 4 * width)


def _measure(path: str, mode: str) -> dict[str, object]:
    """Load per `mode`, run two steps (so every weight is touched), report RSS growth."""
    checkpoint = Checkpoint.open(path)
    _warm_up(checkpoint.hidden_size)
    base = _rss()
    kind, *args = mode.split(":")
    client = ClientParts.load(checkpoint) if kind == "full" else None
    if kind == "full":
        runner = SpanRunner.load(checkpoint, 0, checkpoint.n_layers)
    elif kind == "span":
        runner = SpanRunner.load(checkpoint, int(args[0]), int(args[1]))
    else:
        start, end, k = (int(a) for a in args)
        runner = SpanRunner.load(checkpoint, start, end, resident_blocks=k)
    session = runner.new_session(16)
    peak_resident = 0
    for _ in range(2):
        if client is not None:
            hidden = client.embed(torch.zeros(1, 4, dtype=torch.long))
        else:
            hidden = torch.zeros(1, 4, checkpoint.hidden_size)
        runner.forward(session, hidden)
        peak_resident = max(peak_resident, runner.blocks.resident_count)
    return {
        "mode": mode,
        "rss_growth": _rss() - base,
        "resident": runner.blocks.resident_count,
        "peak_resident": peak_resident,
        "loads": getattr(runner.blocks, "loads", None),
    }


def main(argv: list[str]) -> int:
    path, *modes = argv
    for mode in modes:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            with os.fdopen(write, "w") as out:
                out.write(json.dumps(_measure(path, mode)))
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as src:
            line = src.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not line:
            print(json.dumps({"mode": mode, "error": f"child exited with status {status}"}))
            return 1
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
