"""GPT-2: pre-norm decoder blocks (``GPT2Block``) with learned absolute positions.

Rules:
- Block i is ``{base}h.{i}.*`` (base ``transformer.`` for ``GPT2LMHeadModel``, empty for
  ``GPT2Model``); legacy ``attn.bias``/``attn.masked_bias`` buffers are skipped, as transformers
  does.
- Positions live on the client: ``embed`` adds ``wpe`` at ``position_offset + arange(seq)``, so
  a decode step must pass the session's position. Blocks get the causal mask and the cache.
- Cross-attention variants are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .errors import InvalidInput, UnsupportedArchitecture
from .family import ClientModule, Family, StepInputs
from .masks import causal_mask

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from .kv_cache import SpanKVCache

__all__ = ["GPT2Client", "GPT2Family"]


class GPT2Family(Family):
    """OpenAI GPT-2 and checkpoints with its layout."""

    name = "gpt2"
    model_types = ("gpt2",)
    uses_kv_cache = True
    base_prefixes = ("transformer.", "")
    blocks_key = "h"
    ignored_block_suffixes = (
        "attn.bias",
        "attn.masked_bias",
        "crossattention.bias",
        "crossattention.masked_bias",
    )
    config_fields: ClassVar[tuple[str, ...]] = (
        "vocab_size",
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "n_inner",
        "activation_function",
        "layer_norm_epsilon",
        "scale_attn_weights",
        "scale_attn_by_inverse_layer_idx",
        "tie_word_embeddings",
    )

    def __init__(self, config: PretrainedConfig, base_prefix: str) -> None:
        super().__init__(config, base_prefix)
        if getattr(config, "add_cross_attention", False):
            raise UnsupportedArchitecture("gpt2 with add_cross_attention=True is not supported")

    def make_block(self, index: int) -> nn.Module:
        from transformers.models.gpt2 import modeling_gpt2

        block_cls: Any = modeling_gpt2.GPT2Block
        with torch.device("meta"):
            block: nn.Module = block_cls(self.config, layer_idx=index)
        return block

    def prepare_step(
        self, hidden: torch.Tensor, past_length: int, attention_mask: torch.Tensor | None
    ) -> StepInputs:
        seq = hidden.shape[1]
        positions = torch.arange(past_length, past_length + seq, device=hidden.device)[None]
        masks: dict[int | None, torch.Tensor | None] = {
            None: causal_mask(past_length, seq, None, hidden.device)
        }
        return StepInputs(past_length, positions, masks)

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
            cache=cache,
            attention_mask=step.masks[None],
            use_cache=cache is not None,
        )
        return out

    def make_client(self) -> ClientModule:
        return GPT2Client(self.config)

    def client_tensor_names(self) -> dict[str, str]:
        base = self.base_prefix
        names = {
            "wte.weight": f"{base}wte.weight",
            "wpe.weight": f"{base}wpe.weight",
            "ln_f.weight": f"{base}ln_f.weight",
            "ln_f.bias": f"{base}ln_f.bias",
        }
        if not self.tied_embeddings:
            names["lm_head.weight"] = "lm_head.weight"
        return names


class GPT2Client(ClientModule):
    """Token and position embeddings, final LayerNorm and LM head."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.tied = bool(getattr(config, "tie_word_embeddings", True))
        self.n_positions = int(config.n_positions)
        with torch.device("meta"):
            self.wte = nn.Embedding(config.vocab_size, config.n_embd)
            self.wpe = nn.Embedding(config.n_positions, config.n_embd)
            self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def after_load(self, device: torch.device | str) -> None:
        if self.tied:
            self.lm_head.weight = self.wte.weight

    def embed(
        self,
        input_ids: torch.Tensor,
        position_offset: int = 0,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        seq = input_ids.shape[1]
        if position_offset < 0 or position_offset + seq > self.n_positions:
            raise InvalidInput(
                f"gpt2 positions [{position_offset}, {position_offset + seq}) exceed "
                f"n_positions={self.n_positions}"
            )
        positions = torch.arange(position_offset, position_offset + seq, device=input_ids.device)
        hidden: torch.Tensor = (
            self.wte(input_ids) + self.wpe(positions)[None]
        )  # (batch, seq, hidden)
        if token_type_ids is not None:
            hidden = hidden + self.wte(token_type_ids)  # transformers reuses wte for types
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lm_head(self.ln_f(hidden))  # (batch, seq, vocab)
        return out
