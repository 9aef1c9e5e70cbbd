"""py-libp2p 0.8.1 pubsub defects and defaults we change: the original behaviour, then ours.

As in ``test_libp2p_workarounds.py``: when py-libp2p is upgraded, a failing "original"
assertion here means the defect is gone and its workaround can be removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr
import pytest
import trio
from google.protobuf.message import DecodeError
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils import encode_varint_prefixed
from transport_support import seed

from darwin.net import libp2p_workarounds as fixes
from darwin.net.host import HostConfig, _new_libp2p_host, open_host
from darwin.net.pubsub import PubsubConfig, Subscription, _new_router, run_pubsub

LOCALHOST = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
TOPIC = "t"


def _raw_host(i: int):  # type: ignore[no-untyped-def]
    return _new_libp2p_host(create_new_key_pair(seed(i)), HostConfig())


def _crafted() -> rpc_pb2.RPC:
    """A message whose ``from`` is no identity multihash and whose ``key`` is no key."""
    msg = rpc_pb2.Message(data=b"x", topicIDs=[TOPIC], from_id=b"\x12\x20" + b"\x01" * 32,
                          seqno=b"\x00" * 8, signature=b"s" * 64, key=b"not a key")
    return rpc_pb2.RPC(publish=[msg])


@asynccontextmanager
async def _sender_and_victim(guarded: bool) -> AsyncIterator[tuple[Pubsub, Pubsub]]:
    """Two raw hosts running pubsub, subscribed to TOPIC and connected."""
    hosts = [_raw_host(1), _raw_host(2)]
    async with hosts[0].run(LOCALHOST), hosts[1].run(LOCALHOST):
        routers = [GossipSub([PROTOCOL_ID_V11], 6, 5, 12, heartbeat_interval=1) for _ in hosts]
        sender, victim = (Pubsub(h, r) for h, r in zip(hosts, routers, strict=True))
        if guarded:
            fixes.guard_pubsub_push(victim)
        try:
            async with background_trio_service(sender), background_trio_service(routers[0]), \
                    background_trio_service(victim), background_trio_service(routers[1]):
                await victim.subscribe(TOPIC)
                await sender.subscribe(TOPIC)
                await hosts[0].connect(info_from_p2p_addr(hosts[1].get_addrs()[0]))
                await sender.wait_for_peer(hosts[1].get_id())
                await victim.wait_for_peer(hosts[0].get_id())
                yield sender, victim
        finally:
            for pubsub in (sender, victim):
                fixes.stop_seen_cache_thread(pubsub)


async def _send_raw(sender: Pubsub, victim: Pubsub, rpc: rpc_pb2.RPC) -> None:
    stream = sender.peers[victim.my_id]
    await stream.write(encode_varint_prefixed(rpc.SerializeToString()))


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def test_one_crafted_message_stops_pubsub_unless_guarded() -> None:
    with trio.fail_after(20), pytest.raises(BaseException) as crash:
        async with _sender_and_victim(guarded=False) as (sender, victim):
            await _send_raw(sender, victim, _crafted())
            await victim.manager.wait_finished()  # the whole service stops...
    assert any(isinstance(leaf, DecodeError) for leaf in _leaves(crash.value))  # ...and raises

    with trio.fail_after(20):
        async with _sender_and_victim(guarded=True) as (sender, victim):
            subscription = victim.subscribed_topics_receive[TOPIC]
            await _send_raw(sender, victim, _crafted())
            await sender.publish(TOPIC, b"still here")
            assert (await subscription.get()).data == b"still here"
            assert victim.manager.is_running


async def test_pubsub_leaves_its_seen_cache_thread_running() -> None:
    host = _raw_host(3)
    async with host.run(LOCALHOST):
        router = GossipSub([PROTOCOL_ID_V11], 6, 5, 12)
        pubsub = Pubsub(host, router)
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
        assert pubsub.seen_messages._thread.is_alive()  # py-libp2p: still sweeping
        # (and its validation results outlive "seen": a replay in between skips validation)
        assert pubsub.validation_cache.ttl == 300 > pubsub.seen_messages.ttl == 120
        fixes.stop_seen_cache_thread(pubsub)
        assert not pubsub.seen_messages._thread.is_alive()

        async with run_pubsub(host, PubsubConfig()) as ours:
            thread = ours._pubsub.seen_messages._thread
            assert thread.is_alive()
            assert ours._pubsub.validation_cache.ttl == ours._pubsub.seen_messages.ttl
        assert not thread.is_alive()


def _message(n: int) -> rpc_pb2.Message:
    return rpc_pb2.Message(data=b"x", topicIDs=[TOPIC], from_id=b"f", seqno=n.to_bytes(8, "big"))


def test_default_spam_protection_stops_forwarding_past_10_per_second() -> None:
    peer = ID(b"forwarder")
    original = GossipSub([PROTOCOL_ID_V11], 6, 5, 12)
    forwarded = [original._check_spam_protection(peer, _message(n)) for n in range(12)]
    assert forwarded.count(False) >= 1  # the 11th within a second is not forwarded
    ours = _new_router(PubsubConfig())
    assert all(ours._check_spam_protection(peer, _message(n)) for n in range(12))


def test_defaults_we_change_heartbeat_px_and_validation_cache() -> None:
    original = GossipSub([PROTOCOL_ID_V11], 6, 5, 12)
    ours = _new_router(PubsubConfig())
    assert original.heartbeat_interval == 120 and ours.heartbeat_interval == 1
    peer = ID(b"pruner")
    assert original.scorer is not None and original.scorer.allow_px_from(peer, [TOPIC])
    assert ours.scorer is not None and not ours.scorer.allow_px_from(peer, [TOPIC])


async def test_a_burst_of_publishes_is_dropped_past_the_outbound_queue_unless_paced() -> None:
    burst = 100
    config = HostConfig(pubsub=PubsubConfig(), dial_timeout=3.0, dht_timeout=3.0)
    with trio.fail_after(30):
        async with open_host(seed(4), config) as sender, open_host(seed(5), config) as receiver:
            seen: list[bytes] = []
            all_in = trio.Event()

            def count(forwarder: str, origin: str, data: bytes) -> bool:
                if data.startswith(b"paced"):
                    seen.append(data)
                    if len(seen) == burst:
                        all_in.set()
                return True

            receiver.pubsub.set_validator(TOPIC, count)
            async with receiver.pubsub.subscribe(TOPIC) as inbox, \
                    sender.pubsub.subscribe(TOPIC) as echo, trio.open_nursery() as nursery:
                for subscription in (inbox, echo):
                    nursery.start_soon(_drain, subscription)
                await sender.connect(receiver.listen_addrs[0])
                await sender.pubsub.wait_for_mesh_peer(receiver.peer_id, TOPIC, 5.0)

                router = sender.pubsub._router
                drops: list[str] = []
                original_drop = router._handle_dropped_rpc
                router._handle_dropped_rpc = lambda peer, rpc, why: (  # type: ignore[method-assign]
                    drops.append(why), original_drop(peer, rpc, why))
                for n in range(burst):  # py-libp2p's publish: the writer never gets to run
                    await sender.pubsub._pubsub.publish(TOPIC, b"raw %d" % n)
                assert "queue_full" in drops

                drops.clear()
                for n in range(burst):  # ours: waits while the queue is over half full
                    await sender.pubsub.publish(TOPIC, b"paced %d" % n)
                await all_in.wait()
                assert drops == [] and sorted(seen) == sorted(b"paced %d" % n for n in range(burst))
                nursery.cancel_scope.cancel()


async def _drain(subscription: Subscription) -> None:
    async for _ in subscription:
        pass
