"""BERT-style encoders (``BertLayer``), used to compute sentence embeddings.

Rules:
- Block i is ``{base}encoder.layer.{i}.*`` (base ``bert.`` for task heads, empty for
  ``BertModel``); the client holds ``{base}embeddings.*`` and mean-pools the last hidden state.
- Encoders keep no KV cache: every step is a whole sequence, with an optional (batch, seq)
  padding mask. Decoder and cross-attention variants are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .errors import InvalidInput, UnsupportedArchitecture
from .family import ClientModule, Family, StepInputs
from .masks import padding_mask

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from .kv_cache import SpanKVCache

__all__ = ["BertClient", "BertFamily"]


class BertFamily(Family):
    """Post-norm bidirectional encoders with learned absolute positions and token types."""

    name = "bert"
    model_types = ("bert",)
    uses_kv_cache = False
    base_prefixes = ("bert.", "")
    blocks_key = "encoder.layer"
    config_fields: ClassVar[tuple[str, ...]] = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "position_embedding_type",
    )

    def __init__(self, config: PretrainedConfig, base_prefix: str) -> None:
        super().__init__(config, base_prefix)
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            raise UnsupportedArchitecture(
                "bert as a decoder or with cross-attention is not supported"
            )
        kind = getattr(config, "position_embedding_type", "absolute")
        if kind not in (None, "absolute"):
            raise UnsupportedArchitecture(f"bert position_embedding_type {kind!r} is not supported")

    def make_block(self, index: int) -> nn.Module:
        from transformers.models.bert import modeling_bert

        layer_cls: Any = modeling_bert.BertLayer
        with torch.device("meta"):
            block: nn.Module = layer_cls(self.config, layer_idx=index)
        return block

    def prepare_step(
        self, hidden: torch.Tensor, past_length: int, attention_mask: torch.Tensor | None
    ) -> StepInputs:
        batch, seq = hidden.shape[:2]
        if attention_mask is not None and tuple(attention_mask.shape) != (batch, seq):
            raise InvalidInput(
                f"attention_mask has shape {list(attention_mask.shape)}, expected [{batch}, {seq}]"
            )
        positions = torch.arange(seq, device=hidden.device)[None]
        return StepInputs(0, positions, {None: padding_mask(attention_mask)})

    def run_block(
        self,
        block: nn.Module,
        index: int,
        hidden: torch.Tensor,
        step: StepInputs,
        cache: SpanKVCache | None,
    ) -> torch.Tensor:
        out: torch.Tensor = block(hidden, attention_mask=step.masks[None])
        return out

    def make_client(self) -> ClientModule:
        return BertClient(self.config)

    def client_tensor_names(self) -> dict[str, str]:
        local = (
            "word_embeddings.weight",
            "position_embeddings.weight",
            "token_type_embeddings.weight",
            "LayerNorm.weight",
            "LayerNorm.bias",
        )
        return {f"embeddings.{n}": f"{self.base_prefix}embeddings.{n}" for n in local}


class BertClient(ClientModule):
    """``BertEmbeddings`` (words + positions + token types, LayerNorm) on the client."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        from transformers.models.bert import modeling_bert

        embeddings_cls: Any = modeling_bert.BertEmbeddings
        self.max_positions = int(config.max_position_embeddings)
        with torch.device("meta"):
            self.embeddings: nn.Module = embeddings_cls(config)

    def after_load(self, device: torch.device | str) -> None:
        # Non-persistent buffers are not in the checkpoint; rebuild them as transformers does.
        position_ids = torch.arange(self.max_positions, device=device)[None]  # (1, max_pos)
        self.embeddings.register_buffer("position_ids", position_ids, persistent=False)
        token_types = torch.zeros_like(position_ids)  # (1, max_pos)
        self.embeddings.register_buffer("token_type_ids", token_types, persistent=False)

    def embed(
        self,
        input_ids: torch.Tensor,
        position_offset: int = 0,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        seq = input_ids.shape[1]
        if position_offset < 0 or position_offset + seq > self.max_positions:
            raise InvalidInput(
                f"bert positions [{position_offset}, {position_offset + seq}) exceed "
                f"max_position_embeddings={self.max_positions}"
            )
        positions = torch.arange(position_offset, position_offset + seq, device=input_ids.device)
        out: torch.Tensor = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=positions[None],  # (1, seq): the keyword every release has taken
        )
        return out  # (batch, seq, hidden)
