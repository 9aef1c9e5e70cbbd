"""GossipSub on a Darwin host: topics, validators and messages in Darwin terms.

Rules of this module (normative text: ``specs/gossip.md``):

- One GossipSub router per host, started by ``open_host`` when ``HostConfig.pubsub`` is set,
  *before* the host joins the swarm, so every connection (bootstrap peers included) gets a
  pubsub stream. It speaks ``/meshsub/1.1.0`` (preferred) and ``/meshsub/1.0.0``. Not 1.2:
  its one addition, IDONTWANT, pays off for large messages only, and py-libp2p sends one to
  every mesh peer for *every* message, our own included, doubling the RPCs per message.
  Nor py-libp2p's drafts (1.3, 1.4, "2.0").
- Publishing applies back-pressure: py-libp2p drops an RPC when a peer's outbound queue
  (32 RPCs) is full, and its publish never lets the per-peer writers run, so a burst of our
  own messages would be lost past the 32nd. ``publish`` first waits (bounded) until every
  queue is at most half full.
- Every message is signed by its origin (libp2p strict signing), so a message's ``origin`` is
  an authenticated peer id: a Darwin node's key. Message ids are ``from ‖ seqno`` (libp2p's
  default), so the same bytes published twice are two messages; replays are the validator's
  business.
- A topic's validator runs before a message is delivered or forwarded: a message it refuses
  is neither. Validators are synchronous, take ``(forwarder, origin, data)`` and return
  whether to accept; one that raises refuses the message (the exception is logged), it never
  reaches py-libp2p (where it would stop the pubsub service and with it the host).
- No libp2p type crosses this module's boundary: peers are base58 peer-id strings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import OutBoundQueueSize
from libp2p.pubsub.score import ScoreParams
from libp2p.tools.anyio_service import background_trio_service

from darwin.net.libp2p_workarounds import guard_pubsub_push, stop_seen_cache_thread

__all__ = [
    "MESHSUB_PROTOCOLS",
    "GossipMessage",
    "HostPubsub",
    "PubsubConfig",
    "Subscription",
    "Validator",
    "run_pubsub",
]

logger = logging.getLogger(__name__)

MESHSUB_PROTOCOLS: tuple[str, ...] = (PROTOCOL_ID_V11, PROTOCOL_ID)
# A publish waits while some peer's outbound queue holds more RPCs than this...
_QUEUE_HIGH_WATER = OutBoundQueueSize // 2
# ...checking this often (seconds; py-libp2p has no "queue has room" event)...
_QUEUE_POLL = 0.002
# ...for at most this long; then it publishes anyway (a stalled peer loses messages, as
# libp2p intends, instead of stalling us).
_QUEUE_WAIT = 1.0
# Seconds an unsubscription may take when a subscription block exits.
_UNSUBSCRIBE_WAIT = 1.0

# (forwarder peer id, origin peer id, message data) -> accept?
Validator = Callable[[str, str, bytes], bool]


@dataclass(frozen=True)
class PubsubConfig:
    """The GossipSub router's parameters (go-libp2p's defaults unless said otherwise)."""

    # Mesh degree per topic: target D, lower bound D_lo, upper bound D_hi.
    degree: int = 6
    degree_low: int = 5
    degree_high: int = 12
    # Seconds between heartbeats (mesh upkeep, IHAVE gossip, cache shifts). py-libp2p's
    # default is 120 s, which leaves a broken mesh unrepaired for two minutes; go uses 1 s.
    heartbeat_interval: int = 1
    # Heartbeats a message id stays in the cache for IWANT, and is advertised in IHAVE.
    gossip_history: int = 5
    gossip_window: int = 3
    # Seconds a message id is remembered as seen (a copy arriving later is processed again).
    seen_ttl: int = 120
    # Largest inbound RPC frame (several messages plus control), in bytes; above it the
    # stream is reset. Darwin's messages are a few KiB (specs/gossip.md).
    max_rpc_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if not 0 < self.degree_low <= self.degree <= self.degree_high:
            raise ValueError("need 0 < degree_low <= degree <= degree_high")
        if self.heartbeat_interval < 1 or self.seen_ttl < 1 or self.max_rpc_bytes < 1024:
            raise ValueError("heartbeat_interval, seen_ttl >= 1 s and max_rpc_bytes >= 1 KiB")
        if not 0 < self.gossip_window <= self.gossip_history:
            raise ValueError("need 0 < gossip_window <= gossip_history")


@dataclass(frozen=True)
class GossipMessage:
    """A message delivered on a topic we subscribe to (it passed the topic's validator)."""

    origin: str  # the peer that published (and signed) it
    data: bytes


class Subscription:
    """The messages of one topic, in arrival order; iterate, or ``receive`` one."""

    def __init__(self, channel: trio.MemoryReceiveChannel[rpc_pb2.Message]) -> None:
        self._channel = channel

    async def receive(self) -> GossipMessage:
        """The next message; raises ``trio.EndOfChannel`` once unsubscribed."""
        msg = await self._channel.receive()
        return GossipMessage(ID(msg.from_id).to_base58(), bytes(msg.data))

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> GossipMessage:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class HostPubsub:
    """The host's GossipSub router; obtain it as ``Host.pubsub``."""

    def __init__(self, pubsub: Pubsub, router: GossipSub) -> None:
        self._pubsub = pubsub
        self._router = router
        self.peer_id: str = pubsub.my_id.to_base58()

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        """Join ``topic`` (announce it, graft mesh peers) until the block exits.

        At most one subscription per topic and host: the router keeps one queue per topic.

        Raises:
            ValueError: we already subscribe to ``topic``.
        """
        if topic in self._pubsub.topic_ids:
            raise ValueError(f"already subscribed to {topic!r}")
        api = await self._pubsub.subscribe(topic)
        try:
            yield Subscription(api.receive_channel)  # type: ignore[attr-defined]
        finally:
            # Shielded so that a cancelled block still tells peers; bounded so that a dying
            # connection cannot hold up the exit.
            with trio.CancelScope(shield=True), trio.move_on_after(_UNSUBSCRIBE_WAIT):
                await self._pubsub.unsubscribe(topic)

    async def publish(self, topic: str, data: bytes) -> None:
        """Sign ``data`` as a message of ours on ``topic`` and send it to the mesh.

        The topic's validator sees our own messages too, with ``forwarder == origin ==
        peer_id``; a message it refuses is not sent.
        """
        await self._wait_for_outbound_room()
        await self._pubsub.publish(topic, data)

    async def _wait_for_outbound_room(self) -> None:
        """Wait (bounded) until no peer's outbound queue is more than half full."""
        queues = self._pubsub.peer_queues
        with trio.move_on_after(_QUEUE_WAIT):
            while any(len(queue) > _QUEUE_HIGH_WATER for queue in queues.values()):
                await trio.sleep(_QUEUE_POLL)

    def set_validator(self, topic: str, validator: Validator) -> None:
        """Run ``validator`` on every message of ``topic`` before delivering or forwarding it."""

        def check(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                return bool(validator(forwarder.to_base58(), ID(msg.from_id).to_base58(),
                                      bytes(msg.data)))
            except Exception:
                logger.exception("validator of %s failed on a message from %s", topic, forwarder)
                return False

        self._pubsub.set_topic_validator(topic, check, False)

    def remove_validator(self, topic: str) -> None:
        """Stop validating ``topic`` (messages are then accepted as they come)."""
        self._pubsub.remove_topic_validator(topic)

    def topic_peers(self, topic: str) -> list[str]:
        """Peers that told us they subscribe to ``topic``."""
        return sorted(p.to_base58() for p in self._pubsub.peer_topics.get(topic, ()))

    def mesh_peers(self, topic: str) -> list[str]:
        """Peers in our mesh for ``topic`` (we forward its messages to them)."""
        return sorted(p.to_base58() for p in self._router.mesh.get(topic, ()))

    async def wait_for_mesh_peer(self, peer_id: str, topic: str, timeout: float) -> None:
        """Return once ``peer_id`` is in our mesh for ``topic``.

        Raises:
            trio.TooSlowError: it was not within ``timeout`` seconds.
        """
        await self._pubsub.wait_for_mesh(ID.from_base58(peer_id), topic, timeout=timeout)


def _new_router(config: PubsubConfig) -> GossipSub:
    return GossipSub(
        protocols=[TProtocol(p) for p in MESHSUB_PROTOCOLS],
        degree=config.degree,
        degree_low=config.degree_low,
        degree_high=config.degree_high,
        gossip_window=config.gossip_window,
        gossip_history=config.gossip_history,
        heartbeat_interval=config.heartbeat_interval,
        # py-libp2p's "spam protection" silently stops *forwarding* (and our own publishing)
        # past 10 messages per second per forwarder and topic, after local delivery, on the
        # wall clock; Darwin's validators rate-limit by origin instead (specs/gossip.md).
        spam_protection_enabled=False,
        # Peer exchange off: a PRUNE's PX list would make us dial up to 16 peers that the
        # pruning peer names (and signs records for). Discovery is the DHT's job.
        score_params=ScoreParams(accept_px_threshold=math.inf),
    )


@asynccontextmanager
async def run_pubsub(libp2p_host: IHost, config: PubsubConfig) -> AsyncIterator[HostPubsub]:
    """Run GossipSub on ``libp2p_host`` until the block exits (``open_host`` calls this)."""
    router = _new_router(config)
    # A message's validation result is cached by message id; py-libp2p keeps it 300 s, past
    # the 120 s seen-cache, so a copy replayed in between would be delivered and forwarded
    # again without running our validator. No longer than seen_ttl, it cannot outlive "seen".
    pubsub = Pubsub(libp2p_host, router, seen_ttl=config.seen_ttl,
                    validation_cache_ttl=config.seen_ttl,
                    max_inbound_rpc_size=config.max_rpc_bytes)
    guard_pubsub_push(pubsub)
    try:
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            yield HostPubsub(pubsub, router)
    finally:
        stop_seen_cache_thread(pubsub)
