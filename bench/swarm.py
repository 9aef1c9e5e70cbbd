"""The swarm against plain transformers: a Llama-style model split over 3 local node processes.

For a 128-token and a 1024-token prompt it measures, for transformers ``model.generate`` (one
process) and for the swarm (three ``darwin-node join`` processes on 127.0.0.1, the client in
this process: discovery, signed receipts, checked trace), in the same run:
time to first token, decode tokens/s and p50/p95/p99 per-token latency. Greedy decoding of the
same random prompt, so both produce the same tokens (checked).

The swarm's time to first token counts opening the route's sessions (discovery is done once
per round, before); both sides get one warm-up run per prompt length.

The swarm pushes activations node to node (``specs/forward-protocol.md``, "Pushed
activations"); ``--relayed`` adds, in every round, the same runs with the client relaying them
(the two swarm sides take turns going first: the side right after transformers' process ran
measurably slower).

The sides alternate in rounds (transformers, then the swarm, ``--rounds`` times) and the
table shows per-metric medians over the rounds, each ratio being the median of each round's
ratio: the reference machine's speed drifts by up to 1.5x within minutes, so sides measured
minutes apart are not comparable, while sides measured back to back are.

Run: ``.venv/bin/python bench/swarm.py`` (~270M parameters: 16 layers, hidden 1024, vocab
32000; generated once into bench/out/, nothing is downloaded). A quick smoke run:
``bench/swarm.py --layers 4 --hidden 128 --vocab 1000 --prompt-lengths 16,64 --new-tokens 8
--rounds 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from darwin import heap  # before torch, for darwin's thread settings (specs/node.md, "Threads")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import trio
from rich.console import Console
from rich.table import Table
from timing import Run, transformers_runs

from darwin.client.generation import generate
from darwin.client.local_swarm import LocalSwarm, LocalSwarmConfig
from darwin.client.sampling import SamplingConfig
from darwin.client.swarm import SwarmClient
from darwin.model import Checkpoint, ClientParts, make_tiny, model_id
from darwin.net.host import HostConfig, open_host
from darwin.protocol import ModelId


def _model(args: argparse.Namespace) -> Path:
    suffix = "" if args.vocab == 32000 else f"-v{args.vocab}"  # bench/span_chain.py's model
    path = Path(__file__).parent / "out" / f"llama-{args.layers}x{args.hidden}{suffix}"
    if not (path / "model.safetensors").exists():
        make_tiny("llama", path, layers=args.layers, hidden=args.hidden, vocab=args.vocab)
    return path


async def _swarm_run(client: SwarmClient, parts: ClientParts, prompt: list[int],
                     new_tokens: int) -> Run:
    stamps = [time.perf_counter()]
    session = await client.open_session(len(prompt) + new_tokens)
    try:
        tokens = await generate(parts, session, prompt, SamplingConfig(max_new_tokens=new_tokens),
                                lambda _: stamps.append(time.perf_counter()))
    finally:
        await session.aclose()
    return Run.from_stamps(tokens, stamps)


async def _swarm_runs(checkpoint: Checkpoint, parts: ClientParts, bootstrap: tuple[str, ...],
                      prompts: list[list[int]], new_tokens: int, sides: list[str]
                      ) -> tuple[dict[str, list[Run]], list[tuple[str, int, int]]]:
    """One client host, one discovery: per prompt, a run of each side (pushed, relayed)."""
    config = HostConfig(bootstrap=bootstrap, dht_server=False)
    async with open_host(os.urandom(32), config) as host:
        client = await SwarmClient.connect(host, ModelId(model_id(checkpoint)),
                                           checkpoint.n_layers)
        runs: dict[str, list[Run]] = {side: [] for side in sides}
        for prompt in prompts:
            for side in sides:
                client.config = dataclasses.replace(client.config, push=side == "pushed")
                await _swarm_run(client, parts, prompt, 2)  # warm-up
                runs[side].append(await _swarm_run(client, parts, prompt, new_tokens))
        session = await client.open_session(8)
        route = [(str(h.peer_id), *h.span) for h in session.hops]
        await session.aclose()
    return runs, route


# (name, unit, value of a run): the table's metrics for each prompt length
_METRICS: list[tuple[str, str, Callable[[Run], float]]] = [
    ("time to first token", "ms", lambda run: run.ttft * 1e3),
    ("decode", "tok/s", lambda run: run.tokens_per_s),
    *((f"p{q} per-token latency", "ms", lambda run, q=q: run.quantile_ms(q)) for q in (50, 95, 99)),
]


def _table(lengths: list[int], hf: list[list[Run]], sides: dict[str, list[list[Run]]]) -> Table:
    """Medians over the rounds; each ratio is the median of each round's ratio (and its range)."""
    table = Table(title=f"swarm (node processes) vs transformers generate, "
                        f"{len(hf)} alternating round(s), medians")
    table.add_column("prompt", justify="right")
    table.add_column("metric")
    table.add_column("transformers", justify="right")
    for side in sides:
        table.add_column(side, justify="right")
        table.add_column(f"{side} / tf (range)", justify="right")
    for i, length in enumerate(lengths):
        for name, unit, value in _METRICS:
            a = [value(runs[i]) for runs in hf]
            cells = [str(length), name, f"{statistics.median(a):.1f} {unit}"]
            for rounds in sides.values():
                b = [value(runs[i]) for runs in rounds]
                ratios = [y / x for x, y in zip(a, b, strict=True)]
                cells += [f"{statistics.median(b):.1f} {unit}",
                          f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–"
                          f"{max(ratios):.2f})"]
            table.add_row(*cells)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--nodes", type=int, default=3, help="node processes the model is cut over")
    parser.add_argument("--prompt-lengths", default="128,1024",
                        help="comma-separated prompt lengths in tokens")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of transformers then the swarm")
    parser.add_argument("--relayed", action="store_true",
                        help="also run the swarm with the client relaying activations")
    parser.add_argument("--node-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for the node processes (repeatable)")
    args = parser.parse_args()
    lengths = [int(x) for x in args.prompt_lengths.split(",")]
    path = _model(args)
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, args.vocab, (n,), generator=generator).tolist() for n in lengths]
    n = args.layers
    bounds = [round(i * n / args.nodes) for i in range(args.nodes + 1)]
    blocks = [f"{a}:{b}" for a, b in itertools.pairwise(bounds)]
    params = sum(math.prod(info.shape) for info in Checkpoint.open(path).tensors.values())
    console = Console(width=160)
    console.print(f"model: {path.name}, {params / 1e6:.0f}M parameters, fp32, "
                  f"{torch.get_num_threads()} threads here; nodes serve {', '.join(blocks)}; "
                  f"{args.new_tokens} new tokens")

    max_length = max(lengths) + args.new_tokens + 8
    checkpoint = Checkpoint.open(path)
    parts = ClientParts.load(checkpoint)
    hf: list[list[Run]] = []
    sides: dict[str, list[list[Run]]] = {"pushed": []}
    if args.relayed:
        sides["relayed"] = []
    with tempfile.TemporaryDirectory(prefix="darwin-bench-") as root, LocalSwarm(
            path, Path(root), LocalSwarmConfig(
                start_timeout=300, max_length=max_length, max_sessions=4,
                env=tuple(tuple(item.split("=", 1)) for item in args.node_env))) as swarm:
        swarm.start(blocks[:1], ["node0"])
        swarm.start(blocks[1:], [f"node{i}" for i in range(1, len(blocks))])
        heap.settle()  # as `darwin submit` does
        for round_ in range(args.rounds):
            hf.append(transformers_runs(path, prompts, args.new_tokens))
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))  # who goes first
            runs, route = trio.run(_swarm_runs, checkpoint, parts, swarm.bootstrap, prompts,
                                   args.new_tokens, order)
            for side, rounds in sides.items():
                rounds.append(runs[side])
    console.print("route: " + ", ".join(f"[{a}, {b}) on {p[:16]}…" for p, a, b in route))
    console.print(_table(lengths, hf, sides))
    same = all(h.tokens == s.tokens for rounds in sides.values()
               for hr, sr in zip(hf, rounds, strict=True) for h, s in zip(hr, sr, strict=True))
    console.print("tokens identical to transformers: " + ("yes" if same else "[red]NO[/red]"))


if __name__ == "__main__":
    main()
