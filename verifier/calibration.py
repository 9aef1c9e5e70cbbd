"""Measuring the tolerance: how far honest recomputations stray, how far 1% cheats land.

``python -m darwin.verifier.calibration [--family F --layers N --hidden H ...]`` prints, per
dtype, the largest relative L2 error between what an honest node commits and what the
verifier recomputes, under each honest variation, and the smallest error of each cheat; the
numbers behind ``tolerance.TOLERANCES`` are in ``specs/verification.md``.

Honest variations (the node's run against the verifier's one-layer streaming recomputation
of every layer at every step):

* ``span``: the node runs the whole span resident, the verifier one layer at a time;
* ``span_cut``: the node's span starts in the middle of the model;
* ``threads``: the node runs with one thread, the verifier with the default count;
* ``merged_prefix``: the node ran the prompt in chunks and then decode steps, the verifier
  runs all steps before the checked one as a single prefill;
* ``batched``: the node ran the session as row 0 of a batch of 2, committing that row;
* ``rounded_ops``: the node computes every elementary operation (projection, norm,
  activation, attention) in a wider dtype (float32 for 16-bit dtypes, float64 for float32)
  and stores each result in the committed dtype, as GPU kernels that accumulate in float32
  do: a stand-in for other hardware when none is at hand;
* ``wide_internal`` (reported, not honest): the same without rounding between operations,
  KV cache kept wide: a node that computes in a wider dtype than it announces;
* ``device``: the node ran on another device (``--device cuda``); ``device_tf32`` the same
  with TF32 matrix products allowed (float32 only; not an honest float32 computation).

Cheats (every layer, every step; the smallest error is reported):

* ``weights_1pct``: the layer's weights multiplied by ``1 + 0.01 * N(0, 1)``; likewise
  ``weights_5pct`` with 5% (where the dtype cannot see 1%, the size it does see);
* ``output_noise_1pct``: the layer's output plus noise of 1% of its norm;
* ``bf16_compute`` / ``fp16_compute``: the layer computed in a 16-bit dtype (float32 only);
* ``skip_layer``: the layer's output is its input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from darwin.model import Checkpoint, ClientParts, SpanRunner, make_tiny

from .tolerance import TOLERANCES, dtype_name, relative_error

__all__ = ["Calibration", "CalibrationConfig", "calibrate", "main"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class CalibrationConfig:
    """What one calibration run measures."""

    prompt: int = 16  # tokens of the prompt
    chunks: int = 4  # chunks the prompt is sent in (for merged_prefix)
    decode: int = 6  # one-token decode steps after the prompt
    seed: int = 0
    device: str | None = None  # another device the node runs on, e.g. "cuda"
    layers: tuple[int, ...] | None = None  # layers to check; all by default


@dataclass
class Calibration:
    """Errors per variant: honest (the max matters) and cheats (the min matters)."""

    dtype: str
    honest: dict[str, list[float]]
    cheats: dict[str, list[float]]

    def max_honest(self, exclude: Sequence[str] = ("device_tf32", "wide_internal")) -> float:
        values = [e for name, errors in self.honest.items() if name not in exclude
                  for e in errors]
        return max(values, default=0.0)

    def min_cheat(self, exclude: Sequence[str] = ("weights_5pct",)) -> float:
        values = [e for name, errors in self.cheats.items() if name not in exclude
                  for e in errors]
        return min(values, default=math.inf)

    def summary(self) -> dict[str, object]:
        return {
            "dtype": self.dtype,
            "tolerance": TOLERANCES[self.dtype],
            "honest_max": {name: max(errors) for name, errors in self.honest.items() if errors},
            "cheat_min": {name: min(errors) for name, errors in self.cheats.items() if errors},
        }


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _tf32(allowed: bool) -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _step_sizes(config: CalibrationConfig) -> list[int]:
    """Prompt chunks then one-token decode steps."""
    base, extra = divmod(config.prompt, config.chunks)
    chunks = [base + (1 if i < extra else 0) for i in range(config.chunks)]
    return [c for c in chunks if c] + [1] * config.decode


def _embedded(checkpoint: Checkpoint, config: CalibrationConfig, rows: int) -> torch.Tensor:
    """Embeddings of random tokens, (rows, positions, hidden) float32."""
    parts = ClientParts.load(checkpoint)
    generator = torch.Generator().manual_seed(config.seed)
    vocab = int(checkpoint.config.vocab_size)
    ids = torch.randint(0, vocab, (rows, config.prompt + config.decode), generator=generator)
    embedded: torch.Tensor = parts.embed(ids)
    return embedded


def _node_run(runner: SpanRunner, hidden: torch.Tensor, sizes: list[int],
              device: str = "cpu") -> list[list[torch.Tensor]]:
    """Per step, the committed leaves on the CPU: every layer's input, then the output."""
    session = runner.new_session(sum(sizes))
    leaves, offset = [], 0
    for size in sizes:
        chunk = hidden[:, offset:offset + size].to(device, runner.dtype)
        out = runner.forward(session, chunk)
        leaves.append([t.to("cpu") for t in (*out.layer_inputs, out.hidden)])
        offset += size
    return leaves


def _round_outputs(dtype: torch.dtype) -> Callable[[nn.Module, object, object], object]:
    """A forward hook rounding a module's tensor output to ``dtype`` (keeping its dtype)."""
    def hook(module: nn.Module, args: object, output: object) -> object:
        if isinstance(output, torch.Tensor):
            return output.to(dtype).to(output.dtype)
        return output
    return hook


def _node_run_wide(checkpoint: Checkpoint, dtype: torch.dtype, hidden: torch.Tensor,
                   sizes: list[int], round_ops: bool) -> list[list[torch.Tensor]]:
    """``_node_run`` of the whole model by a node computing in a wider dtype than it commits.

    The weights are those of ``dtype`` (rounded), widened exactly; every committed tensor is
    rounded to ``dtype`` and the next layer consumes the rounded value. With ``round_ops``
    the output of every elementary module (projections, norms, activations) is rounded to
    ``dtype`` too, as kernels that compute in float32 and store in ``dtype`` do.
    """
    wide = torch.float64 if dtype == torch.float32 else torch.float32
    low = SpanRunner.load(checkpoint, 0, checkpoint.n_layers, dtype=dtype)
    for index in range(checkpoint.n_layers):
        block = low.blocks.get(index).to(wide)
        if round_ops:
            for module in block.modules():
                if not any(True for _ in module.children()):
                    module.register_forward_hook(_round_outputs(dtype))
    runner = SpanRunner(checkpoint, 0, checkpoint.n_layers, wide, low.blocks)
    layers = [runner.sub_span(i, i + 1) for i in range(checkpoint.n_layers)]
    sessions = [layer.new_session(sum(sizes)) for layer in layers]
    leaves, offset = [], 0
    for size in sizes:
        x = hidden[:, offset:offset + size].to(dtype)
        step = [x]
        for layer, session in zip(layers, sessions, strict=True):
            x = layer.forward(session, x.to(wide)).hidden.to(dtype)
            step.append(x)
        leaves.append(step)
        offset += size
    return leaves


def _recompute(runner: SpanRunner, inputs: list[torch.Tensor], merge: bool = False,
               ) -> list[torch.Tensor]:
    """The verifier's outputs of a one-layer runner over per-step inputs, at every step.

    With ``merge`` step j is recomputed from a fresh session fed steps 0..j-1 as one prefill.
    """
    if not merge:
        session = runner.new_session(sum(t.shape[1] for t in inputs))
        return [runner.forward(session, t).hidden for t in inputs]
    outputs = []
    for step in range(len(inputs)):
        session = runner.new_session(sum(t.shape[1] for t in inputs[: step + 1]))
        if step:
            runner.forward(session, torch.cat(inputs[:step], dim=1))
        outputs.append(runner.forward(session, inputs[step]).hidden)
    return outputs


class _Verifier:
    """One-layer streaming runners of one checkpoint and dtype, as the verifier loads them."""

    def __init__(self, checkpoint: Checkpoint, dtype: torch.dtype) -> None:
        self.checkpoint, self.dtype = checkpoint, dtype
        self._runners: dict[int, SpanRunner] = {}

    def runner(self, layer: int) -> SpanRunner:
        if layer not in self._runners:
            self._runners[layer] = SpanRunner.load(self.checkpoint, layer, layer + 1,
                                                   dtype=self.dtype, resident_blocks=1)
        return self._runners[layer]

    def errors(self, leaves: list[list[torch.Tensor]], span_start: int, layers: Sequence[int],
               merge: bool = False) -> list[float]:
        """Errors of the node's committed outputs against recomputation, per layer and step."""
        errors = []
        for layer in layers:
            index = layer - span_start
            if not 0 <= index < len(leaves[0]) - 1:
                continue
            inputs = [step[index] for step in leaves]
            recomputed = _recompute(self.runner(layer), inputs, merge)
            errors += [relative_error(step[index + 1], out)
                       for step, out in zip(leaves, recomputed, strict=True)]
        return errors


def _perturbed_runner(checkpoint: Checkpoint, layer: int, dtype: torch.dtype,
                      seed: int, scale: float) -> SpanRunner:
    runner = SpanRunner.load(checkpoint, layer, layer + 1, dtype=dtype)
    generator = torch.Generator().manual_seed(seed + layer)
    with torch.no_grad():
        for parameter in runner.blocks.get(layer).parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.mul_(1 + scale * noise.to(parameter.dtype))
    return runner


def _noised(tensor: torch.Tensor, generator: torch.Generator, scale: float) -> torch.Tensor:
    noise = torch.randn(tensor.shape, generator=generator)
    noise *= scale * float(tensor.float().norm()) / float(noise.norm())
    return (tensor.float() + noise).to(tensor.dtype)


def _honest(checkpoint: Checkpoint, dtype: torch.dtype, config: CalibrationConfig,
            hidden: torch.Tensor, verifier: _Verifier, layers: Sequence[int],
            ) -> dict[str, list[float]]:
    n = checkpoint.n_layers
    sizes = _step_sizes(config)
    row = hidden[:1]
    full = SpanRunner.load(checkpoint, 0, n, dtype=dtype)
    leaves = _node_run(full, row, sizes)
    honest = {"span": verifier.errors(leaves, 0, layers)}
    cut = n // 2
    cut_input = torch.cat([step[cut] for step in leaves], dim=1)  # (1, positions, hidden)
    cut_leaves = _node_run(SpanRunner.load(checkpoint, cut, n, dtype=dtype), cut_input, sizes)
    honest["span_cut"] = verifier.errors(cut_leaves, cut, layers)
    with _threads(1):
        one_thread = _node_run(full, row, sizes)
    honest["threads"] = verifier.errors(one_thread, 0, layers)
    honest["merged_prefix"] = verifier.errors(leaves, 0, layers, merge=True)
    batched = _node_run(full, hidden[:2], sizes)
    honest["batched"] = verifier.errors([[t[:1] for t in step] for step in batched], 0, layers)
    honest["rounded_ops"] = verifier.errors(
        _node_run_wide(checkpoint, dtype, row, sizes, round_ops=True), 0, layers)
    honest["wide_internal"] = verifier.errors(
        _node_run_wide(checkpoint, dtype, row, sizes, round_ops=False), 0, layers)
    if config.device is not None:
        on_device = SpanRunner.load(checkpoint, 0, n, dtype=dtype, device=config.device)
        with _tf32(False):
            honest["device"] = verifier.errors(_node_run(on_device, row, sizes, config.device),
                                               0, layers)
        if dtype == torch.float32:
            with _tf32(True):
                tf32 = _node_run(on_device, row, sizes, config.device)
            honest["device_tf32"] = verifier.errors(tf32, 0, layers)
    return honest


def _cheats(checkpoint: Checkpoint, dtype: torch.dtype, config: CalibrationConfig,
            hidden: torch.Tensor, verifier: _Verifier, layers: Sequence[int],
            ) -> dict[str, list[float]]:
    n = checkpoint.n_layers
    leaves = _node_run(SpanRunner.load(checkpoint, 0, n, dtype=dtype), hidden[:1],
                       _step_sizes(config))
    generator = torch.Generator().manual_seed(config.seed + 1)
    cheats: dict[str, list[float]] = {"weights_1pct": [], "weights_5pct": [],
                                      "output_noise_1pct": [], "skip_layer": []}
    if dtype == torch.float32:
        cheats["bf16_compute"], cheats["fp16_compute"] = [], []
    for layer in layers:
        inputs = [step[layer] for step in leaves]
        honest = _recompute(verifier.runner(layer), inputs)
        for name, scale in (("weights_1pct", 0.01), ("weights_5pct", 0.05)):
            bad = _recompute(_perturbed_runner(checkpoint, layer, dtype, config.seed, scale),
                             inputs)
            cheats[name] += [relative_error(b, h) for b, h in zip(bad, honest, strict=True)]
        cheats["output_noise_1pct"] += [relative_error(_noised(h, generator, 0.01), h)
                                        for h in honest]
        cheats["skip_layer"] += [relative_error(x, h) for x, h in zip(inputs, honest, strict=True)]
        for name, low in (("bf16_compute", torch.bfloat16), ("fp16_compute", torch.float16)):
            if name in cheats:
                runner = SpanRunner.load(checkpoint, layer, layer + 1, dtype=low)
                lowered = _recompute(runner, [t.to(low) for t in inputs])
                cheats[name] += [relative_error(b.float(), h)
                                 for b, h in zip(lowered, honest, strict=True)]
    return cheats


def calibrate(checkpoint: Checkpoint, dtype: str, config: CalibrationConfig | None = None,
              ) -> Calibration:
    """Measure honest and cheating errors of every checked layer at every step."""
    config = config if config is not None else CalibrationConfig()
    torch_dtype = DTYPES[dtype_name(dtype)]
    layers = config.layers if config.layers is not None else tuple(range(checkpoint.n_layers))
    hidden = _embedded(checkpoint, config, rows=2)
    verifier = _Verifier(checkpoint, torch_dtype)
    with torch.inference_mode():
        honest = _honest(checkpoint, torch_dtype, config, hidden, verifier, layers)
        cheats = _cheats(checkpoint, torch_dtype, config, hidden, verifier, layers)
    return Calibration(dtype_name(dtype), honest, cheats)


def _table(results: list[tuple[str, Calibration]]) -> str:
    lines = []
    for label, result in results:
        summary = result.summary()
        lines.append(f"{label} {result.dtype} (tolerance {TOLERANCES[result.dtype]:.0e})")
        for kind, values in (("honest max", summary["honest_max"]),
                             ("cheat min", summary["cheat_min"])):
            assert isinstance(values, dict)
            for name, value in values.items():
                lines.append(f"  {kind:10} {name:18} {value:.3e}")
        lines.append(f"  => max honest {result.max_honest():.3e}, min cheat "
                     f"{result.min_cheat():.3e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the calibration on generated models and print (or save) the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", action="append", help="tiny family (repeatable)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, action="append", help="hidden size (repeatable)")
    parser.add_argument("--dtype", action="append", choices=sorted(DTYPES))
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--decode", type=int, default=6)
    parser.add_argument("--device", default=None, help="also run the node on this device")
    parser.add_argument("--model", type=Path, help="calibrate on this checkpoint instead")
    parser.add_argument("--json", type=Path, help="write the summaries to this file")
    args = parser.parse_args(argv)
    config = CalibrationConfig(prompt=args.prompt, decode=args.decode, device=args.device)
    results: list[tuple[str, Calibration]] = []
    with tempfile.TemporaryDirectory() as scratch:
        models: list[tuple[str, Path]] = []
        if args.model is not None:
            models.append((args.model.name, args.model))
        for family in args.family or ([] if args.model else ["llama"]):
            for hidden in args.hidden or [64]:
                path = make_tiny(family, Path(scratch) / f"{family}-{hidden}",
                                 layers=args.layers, hidden=hidden)
                models.append((f"{family}-{args.layers}x{hidden}", path))
        for label, path in models:
            checkpoint = Checkpoint.open(path)
            for dtype in args.dtype or ["float32", "bfloat16", "float16"]:
                results.append((label, calibrate(checkpoint, dtype, config)))
                print(_table(results[-1:]), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(
            [{"model": label, **result.summary(), "max_honest": result.max_honest(),
              "min_cheat": result.min_cheat()} for label, result in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
