"""Where a span's block modules come from: all resident, or streamed with an LRU bound.

Rules:
- `ResidentBlocks` loads every block of the span once, up front.
- `StreamingBlocks` keeps at most K blocks in memory: a block is read just before it is used,
  into the memory of the least recently used one (same shapes), so K is a hard bound that does
  not depend on how the allocator returns freed memory.
  The whole span is validated against the headers at load time, so a bad checkpoint fails then,
  not in the middle of a session.
- Both hand out blocks inside `running()`; streaming serialises steps there (a memory-bound node
  gains nothing from running two steps that would evict each other's blocks).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import nn

from .checkpoint import Checkpoint
from .errors import ModelError
from .weights import check_block, load_block

__all__ = ["BlockSource", "ResidentBlocks", "StreamingBlocks"]

logger = logging.getLogger(__name__)


class BlockSource(Protocol):
    """Gives the span runner block modules by global index."""

    def running(self) -> contextlib.AbstractContextManager[None]:
        """Hold this for the duration of one step."""
        ...

    def get(self, index: int) -> nn.Module:
        """Block `index`, loaded."""
        ...

    @property
    def resident_count(self) -> int:
        """How many blocks are in memory now."""
        ...


class ResidentBlocks:
    """Every block of the span, loaded at construction."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        start: int,
        end: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self._blocks = {
            i: load_block(checkpoint, i, dtype=dtype, device=device) for i in range(start, end)
        }

    def running(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def get(self, index: int) -> nn.Module:
        return self._blocks[index]

    @property
    def resident_count(self) -> int:
        return len(self._blocks)


class StreamingBlocks:
    """At most `capacity` blocks resident; loads on demand, evicts the least recently used."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        start: int,
        end: int,
        dtype: torch.dtype,
        device: torch.device | str,
        capacity: int,
    ) -> None:
        if capacity < 1:
            raise ModelError(f"resident_blocks must be at least 1, got {capacity}")
        for index in range(start, end):
            check_block(checkpoint, index)
        self._checkpoint = checkpoint
        self._dtype = dtype
        self._device = device
        self.capacity = capacity
        self._cache: OrderedDict[int, nn.Module] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0  # blocks read from disk so far (for tests and metrics)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            yield

    def get(self, index: int) -> nn.Module:
        with self._lock:
            block = self._cache.get(index)
            if block is not None:
                self._cache.move_to_end(index)
                return block
            reuse = None
            while len(self._cache) >= self.capacity:
                evicted, old = self._cache.popitem(last=False)
                reuse = old.state_dict()  # its memory receives the next block
                del old
                logger.debug("streaming: evicted block %d for block %d", evicted, index)
            block = load_block(
                self._checkpoint, index, dtype=self._dtype, device=self._device, reuse=reuse
            )
            del reuse
            self.loads += 1
            self._cache[index] = block
            return block

    @property
    def resident_count(self) -> int:
        return len(self._cache)

    @property
    def resident_indices(self) -> list[int]:
        """Indices of resident blocks, least recently used first."""
        with self._lock:
            return list(self._cache)
