"""Explicit attention masks, built from absolute positions.

Rules: a mask is boolean, ``True`` where a query may attend a key, shaped to broadcast over
heads: ``(1 or batch, 1, q_len, kv_len)``. ``None`` is returned only when every key is visible,
which for a causal mask can only happen with a single query; a multi-token step after a cache
exists (chunked prefill) therefore always gets an explicit mask.
"""

from __future__ import annotations

import torch

__all__ = ["causal_mask", "padding_mask"]


def causal_mask(
    past_length: int,
    seq_length: int,
    window: int | None,
    device: torch.device | str = "cpu",
) -> torch.Tensor | None:
    """Causal (optionally sliding-window) mask for `seq_length` new tokens after `past_length`.

    Query i sits at absolute position ``past_length + i``; it sees key j iff ``j <= pos`` and,
    with a window, ``pos - j < window`` (transformers' sliding-window convention).
    """
    total = past_length + seq_length
    query_pos = torch.arange(past_length, total, device=device)[:, None]  # (seq, 1)
    key_pos = torch.arange(total, device=device)[None, :]  # (1, past + seq)
    allowed = key_pos <= query_pos  # (seq, past + seq)
    if window is not None:
        allowed &= (query_pos - key_pos) < window
    if bool(allowed.all()):
        return None
    return allowed[None, None]  # (1, 1, seq, past + seq)


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Key-padding mask from a (batch, seq) 0/1 mask: (batch, 1, 1, seq), or None if no padding."""
    if attention_mask is None:
        return None
    keep = attention_mask.to(torch.bool)  # (batch, seq)
    if bool(keep.all()):
        return None
    return keep[:, None, None, :]  # (batch, 1, 1, seq)
