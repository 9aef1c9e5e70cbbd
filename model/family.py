"""What every model family tells the span runner, the client parts and the model id.

Rules:
- A family is bound to one config and one checkpoint layout (the *base prefix* under which the
  base model's tensors sit, e.g. ``"model."`` for ``LlamaForCausalLM``, ``""`` for ``LlamaModel``).
- Blocks are transformers' own layer classes, built on the meta device and filled with exactly
  their checkpoint tensors, so the maths is transformers' maths.
- Masks are explicit: a step gets one boolean mask per attention window, built from absolute
  positions, so chunked prefill after a cache exists is exact without relying on ``is_causal``.
- The canonical config is an allowlist of the fields that change the computation; it feeds the
  model id, so it must not depend on the machine or on fields like ``use_cache``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .errors import CheckpointError, UnsupportedOperation

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from .kv_cache import SpanKVCache

__all__ = ["ClientModule", "Family", "StepInputs"]

ATTENTION_IMPLEMENTATION = "sdpa"  # what transformers picks by default on CPU, so we match it


@dataclass(frozen=True)
class StepInputs:
    """What every block of a span needs for one step, besides its hidden states."""

    past_length: int  # tokens already in the session's cache
    positions: torch.Tensor  # (1, seq) absolute positions of the new tokens
    # attention window (None = full) -> bool mask (1 or batch, 1, seq, past + seq); None = all keys
    masks: dict[int | None, torch.Tensor | None] = field(default_factory=dict)
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None  # rotary (cos, sin)


class ClientModule(nn.Module, ABC):
    """The parts a client holds: embeddings before the first block, the head after the last."""

    @abstractmethod
    def embed(
        self,
        input_ids: torch.Tensor,
        position_offset: int = 0,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token ids (batch, seq) -> hidden states (batch, seq, hidden)."""

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Last block's output (batch, seq, hidden) -> logits (batch, seq, vocab)."""
        raise UnsupportedOperation(f"{type(self).__name__} has no language-model head")

    def after_load(self, device: torch.device | str) -> None:
        """Finish the module once its tensors are in: tie the head, build non-saved buffers."""


class Family(ABC):
    """One architecture: which tensors form block i, how to build, run and describe it."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    uses_kv_cache: ClassVar[bool]
    base_prefixes: ClassVar[tuple[str, ...]]  # candidates for the base model's prefix
    blocks_key: ClassVar[str]  # block i's tensors are under f"{base}{blocks_key}.{i}."
    ignored_block_suffixes: ClassVar[tuple[str, ...]] = ()  # legacy buffers saved by old code
    config_fields: ClassVar[tuple[str, ...]]  # the fields that define the computation

    def __init__(self, config: PretrainedConfig, base_prefix: str) -> None:
        self.config = config
        self.base_prefix = base_prefix
        config._attn_implementation = ATTENTION_IMPLEMENTATION

    @classmethod
    def find_base_prefix(cls, names: Collection[str]) -> str:
        """The base prefix under which this checkpoint stores block 0.

        Raises:
            CheckpointError: no candidate prefix holds a block 0.
        """
        for base in cls.base_prefixes:
            marker = f"{base}{cls.blocks_key}.0."
            if any(name.startswith(marker) for name in names):
                return base
        tried = ", ".join(f"{b}{cls.blocks_key}.0.*" for b in cls.base_prefixes)
        raise CheckpointError(f"no {cls.name} block 0 in the checkpoint (looked for {tried})")

    # -- shape of the model ----------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return int(self.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        """Width of the hidden states between blocks."""
        return int(self.config.hidden_size)

    def block_prefix(self, index: int) -> str:
        """Checkpoint name prefix of block `index`, e.g. ``"model.layers.3."``."""
        return f"{self.base_prefix}{self.blocks_key}.{index}."

    def is_ignored(self, local_name: str) -> bool:
        """Whether a block tensor is a legacy buffer that transformers itself skips."""
        return local_name.endswith(self.ignored_block_suffixes)

    # -- blocks ----------------------------------------------------------------------------

    @abstractmethod
    def make_block(self, index: int) -> nn.Module:
        """Block `index` as transformers builds it, with parameters on the meta device."""

    @abstractmethod
    def prepare_step(
        self,
        hidden: torch.Tensor,
        past_length: int,
        attention_mask: torch.Tensor | None,
    ) -> StepInputs:
        """Masks and position inputs shared by all blocks of one step."""

    @abstractmethod
    def run_block(
        self,
        block: nn.Module,
        index: int,
        hidden: torch.Tensor,
        step: StepInputs,
        cache: SpanKVCache | None,
    ) -> torch.Tensor:
        """One block forward: (batch, seq, hidden) -> (batch, seq, hidden)."""

    # -- client side -----------------------------------------------------------------------

    @abstractmethod
    def make_client(self) -> ClientModule:
        """The client-side module, parameters on the meta device."""

    @abstractmethod
    def client_tensor_names(self) -> dict[str, str]:
        """Client module state-dict name -> checkpoint tensor name (tied heads left out)."""

    @property
    def tied_embeddings(self) -> bool:
        """Whether the LM head reuses the input embedding matrix."""
        return bool(getattr(self.config, "tie_word_embeddings", False))

    # -- identity --------------------------------------------------------------------------

    def canonical_config(self) -> dict[str, Any]:
        """The computation-defining config fields, JSON-normalised, for the model id."""
        fields = {name: getattr(self.config, name, None) for name in self.config_fields}
        fields["family"] = self.name
        fields["model_type"] = self.config.model_type
        normalised: dict[str, Any] = json.loads(json.dumps(fields, sort_keys=True, default=list))
        return normalised
