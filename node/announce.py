"""The node's DHT records: announcing the blocks it serves, counting who serves each block.

Rules: a block of a model is announced under ``block_provider_key(model_id.hex(), block)``
(``specs/forward-protocol.md``); the host re-announces every key it provides before the
records expire, so announcing once at startup is enough. Lookups run concurrently and are
bounded by a timeout; a block whose lookup times out counts what had arrived by then.
"""

from __future__ import annotations

import logging

import trio

from darwin.net.host import Host
from darwin.net.protocols import block_provider_key
from darwin.protocol import ModelId

__all__ = ["announce_span", "provider_counts"]

logger = logging.getLogger(__name__)


async def announce_span(host: Host, model_id: ModelId, span: tuple[int, int]) -> None:
    """Announce every block of ``span``, all at once (each bounded by the host's DHT timeout)."""
    async with trio.open_nursery() as nursery:
        for block in range(*span):
            nursery.start_soon(host.provide, block_provider_key(model_id.hex(), block))
    logger.info("announced blocks [%d, %d) of model %s", *span, model_id.hex()[:16])


async def provider_counts(
    host: Host, model_id: ModelId, n_layers: int, timeout: float
) -> list[int]:
    """How many other peers announce each block of the model now."""
    counts = [0] * n_layers

    async def count(block: int) -> None:
        providers = await host.find_providers(block_provider_key(model_id.hex(), block), timeout)
        counts[block] = sum(1 for p in providers if p.peer_id != host.peer_id)

    async with trio.open_nursery() as nursery:
        for block in range(n_layers):
            nursery.start_soon(count, block)
    return counts
