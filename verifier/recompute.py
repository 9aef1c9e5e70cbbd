"""Recomputing one challenged layer from the node's revealed inputs.

Rules:

* Only the challenged layer is loaded: a one-block streaming runner
  (``SpanRunner.load(checkpoint, l, l + 1, resident_blocks=1)``), never the model. A small
  LRU keeps the last few loaded layers for repeated challenges.
* The layer runs in the dtype the node committed in (that of the revealed tensors), over a
  fresh session, feeding the revealed inputs of steps ``0 .. k`` in order with the steps'
  own position counts (prefill, chunks, decode steps exactly as they were), so the KV cache
  the layer sees at step ``k`` is the one the node's should have been. With
  ``merge_prefix`` the steps ``0 .. k-1`` run as one prefill instead (fewer, larger calls;
  the calibration shows the difference is far inside the tolerance).
* The output at step ``k`` is returned for comparison (``tolerance.compare``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from darwin.model import Checkpoint, ModelError, SpanRunner
from darwin.model.torch_wire import from_wire, torch_dtype
from darwin.protocol import RevealedLayer

from .errors import Unrecomputable

__all__ = ["LayerRecomputer", "RecomputeConfig"]


@dataclass(frozen=True)
class RecomputeConfig:
    """How the verifier recomputes layers."""

    # Loaded one-layer runners kept for later challenges (each holds one block's weights).
    cached_layers: int = 2
    # Run steps 0..k-1 as one prefill rather than step by step.
    merge_prefix: bool = False
    # Device to compute on.
    device: str = "cpu"


class LayerRecomputer:
    """Loads single layers of one checkpoint on demand and reruns them over revealed inputs."""

    def __init__(self, checkpoint: Checkpoint, config: RecomputeConfig | None = None) -> None:
        self.checkpoint = checkpoint
        self.config = config if config is not None else RecomputeConfig()
        self._runners: OrderedDict[tuple[int, torch.dtype], SpanRunner] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # layers loaded so far (for tests and metrics)

    def runner(self, layer: int, dtype: torch.dtype) -> SpanRunner:
        """The one-layer runner of ``layer`` in ``dtype``, loaded if not cached.

        Raises:
            Unrecomputable: ``layer`` is not a layer of this checkpoint.
        """
        key = (layer, dtype)
        with self._lock:
            runner = self._runners.get(key)
            if runner is not None:
                self._runners.move_to_end(key)
                return runner
            if not 0 <= layer < self.checkpoint.n_layers:
                raise Unrecomputable(f"layer {layer} is not in this "
                                     f"{self.checkpoint.n_layers}-layer model")
            runner = SpanRunner.load(self.checkpoint, layer, layer + 1, dtype=dtype,
                                     resident_blocks=1, device=self.config.device)
            self.loads += 1
            self._runners[key] = runner
            while len(self._runners) > max(self.config.cached_layers, 1):
                self._runners.popitem(last=False)
            return runner

    def recompute(self, revealed: RevealedLayer) -> torch.Tensor:
        """The layer's output at the challenged step, from the revealed inputs.

        Returns:
            (batch, count_k, hidden) on the CPU, in the revealed dtype.

        Raises:
            Unrecomputable: the layer is not in this model, or the revealed tensors do not
                fit it (width), so no honest run of this model produced them.
        """
        dtype = torch_dtype(revealed.dtype)
        width = revealed.inputs[0].shape[2]
        if width != self.checkpoint.hidden_size:
            raise Unrecomputable(f"revealed hidden width {width}, the model's is "
                                 f"{self.checkpoint.hidden_size}")
        runner = self.runner(revealed.layer, dtype)
        start, count = revealed.positions[-1]
        session = runner.new_session(start + count)
        device = self.config.device
        inputs = [from_wire(tensor).to(device) for tensor in revealed.inputs]
        if self.config.merge_prefix and len(inputs) > 2:
            inputs = [torch.cat(inputs[:-1], dim=1), inputs[-1]]  # (batch, positions, hidden)
        output = inputs[0]
        try:
            for hidden in inputs:
                output = runner.forward(session, hidden).hidden  # (batch, count_j, hidden)
        except ModelError as exc:
            raise Unrecomputable(f"the layer cannot run the revealed inputs: {exc}") from exc
        result: torch.Tensor = output.to("cpu")
        return result
