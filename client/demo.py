"""`darwin demo`: a span chain over a tiny local model, with streamed tokens and signed receipts.

The demo model is random-initialised (its text is gibberish by design); pass ``--model`` a
local Hugging Face checkpoint directory to run a real one. Each hop has its own ed25519
identity, every step's receipts are checked as they arrive, and the whole trace is verified.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from darwin.client.detokenize import TextStream
from darwin.client.generation import generate
from darwin.client.sampling import SamplingConfig
from darwin.client.session import Hop, InferenceSession, SessionInfo
from darwin.model import Checkpoint, ClientParts, SpanRunner, load_tokenizer, make_tiny, model_id
from darwin.node.committed_span import CommitConfig, CommittedSpan
from darwin.node.local_hop import LocalHop
from darwin.protocol import Identity, ModelId, new_session_id

DEFAULT_DEMO_HOME = Path.home() / ".cache" / "darwin" / "demo"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs."""

    model: Path | None = None  # a checkpoint dir; None makes (once) a tiny Llama-style model
    prompt: str = "The network of many small machines"
    max_new_tokens: int = 16
    hops: int = 3  # how many spans the model is cut into
    home: Path = DEFAULT_DEMO_HOME  # where the tiny model is written


def run_demo(config: DemoConfig, console: Console | None = None) -> int:
    """Run the demo and print what it shows; returns the exit code."""
    console = console or Console()
    path = config.model or _tiny_model(config.home, console)
    checkpoint = Checkpoint.open(path)
    if config.model is None:
        console.print("[yellow]The demo model is random-initialised: expect gibberish. "
                      "Use --model DIR to run a real local checkpoint.[/yellow]")
    mid = ModelId(model_id(checkpoint))
    cuts = _cuts(checkpoint.n_layers, config.hops)
    spans = [CommittedSpan(SpanRunner.load(checkpoint, a, b), Identity.generate(),
                           CommitConfig(model_id=mid, retention_s=600)) for a, b in cuts]
    tokenizer = load_tokenizer(path)
    prompt_ids = tokenizer(config.prompt)["input_ids"]
    info = SessionInfo(model_id=mid, n_layers=checkpoint.n_layers, session_id=new_session_id())
    hops: list[Hop] = [LocalHop(s, info.session_id, len(prompt_ids) + config.max_new_tokens)
                       for s in spans]
    session = InferenceSession(hops, info)
    parts = ClientParts.load(checkpoint)

    console.print(f"[bold]model[/bold] {path} ({checkpoint.n_layers} blocks), id {mid.hex()[:16]}…")
    console.print(f"[bold]prompt[/bold] {config.prompt}")
    console.print("[bold]output[/bold] ", end="")
    sampling = SamplingConfig(max_new_tokens=config.max_new_tokens)
    stream = TextStream(tokenizer)
    trio.run(generate, parts, session, prompt_ids, sampling,
             lambda token: console.print(stream.push(token), end="", markup=False))
    console.print()
    trace = session.trace()
    trace.verify(model_id=mid, n_layers=checkpoint.n_layers, session_id=info.session_id)
    console.print(_route_table(spans))
    console.print(_receipt_table(session))
    console.print(f"[green]trace verified[/green]: {len(trace.receipts)} signed receipts, "
                  f"hash-linked across {len(spans)} hops and {session.next_step} steps")
    return 0


def _tiny_model(home: Path, console: Console) -> Path:
    path = home / "tiny-llama"
    if not (path / "model.safetensors").exists():
        console.print(f"making a tiny Llama-style model in {path}")
        make_tiny("llama", path, layers=6, hidden=128)
    return path


def _cuts(n_layers: int, hops: int) -> list[tuple[int, int]]:
    """Split ``[0, n_layers)`` into `hops` contiguous spans of near-equal size."""
    hops = max(1, min(hops, n_layers))
    bounds = [round(i * n_layers / hops) for i in range(hops + 1)]
    return list(itertools.pairwise(bounds))


def _route_table(spans: list[CommittedSpan]) -> Table:
    table = Table(title="route")
    for column in ("hop", "blocks", "node"):
        table.add_column(column)
    for index, span in enumerate(spans):
        table.add_row(str(index), f"[{span.runner.start}, {span.runner.end})",
                      str(span.identity.peer_id))
    return table


def _receipt_table(session: InferenceSession) -> Table:
    table = Table(title="receipts (first two steps)")
    for column in ("step", "blocks", "positions", "input", "output", "layer root", "signature"):
        table.add_column(column)
    for receipt in session.receipts:
        body = receipt.body
        if body.step > 1:
            break
        table.add_row(str(body.step), f"[{body.span_start}, {body.span_end})",
                      f"{body.position_start}+{body.position_count}", body.input_hash.hex()[:12],
                      body.output_hash.hex()[:12], body.layer_root.hex()[:12],
                      receipt.signature.hex()[:12])
    return table
