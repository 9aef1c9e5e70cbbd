"""Verdict gossip and catch-up between running nodes (``start_node``) and a client.

A verifier node signs a fail verdict about a peer and publishes its ledger record; a node
that joined through it gets the record into its own ledger through gossip (no direct
request), and a client that catches up from that node (as ``darwin submit`` does before
routing) gets it into its ledger, where the peer's standing drops.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import trio
from node_support import QUICK_HOST, node_config
from transport_support import seed

from darwin.client.client_ledger import catch_up_from, standing
from darwin.ledger import EntryKind, Ledger, Verdict
from darwin.node.config import VerifyConfig
from darwin.node.gossip import verdict_topic
from darwin.node.host import HostConfig, open_host
from darwin.node.server import start_node
from darwin.protocol import Identity

CHEATER = Identity.from_seed(b"\x66" * 32).peer_id


async def test_a_fail_verdict_reaches_a_node_by_gossip_and_a_client_by_catch_up(
        tiny_llama: Path, tmp_path: Path) -> None:
    client_home = tmp_path / "client"
    client_id = Identity.from_seed(seed(42))
    with trio.fail_after(50):
        async with AsyncExitStack() as stack:
            verifier = await stack.enter_async_context(start_node(node_config(
                tiny_llama, tmp_path / "verifier", blocks=None, serve_blocks=False,
                verify=VerifyConfig())))
            node = await stack.enter_async_context(start_node(node_config(
                tiny_llama, tmp_path / "node",
                host=HostConfig(bootstrap=(verifier.listen_addr,), **QUICK_HOST))))  # type: ignore[arg-type]
            assert verifier.gossip is not None and node.gossip is not None
            assert node.ledger is not None
            topic = verdict_topic(bytes(node.model_id))
            await node.host.pubsub.wait_for_mesh_peer(verifier.peer_id, topic, 10.0)
            await verifier.host.pubsub.wait_for_mesh_peer(node.peer_id, topic, 10.0)

            # The client has seen the cheater serve, and the verifier serve long enough to be
            # off probation (a verdict weighs as much as its verifier is trusted).
            client_home.mkdir()
            with Ledger.open(client_home / "ledger.sqlite", client_id) as ledger:
                ledger.record_success(CHEATER)
                for _ in range(12):
                    ledger.record_success(verifier.peer_id)
            before = standing(client_home, client_id)[CHEATER]

            entry = await verifier.gossip.publish_own_verdict(
                CHEATER, Verdict("fail", {"step": 3, "layer": 1}))
            await node.gossip.wait_until(lambda stats: stats["appended"] >= 1)
            assert node.ledger.contains(entry.record)
            held = [e.record for e in node.ledger.entries(kinds=[EntryKind.VERDICT])]
            assert held == [entry.record]

            # A client that joined through the node catches up from it (and only it).
            joined = HostConfig(bootstrap=(node.listen_addr,), dht_server=False, **QUICK_HOST)  # type: ignore[arg-type]
            client = await stack.enter_async_context(open_host(client_id.seed, joined))
            assert await catch_up_from(client, client_home, client_id, [node.peer_id]) == 1
            after = standing(client_home, client_id)[CHEATER]
            assert after.verified_fails > before.verified_fails == 0
            assert after.trust < before.trust
            with Ledger.open(client_home / "ledger.sqlite", client_id) as ledger:
                assert ledger.contains(entry.record)

            # Again, from both nodes: nothing new (duplicates are skipped); a peer that
            # cannot be reached is skipped without an error.
            unreachable = Identity.from_seed(seed(77)).peer_id
            assert await catch_up_from(client, client_home, client_id,
                                       [unreachable, verifier.peer_id], timeout=15.0) == 0
            assert await catch_up_from(client, client_home, client_id,
                                       [node.peer_id, verifier.peer_id]) == 0
