"""Finding who serves a model: DHT provider records per block, then each node's own info.

Rules (``docs/architecture.md``, "The inference path"; ``specs/forward-protocol.md``,
``/darwin/info/1``):
- For every block the client asks the DHT for the providers announced under
  ``block_provider_key(model_id.hex(), block)``; records are only hints (a node may be gone).
- Each distinct provider is asked for its `NodeInfo` once; the time from request to answer is
  its round trip for routing. A node that does not answer in time, answers with garbage, names
  another peer id, serves another model, or computes in another dtype than the session is
  dropped (logged), never fatal.
- Every lookup and every request has a deadline, and they all run concurrently, so discovery
  ends within ``find_timeout + info_timeout`` seconds however many nodes are dead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from darwin.client.route import Provider
from darwin.net.framing import TransportError
from darwin.net.host import Host, ProviderInfo
from darwin.net.protocols import INFO_PROTOCOL, block_provider_key
from darwin.net.request import RequestTimeout, request
from darwin.protocol import (
    DType,
    InfoRequest,
    ModelId,
    NodeInfo,
    RemoteProtocolError,
)

logger = logging.getLogger(__name__)

MAX_INFO_FRAME = 64 * 1024  # a NodeInfo is a few hundred bytes


@dataclass(frozen=True)
class DiscoveryConfig:
    """Deadlines and sizes of one discovery round."""

    find_timeout: float = 5.0  # seconds for the DHT lookups (all blocks, concurrently)
    info_timeout: float = 5.0  # seconds for dialing a node and getting its info
    max_providers_per_block: int = 20  # provider records taken per block


@dataclass(frozen=True)
class Offer:
    """A node that serves part of the model, as its info and our round trip describe it."""

    info: NodeInfo
    addrs: tuple[str, ...]  # where it announced it listens
    rtt_ms: float  # measured: info request sent -> info answer read

    @property
    def peer_id(self) -> str:
        return str(self.info.peer_id)

    def provider(self) -> Provider:
        """The node as the route finder sees it."""
        return Provider(self.peer_id, self.info.span_start, self.info.span_end,
                        rtt_ms=self.rtt_ms, load=self.info.load)


class InfoError(Exception):
    """A node did not give a usable info answer."""


async def ask_info(host: Host, peer_id: str, addrs: Iterable[str] = (),
                   timeout: float = 5.0) -> tuple[NodeInfo, float]:
    """Ask one node what it serves; returns its info and the round trip in milliseconds.

    Raises:
        InfoError: unreachable, too slow, a malformed answer, or an answer for another peer.
    """
    try:
        reply = await request(host, peer_id, INFO_PROTOCOL, InfoRequest().to_wire(),
                              NodeInfo.from_wire, max_request=MAX_INFO_FRAME,
                              max_answer=MAX_INFO_FRAME, timeout=timeout, dial_timeout=timeout,
                              addrs=addrs)
    except RequestTimeout:
        raise InfoError(f"{peer_id} gave no info within {timeout} s") from None
    except (TransportError, ValueError) as exc:
        raise InfoError(f"{peer_id} is unreachable: {exc}") from exc
    except RemoteProtocolError as exc:
        raise InfoError(f"{peer_id} sent a malformed info answer: {exc}") from exc
    info = reply.answer
    if info.peer_id != peer_id:
        raise InfoError(f"{peer_id} answered with the info of {info.peer_id}")
    return info, reply.round_trip * 1000.0


async def find_block_providers(host: Host, model_id: ModelId, n_layers: int,
                               config: DiscoveryConfig) -> dict[str, tuple[str, ...]]:
    """Every peer announced for any block of the model, with its addresses (all blocks at once)."""
    found: dict[str, tuple[str, ...]] = {}

    async def lookup(block: int) -> None:
        key = block_provider_key(model_id.hex(), block)
        providers: list[ProviderInfo] = await host.find_providers(
            key, config.find_timeout, count=config.max_providers_per_block)
        for provider in providers:
            if provider.addrs or provider.peer_id not in found:
                found[provider.peer_id] = provider.addrs

    with trio.move_on_after(config.find_timeout + 1.0):  # find_providers bounds itself too
        async with trio.open_nursery() as nursery:
            for block in range(n_layers):
                nursery.start_soon(lookup, block)
    found.pop(host.peer_id, None)
    return found


async def discover(host: Host, model_id: ModelId, n_layers: int, dtype: DType | None,
                   config: DiscoveryConfig = DiscoveryConfig(),
                   exclude: frozenset[str] = frozenset()) -> list[Offer]:
    """The usable offers for the model: found in the DHT, answered info, serve this model.

    Args:
        dtype: keep only nodes computing in this dtype (None keeps all).
        exclude: peers not to ask (already known to be bad).
    """
    announced = await find_block_providers(host, model_id, n_layers, config)
    offers: list[Offer] = []

    async def ask(peer_id: str, addrs: tuple[str, ...]) -> None:
        try:
            info, rtt_ms = await ask_info(host, peer_id, addrs, config.info_timeout)
        except InfoError as exc:
            logger.info("dropping provider %s: %s", peer_id, exc)
            return
        reason = _unusable(info, model_id, n_layers, dtype)
        if reason:
            logger.info("dropping provider %s: %s", peer_id, reason)
            return
        offers.append(Offer(info, addrs, rtt_ms))

    async with trio.open_nursery() as nursery:
        for peer_id, addrs in announced.items():
            if peer_id not in exclude:
                nursery.start_soon(ask, peer_id, addrs)
    offers.sort(key=lambda offer: (offer.info.span_start, offer.peer_id))
    logger.debug("discovered %d usable providers of %d announced", len(offers), len(announced))
    return offers


def _unusable(info: NodeInfo, model_id: ModelId, n_layers: int, dtype: DType | None) -> str:
    """Why an info answer makes its node useless to this session ("" if it is usable)."""
    if info.model_id != model_id:
        return f"serves another model ({info.model_id.hex()[:16]}…)"
    if info.span_end > n_layers:
        return f"claims blocks [{info.span_start}, {info.span_end}) of a {n_layers}-block model"
    if dtype is not None and info.dtype != dtype:
        return f"computes in {info.dtype.value}, the session in {dtype.value}"
    return ""


def choose_dtype(offers: Iterable[Offer]) -> DType | None:
    """The dtype most offers compute in (float32 wins ties); None when there is no offer."""
    counts: dict[DType, int] = {}
    for offer in offers:
        counts[offer.info.dtype] = counts.get(offer.info.dtype, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda d: (counts[d], d is DType.FLOAT32))
