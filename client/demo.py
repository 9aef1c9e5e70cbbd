"""`darwin demo`: a local swarm of real node processes, one generation over it, its checked trace.

What it does: makes (once) a tiny random-initialised Llama-style model, starts a bootstrap node
and three nodes with overlapping spans as ``darwin-node join`` subprocesses on 127.0.0.1, runs
``darwin submit`` in this process (discovery through the DHT, routing, one signed receipt per
hop and step, streamed tokens), prints the route and the verified trace, and stops every
process it started, also on Ctrl-C or an error. ``--model`` runs a real local checkpoint instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from darwin.client.detokenize import TextStream
from darwin.client.local_swarm import LocalSwarm, LocalSwarmConfig
from darwin.client.sampling import SamplingConfig
from darwin.client.submit import Submission, SubmitConfig, route_table, trace_summary
from darwin.model import Checkpoint, make_tiny

DEFAULT_DEMO_HOME = Path.home() / ".cache" / "darwin" / "demo"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs."""

    model: Path | None = None  # a checkpoint dir; None makes (once) a tiny Llama-style model
    prompt: str = "The network of many small machines"
    max_new_tokens: int = 16
    home: Path = DEFAULT_DEMO_HOME  # the tiny model and the nodes' homes (keys, caches)
    start_timeout: float = 120.0  # seconds for each node to start listening


def run_demo(config: DemoConfig, console: Console | None = None) -> int:
    """Run the demo and print what it shows; returns the exit code.

    Raises:
        CheckpointError: `config.model` is not a usable checkpoint (before any node starts).
        LocalSwarmError: a node did not start.
        NoRoute, SessionFailed, TraceError: the generation failed.
    """
    console = console or Console(highlight=False)
    path = config.model or _tiny_model(config.home, console)
    n_layers = Checkpoint.open(path).n_layers
    if config.model is None:
        console.print("[yellow]The demo model is random-initialised: expect gibberish. "
                      "Use --model DIR to run a real local checkpoint.[/yellow]")
    spans = demo_spans(n_layers)
    swarm_config = LocalSwarmConfig(start_timeout=config.start_timeout)
    with LocalSwarm(path, config.home / "nodes", swarm_config) as swarm:
        with console.status("starting the bootstrap node…"):
            swarm.start([spans[0]], ["bootstrap"])
        with console.status("starting three nodes with overlapping spans…"):
            swarm.start(spans[1:], ["node-a", "node-b", "node-c"])
        console.print(_swarm_table(swarm))
        console.print("[dim]each is: darwin-node join --model MODEL --blocks A:B "
                      f"--bootstrap {swarm.bootstrap[0]} --home DIR[/dim]")
        sampling = SamplingConfig(max_new_tokens=config.max_new_tokens)
        submission = Submission(SubmitConfig(model=path, prompt=config.prompt,
                                             bootstrap=swarm.bootstrap, sampling=sampling))
        console.print(f"[bold]model[/bold] {path} ({n_layers} blocks), "
                      f"id {submission.model_id.hex()[:16]}…")
        console.print(f"[bold]prompt[/bold] {config.prompt}")
        console.print("[bold]output[/bold] ", end="")
        stream = TextStream(submission.tokenizer)
        result = trio.run(submission.run,
                          lambda token: console.print(stream.push(token), end="", markup=False))
        console.print()
        console.print(route_table(result))
        console.print(trace_summary(result))
    console.print("[dim]stopped the local swarm. Against a real swarm: darwin submit PROMPT "
                  "--model DIR --bootstrap MULTIADDR[/dim]")
    return 0


def demo_spans(n_layers: int) -> list[str]:
    """``--blocks`` of the bootstrap node and three overlapping nodes (6 blocks: 0:2, 0:3, 2:5,
    3:6), so the route has to cut and chain spans."""
    def span(start: float, end: float) -> str:
        low = min(int(start), n_layers - 1)
        return f"{low}:{max(low + 1, min(math.ceil(end), n_layers))}"

    n = n_layers
    return [span(0, n / 3), span(0, n / 2), span(n / 3, 5 * n / 6), span(n / 2, n)]


def _tiny_model(home: Path, console: Console) -> Path:
    path = home / "tiny-llama"
    if not (path / "model.safetensors").exists():
        console.print(f"making a tiny Llama-style model in {path}")
        make_tiny("llama", path, layers=6, hidden=128)
    return path


def _swarm_table(swarm: LocalSwarm) -> Table:
    table = Table(title="local swarm (one process each)")
    for column in ("node", "blocks", "pid", "address"):
        table.add_column(column)
    for node in swarm.nodes:
        start, end = node.blocks.split(":")
        table.add_row(node.name, f"[{start}, {end})", str(node.process.pid), node.address)
    return table
