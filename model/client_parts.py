"""The parts of a model that stay with the client: embeddings, final norm and head, pooling.

Rules: the client embeds token ids before the first span and turns the last span's output into
logits (decoders) or a sentence embedding (encoders); it never holds a block. Only the client
tensors are read from the checkpoint. The tokenizer is loaded from the same local directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import Checkpoint
from .errors import CheckpointError, InvalidInput
from .family import ClientModule
from .weights import load_client

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["ClientParts", "load_tokenizer", "mean_pool"]


class ClientParts:
    """Embeddings and head of one checkpoint, with the operations a client needs."""

    def __init__(self, checkpoint: Checkpoint, module: ClientModule, dtype: torch.dtype) -> None:
        self.checkpoint = checkpoint
        self.module = module
        self.dtype = dtype

    @classmethod
    def load(
        cls,
        checkpoint: Checkpoint,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> ClientParts:
        """Read the client-side tensors (and only those).

        Raises:
            CheckpointError: a client tensor is missing or mis-shaped.
        """
        return cls(checkpoint, load_client(checkpoint, dtype=dtype, device=device), dtype)

    def embed(
        self,
        input_ids: torch.Tensor,
        *,
        position_offset: int = 0,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token ids (batch, seq) -> the first block's input (batch, seq, hidden).

        `position_offset` is the session's position (families with learned positions need it
        for decode steps); `token_type_ids` is for BERT.

        Raises:
            InvalidInput: ids that are not a 2-D integer tensor or positions past the table.
        """
        if input_ids.ndim != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise InvalidInput(
                f"input_ids must be an integer (batch, seq) tensor, got {input_ids.dtype} "
                f"{list(input_ids.shape)}"
            )
        with torch.inference_mode():
            return self.module.embed(input_ids, position_offset, token_type_ids)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last block's output (batch, seq, hidden) -> logits (batch, seq, vocab).

        Raises:
            UnsupportedOperation: the family has no LM head (BERT).
        """
        with torch.inference_mode():
            return self.module.logits(hidden)

    def pool(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean over non-padding positions: (batch, seq, hidden) -> (batch, hidden)."""
        with torch.inference_mode():
            return mean_pool(hidden, attention_mask)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Sentence embedding as the masked mean of token states (sentence-transformers' default)."""
    if attention_mask is None:
        return hidden.mean(dim=1)  # (batch, hidden)
    weights = attention_mask.to(hidden.dtype)[:, :, None]  # (batch, seq, 1)
    total = (hidden * weights).sum(dim=1)  # (batch, hidden)
    return total / weights.sum(dim=1).clamp(min=1.0)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer, from its local directory only.

    Raises:
        CheckpointError: no tokenizer files, or transformers cannot read them.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
            str(path), local_files_only=True
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot load a tokenizer from {path}: {exc}") from exc
    return tokenizer
