"""Llama-style decoders: Llama, Mistral and Qwen2, through transformers' own classes.

Rules:
- Block i is ``{base}layers.{i}.*``; the client holds ``{base}embed_tokens``, ``{base}norm`` and
  ``lm_head`` (absent when the config ties it to the embedding).
- Rotary position embeddings are computed once per step from absolute positions, with the
  family's own ``RotaryEmbedding`` (it has no weights, so every span builds its own).
- Sliding-window attention (Mistral's ``sliding_window``, Qwen2's ``layer_types``) is expressed
  in the per-layer mask; the cache keeps every key, which gives the same result.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .errors import UnsupportedArchitecture
from .family import ClientModule, Family, StepInputs
from .masks import causal_mask

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from .kv_cache import SpanKVCache

__all__ = ["LlamaClient", "LlamaFamily"]

# model_type -> (module, decoder layer class, rotary class, norm class)
_CLASSES: dict[str, tuple[str, str, str, str]] = {
    "llama": ("llama", "LlamaDecoderLayer", "LlamaRotaryEmbedding", "LlamaRMSNorm"),
    "mistral": ("mistral", "MistralDecoderLayer", "MistralRotaryEmbedding", "MistralRMSNorm"),
    "qwen2": ("qwen2", "Qwen2DecoderLayer", "Qwen2RotaryEmbedding", "Qwen2RMSNorm"),
}
_LAYER_TYPES = ("full_attention", "sliding_attention")


def _transformers_class(model_type: str, which: int) -> Any:
    module, *names = _CLASSES[model_type]
    mod = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    return getattr(mod, names[which - 1])


class LlamaFamily(Family):
    """Pre-norm decoders with RMSNorm, rotary positions and gated MLPs."""

    name = "llama"
    model_types = ("llama", "mistral", "qwen2")
    uses_kv_cache = True
    base_prefixes = ("model.", "")
    blocks_key = "layers"
    config_fields: ClassVar[tuple[str, ...]] = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_act",
        "rms_norm_eps",
        "rope_parameters",
        "max_position_embeddings",  # scaled RoPE variants depend on it
        "attention_bias",
        "mlp_bias",
        "sliding_window",
        "layer_types",
        "tie_word_embeddings",
    )

    def __init__(self, config: PretrainedConfig, base_prefix: str) -> None:
        super().__init__(config, base_prefix)
        self._windows = [self._window(i) for i in range(self.n_layers)]
        self._rotary = _transformers_class(config.model_type, 2)(config=config)
        self._rotary_lock = threading.Lock()  # dynamic RoPE variants mutate the module

    def _window(self, index: int) -> int | None:
        layer_types = getattr(self.config, "layer_types", None)
        window = getattr(self.config, "sliding_window", None)
        if layer_types is None:
            return window  # Mistral: one window for all layers (None = full attention)
        kind = layer_types[index]
        if kind not in _LAYER_TYPES:
            raise UnsupportedArchitecture(
                f"{self.config.model_type} layer {index} has attention type {kind!r}; "
                f"supported: {', '.join(_LAYER_TYPES)}"
            )
        return window if kind == "sliding_attention" else None

    def make_block(self, index: int) -> nn.Module:
        layer_cls = _transformers_class(self.config.model_type, 1)
        with torch.device("meta"):
            block: nn.Module = layer_cls(self.config, layer_idx=index)
        return block

    def prepare_step(
        self, hidden: torch.Tensor, past_length: int, attention_mask: torch.Tensor | None
    ) -> StepInputs:
        seq = hidden.shape[1]
        positions = torch.arange(past_length, past_length + seq, device=hidden.device)[None]
        masks = {w: causal_mask(past_length, seq, w, hidden.device) for w in set(self._windows)}
        with self._rotary_lock:
            self._rotary.to(hidden.device)
            cos, sin = self._rotary(hidden, positions)  # each (1, seq, head_dim)
        return StepInputs(past_length, positions, masks, (cos, sin))

    def run_block(
        self,
        block: nn.Module,
        index: int,
        hidden: torch.Tensor,
        step: StepInputs,
        cache: SpanKVCache | None,
    ) -> torch.Tensor:
        out: torch.Tensor = block(
            hidden,
            attention_mask=step.masks[self._windows[index]],
            position_ids=step.positions,
            cache=cache,
            use_cache=cache is not None,
            position_embeddings=step.position_embeddings,
        )
        return out

    def make_client(self) -> ClientModule:
        return LlamaClient(self.config)

    def client_tensor_names(self) -> dict[str, str]:
        names = {
            "embed_tokens.weight": f"{self.base_prefix}embed_tokens.weight",
            "norm.weight": f"{self.base_prefix}norm.weight",
        }
        if not self.tied_embeddings:
            names["lm_head.weight"] = "lm_head.weight"
        return names


class LlamaClient(ClientModule):
    """Token embedding, final RMSNorm and LM head."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        norm_cls = _transformers_class(config.model_type, 3)
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        with torch.device("meta"):
            self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
            self.norm = norm_cls(config.hidden_size, eps=config.rms_norm_eps)
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def after_load(self, device: torch.device | str) -> None:
        if self.tied:
            self.lm_head.weight = self.embed_tokens.weight

    def embed(
        self,
        input_ids: torch.Tensor,
        position_offset: int = 0,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out: torch.Tensor = self.embed_tokens(input_ids)  # (batch, seq, hidden)
        return out

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lm_head(self.norm(hidden))  # (batch, seq, vocab)
        return out
