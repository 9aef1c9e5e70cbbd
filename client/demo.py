"""`darwin demo`: a local swarm of real node processes, one generation over it, its checked trace.

What it does: makes (once) a tiny random-initialised Llama-style model, starts a bootstrap node
and three nodes with overlapping spans as ``darwin-node join`` subprocesses on 127.0.0.1, runs
``darwin submit`` in this process (discovery through the DHT, routing, one signed receipt per
hop and step, streamed tokens), prints the route and the verified trace, and stops every
process it started, also on Ctrl-C or an error. ``--model`` runs a real local checkpoint instead.
The bootstrap node is also a verifier, so the client's verification policy checks the hops.

``--cheater`` runs another swarm: the verifier, honest nodes, and a node started with the
test-only ``--cheat noise`` on a 1-block span (1% noise on its layer's output). The client's
first generation has to go through it (nobody else serves that block yet): the verifier's
challenge hits the cheating layer, the verdict is ``fail``, the fraud proof is written and
``darwin verify-proof`` confirms it. Then an honest node joins over the same block and a second
generation routes around the cheater, which the client's ledger now bans.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from darwin.client.local_swarm import LocalSwarm, LocalSwarmConfig
from darwin.client.sampling import SamplingConfig
from darwin.client.submit import Submission, SubmitConfig, SubmitResult
from darwin.client.submit_view import run_in_console
from darwin.model import Checkpoint, make_tiny
from darwin.verifier import verify_proof_command

DEFAULT_DEMO_HOME = Path.home() / ".cache" / "darwin" / "demo"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs."""

    model: Path | None = None  # a checkpoint dir; None makes (once) a tiny Llama-style model
    prompt: str = "The network of many small machines"
    max_new_tokens: int = 16
    home: Path = DEFAULT_DEMO_HOME  # the tiny model and the nodes' homes (keys, caches)
    start_timeout: float = 120.0  # seconds for each node to start listening
    cheater: bool = False  # run the cheating-node demo instead (see the module docstring)


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
    if config.cheater:
        return _run_cheater_demo(config, path, n_layers, console)
    spans = demo_spans(n_layers)
    swarm_config = LocalSwarmConfig(start_timeout=config.start_timeout)
    with LocalSwarm(path, config.home / "nodes", swarm_config) as swarm:
        with console.status("starting the bootstrap node (also a verifier)…"):
            swarm.start([spans[0]], ["bootstrap"], ("--verify",))
        with console.status("starting three nodes with overlapping spans…"):
            swarm.start(spans[1:], ["node-a", "node-b", "node-c"])
        console.print(_swarm_table(swarm))
        console.print("[dim]each is: darwin-node join --model MODEL --blocks A:B "
                      f"--bootstrap {swarm.bootstrap[0]} --home DIR[/dim]")
        sampling = SamplingConfig(max_new_tokens=config.max_new_tokens)
        submission = Submission(SubmitConfig(model=path, prompt=config.prompt,
                                             bootstrap=swarm.bootstrap, sampling=sampling))
        run_in_console(submission, console)
    console.print("[dim]stopped the local swarm. Against a real swarm: darwin submit PROMPT "
                  "--model DIR --bootstrap MULTIADDR[/dim]")
    return 0


def _run_cheater_demo(config: DemoConfig, path: Path, n_layers: int, console: Console) -> int:
    """The ``--cheater`` demo: a cheating node is caught, proven, then routed around."""
    cheat, after = cheater_spans(n_layers)
    client_home = config.home / "cheater-client"
    shutil.rmtree(client_home, ignore_errors=True)  # a fresh client: every node on probation
    swarm_config = LocalSwarmConfig(start_timeout=config.start_timeout)
    with LocalSwarm(path, config.home / "cheater-nodes", swarm_config) as swarm:
        with console.status("starting the bootstrap node (also a verifier)…"):
            swarm.start([cheat["bootstrap"]], ["bootstrap"], ("--verify",))
        with console.status("starting an honest node and a cheating one…"):
            swarm.start([cheat["honest"]], ["honest"])
            cheater = swarm.start([cheat["cheater"]], ["cheater"], ("--cheat", "noise"))[0]
        console.print(_swarm_table(swarm))
        console.print(f"[red]cheater[/red] {cheater.peer_id[:12]}… adds 1% noise to the output "
                      f"of its layer {cheat['cheater'].split(':')[0]} (darwin-node join --cheat "
                      "noise: a test-only flag), and signs receipts for it as if honest")
        first = _generate(config, path, swarm, client_home, console)
        caught = [c for c in first.verification if c.peer_id == cheater.peer_id]
        for check in caught:
            if check.fraud_proof is not None:
                console.print(f"[bold]darwin verify-proof {check.fraud_proof} --model {path}[/]")
                verify_proof_command(check.fraud_proof, path)
        with console.status("an honest node joins over the cheater's block…"):
            swarm.start([after], ["honest-2"])
        console.print("[bold]a second generation[/bold] (the client's ledger now bans the "
                      "cheater, so routing leaves it out):")
        second = _generate(config, path, swarm, client_home, console)
        used = {hop.peer_id for hop in second.trace_hops()}
        console.print("[green]the cheater is not on the route[/green]" if cheater.peer_id not in
                      used else "[red]the cheater is still on the route[/red]")
    return 0 if caught and caught[0].outcome == "fail" else 1


def _generate(config: DemoConfig, path: Path, swarm: LocalSwarm, home: Path,
              console: Console) -> SubmitResult:
    sampling = SamplingConfig(max_new_tokens=config.max_new_tokens)
    submission = Submission(SubmitConfig(model=path, prompt=config.prompt, home=home,
                                         bootstrap=swarm.bootstrap, sampling=sampling))
    return run_in_console(submission, console)


def cheater_spans(n_layers: int) -> tuple[dict[str, str], str]:
    """``--blocks`` of the cheater demo: the bootstrap before block c, an honest node after it,
    the cheater on block c alone; then the honest node that joins over c (6 blocks: 0:2, 3:6,
    2:3, then 2:4)."""
    c = max(1, n_layers // 3)
    if n_layers < 3:
        raise ValueError("the cheater demo needs a model of at least 3 blocks")
    spans = {"bootstrap": f"0:{c}", "honest": f"{c + 1}:{n_layers}", "cheater": f"{c}:{c + 1}"}
    return spans, f"{c}:{min(n_layers, c + 2)}"


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
