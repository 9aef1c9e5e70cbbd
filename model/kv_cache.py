"""The keys and values one inference session keeps for the layers of one span.

Rules:
- Duck-types the one method transformers' attention layers call, ``update(k, v, layer_idx)``,
  so the layers stay transformers' own; layers are keyed by their *global* index.
- Writes go at the session position set by `begin_step`, not at "the end": a step that failed
  half-way is simply overwritten by its retry, and the cache never drifts from the position.
- Storage grows by doubling up to the session's ``max_length``, so memory follows use.
"""

from __future__ import annotations

import torch

__all__ = ["SpanKVCache"]

_MIN_CAPACITY = 64


class SpanKVCache:
    """Per-layer key/value buffers of shape (batch, kv_heads, capacity, head_dim)."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._keys: dict[int, torch.Tensor] = {}
        self._values: dict[int, torch.Tensor] = {}
        self._position = 0

    def begin_step(self, position: int) -> None:
        """Set where the next `update` of every layer writes (the session's past length)."""
        self._position = position

    def update(
        self,
        key_states: torch.Tensor,  # (batch, kv_heads, seq, head_dim)
        value_states: torch.Tensor,  # (batch, kv_heads, seq, head_dim)
        layer_idx: int,
        *args: object,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values; return all keys/values up to and including them."""
        end = self._position + key_states.shape[2]
        keys = self._reserve(self._keys, layer_idx, key_states, end)
        values = self._reserve(self._values, layer_idx, value_states, end)
        keys[:, :, self._position : end] = key_states
        values[:, :, self._position : end] = value_states
        return keys[:, :, :end], values[:, :, :end]  # (batch, kv_heads, past + seq, head_dim)

    def _reserve(
        self, store: dict[int, torch.Tensor], layer_idx: int, like: torch.Tensor, end: int
    ) -> torch.Tensor:
        buffer = store.get(layer_idx)
        if buffer is not None and buffer.shape[2] >= end:
            return buffer
        old = 0 if buffer is None else buffer.shape[2]
        capacity = min(self.max_length, max(_MIN_CAPACITY, end, 2 * old))
        batch, heads, _, head_dim = like.shape
        grown = like.new_zeros((batch, heads, capacity, head_dim))
        if buffer is not None:
            grown[:, :, : self._position] = buffer[:, :, : self._position]
        store[layer_idx] = grown
        return grown

    def nbytes(self) -> int:
        """Bytes held by the buffers (for admission control and tests)."""
        tensors = [*self._keys.values(), *self._values.values()]
        return sum(t.numel() * t.element_size() for t in tensors)
