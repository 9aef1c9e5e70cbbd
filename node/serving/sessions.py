"""The node-wide table of open forward sessions: how many, and how much KV-cache memory they hold.

Rules:
- A session reserves, when it opens, the largest KV cache it may grow to:
  ``2 · layers · max_length · kv_width · itemsize`` bytes per batch row (keys and values, every
  layer of its span, every position it may hold). Caches grow lazily, so this is a bound, never
  an under-estimate: admitted sessions cannot run the node out of memory together.
- The first step fixes the batch; the reservation then grows to that many rows, or the step is
  refused and nothing changes.
- Checking and reserving are one synchronous call (no ``await`` in between), so sessions opened
  concurrently can never overshoot the limits together.
- A reservation is released exactly once; releasing again is a no-op, so every exit path of a
  handler may release in ``finally``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from darwin.model import Family

__all__ = ["Busy", "Reservation", "SessionLimits", "SessionTable", "kv_bytes_per_row", "kv_width"]


class Busy(Exception):
    """Admitting a session (or growing one) would pass the node's session or memory budget."""


@dataclass(frozen=True)
class SessionLimits:
    """What the node admits at once."""

    max_sessions: int  # sessions open at once
    kv_budget_bytes: int  # bytes all sessions' KV caches may reserve together


def kv_width(config: Any) -> int:
    """Width of one layer's keys (= of its values) per position: ``kv_heads · head_dim``.

    Works from the transformers config of any supported family: grouped-query models name
    ``num_key_value_heads``; GPT-2 style configs map ``num_attention_heads`` and ``hidden_size``.
    """
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return kv_heads * head_dim


def kv_bytes_per_row(family: Family, layers: int, max_length: int, dtype: torch.dtype) -> int:
    """Most bytes one batch row of a session's KV cache can take; 0 for cacheless encoders."""
    if not family.uses_kv_cache:
        return 0
    return 2 * layers * max_length * kv_width(family.config) * dtype.itemsize


class Reservation:
    """One admitted session's share of the table; give it back with `release`."""

    def __init__(self, table: SessionTable, nbytes: int) -> None:
        self._table = table
        self.nbytes = nbytes
        self.released = False

    def resize(self, nbytes: int) -> None:
        """Change the bytes reserved (a session's batch became known).

        Raises:
            Busy: growing would pass the memory budget; the reservation is unchanged.
        """
        assert not self.released, "resize of a released reservation"
        self._table._resize(self, nbytes)

    def release(self) -> None:
        """Free the session's place and memory; later calls do nothing."""
        if not self.released:
            self.released = True
            self._table._release(self)


class SessionTable:
    """Counts open sessions and their reserved KV-cache bytes against `SessionLimits`."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self.active = 0
        self.reserved_bytes = 0

    @property
    def load(self) -> float:
        """Open sessions / max sessions, as `NodeInfo` reports it."""
        return self.active / self.limits.max_sessions

    def admit(self, nbytes: int) -> Reservation:
        """Reserve a place and ``nbytes`` of KV cache for a new session.

        Raises:
            Busy: the table is full or the memory budget cannot take ``nbytes`` more.
        """
        if self.active >= self.limits.max_sessions:
            raise Busy(f"all {self.limits.max_sessions} session slots are taken")
        self._check_budget(nbytes)
        self.active += 1
        self.reserved_bytes += nbytes
        return Reservation(self, nbytes)

    def _resize(self, reservation: Reservation, nbytes: int) -> None:
        self._check_budget(nbytes - reservation.nbytes)
        self.reserved_bytes += nbytes - reservation.nbytes
        reservation.nbytes = nbytes

    def _release(self, reservation: Reservation) -> None:
        self.active -= 1
        self.reserved_bytes -= reservation.nbytes
        assert self.active >= 0 and self.reserved_bytes >= 0

    def _check_budget(self, more: int) -> None:
        budget = self.limits.kv_budget_bytes
        if self.reserved_bytes + more > budget:
            free = max(0, budget - self.reserved_bytes)
            raise Busy(f"the KV cache needs {more} more bytes, {free} of {budget} are free")
