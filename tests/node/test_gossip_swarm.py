"""Verdict gossip and catch-up between running nodes (``start_node``) and a client.

A verifier node signs a fail verdict about a peer and publishes its ledger record; a node
that joined through it gets the record into its own ledger through gossip (no direct
request), and a client that catches up from that node (as ``darwin submit`` does before
routing) gets it into its ledger, where the peer's standing drops.

Fraud proofs travel the same way (``specs/gossip.md`` §4.2): a verifier that catches a
cheating node publishes its fraud_proof notice; another node, which neither served the
client nor verified anything, fetches the proof over ``/darwin/proof/1``, re-runs the layer
and bans the cheater in its own ledger, and a client catching up from that node does the
same. A verifier that signs a false fail gets an ``accusation_refuted`` there instead, which
travels as a notice too: a client that catches up from that node refutes the liar as well.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import torch
import trio
from node_support import QUICK_HOST, node_config, open_forward, receive, send
from transport_support import seed

from darwin.client.client_ledger import catch_up_from, standing
from darwin.client.verification import ask_verifier
from darwin.gossip.fraud_notices import proof_checker
from darwin.gossip.sync_cursors import SyncCursors
from darwin.gossip.verdicts import verdict_topic
from darwin.ledger import AccusationRefuted, EntryKind, FraudStatus, Ledger, Verdict, reputation
from darwin.ledger import FraudProof as FraudProofEntry
from darwin.model import Checkpoint
from darwin.model.torch_wire import to_wire
from darwin.net.host import Host, HostConfig, open_host
from darwin.node.config import Cheat, VerifyConfig
from darwin.node.server import Node, start_node
from darwin.protocol import (
    CloseSession,
    Identity,
    OpenSession,
    Outcome,
    PeerId,
    Receipt,
    SessionId,
    StepRequest,
    StepResult,
    new_session_id,
)
from darwin.protocol.proof_request import proof_hash
from darwin.protocol.verify_request import VerifyRequest

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
            check = proof_checker(Checkpoint.open(tiny_llama), node.model_id)
            assert await catch_up_from(client, client_home, client_id, [node.peer_id],
                                       check) == 1
            # It remembers where to resume with that node: next time it asks for what is new.
            assert SyncCursors.load(client_home).get(node.peer_id) == node.ledger.head().seq
            after = standing(client_home, client_id)[CHEATER]
            assert after.verified_fails > before.verified_fails == 0
            assert after.trust < before.trust
            with Ledger.open(client_home / "ledger.sqlite", client_id) as ledger:
                assert ledger.contains(entry.record)

            # Again, from both nodes: nothing new (duplicates are skipped); a peer that
            # cannot be reached is skipped without an error.
            unreachable = Identity.from_seed(seed(77)).peer_id
            assert await catch_up_from(client, client_home, client_id,
                                       [unreachable, verifier.peer_id], check,
                                       timeout=15.0) == 0
            assert await catch_up_from(client, client_home, client_id,
                                       [node.peer_id, verifier.peer_id], check) == 0


async def receipts_of(client: Host, node: Node, steps: int = 2) -> tuple[Receipt, ...]:
    """Serve one session on ``node``'s whole span (a prefill, then decode steps); its receipts.

    Outputs are not compared with a reference: the node may be the cheater.
    """
    stream = await open_forward(client, node)
    session = SessionId(new_session_id())
    await send(stream, OpenSession(session, node.model_id, None, *node.span, 16))
    await receive(stream)
    receipts, position = [], 0
    generator = torch.Generator().manual_seed(3)
    for step in range(steps):
        hidden = torch.randn(1, 5 if step == 0 else 1, 64, generator=generator)
        await send(stream, StepRequest.create(session, step, position, to_wire(hidden)))
        result = await receive(stream)
        assert isinstance(result, StepResult), result
        receipts.append(result.receipt)
        position += hidden.shape[1]
    await send(stream, CloseSession(session))
    return tuple(receipts)


async def verify(client: Host, verifier: Node, node: Node) -> bytes:
    """Have ``verifier`` check ``node``; the hash of the fraud proof of its fail verdict."""
    receipts = await receipts_of(client, node)
    request = VerifyRequest(node.model_id, PeerId(node.peer_id), (node.listen_addr,), receipts)
    answer = await ask_verifier(client, verifier.peer_id, [verifier.listen_addr], request, 30)
    assert answer.verdict.body.outcome is Outcome.FAIL and answer.fraud_proof is not None
    return proof_hash(answer.fraud_proof)


def owned(node: Node, kind: EntryKind, subject: str) -> list[object]:
    assert node.ledger is not None
    return [e.record.body for e in node.ledger.entries(kinds=[kind])
            if e.record.subject == subject and e.record.signer == node.peer_id]


@pytest.mark.slow
async def test_a_node_that_only_hears_of_a_fraud_bans_the_cheater_and_refutes_a_false_fail(
        tiny_llama: Path, tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            async def start(name: str, **changes: object) -> Node:
                return await stack.enter_async_context(start_node(node_config(
                    tiny_llama, tmp_path / name, **changes)))

            verifier = await start("verifier", blocks=None, serve_blocks=False,
                                   verify=VerifyConfig(challenge_timeout=10.0))
            join = HostConfig(bootstrap=(verifier.listen_addr,), **QUICK_HOST)  # type: ignore[arg-type]
            liar = await start("liar", blocks=None, serve_blocks=False, host=join,
                               verify=VerifyConfig(challenge_timeout=10.0), cheat=Cheat.FALSE_FAIL)
            cheater = await start("cheater", blocks=(3, 4), cheat=Cheat.NOISE, host=join)
            honest = await start("honest", blocks=(3, 4), host=join)
            other = await start("other", blocks=(0, 1), host=join)
            assert other.fraud_notices is not None and other.ledger is not None
            topic = verdict_topic(bytes(other.model_id))
            for teller in (verifier, liar):
                await other.host.pubsub.wait_for_mesh_peer(teller.peer_id, topic, 10.0)
            joined = HostConfig(bootstrap=(verifier.listen_addr,), dht_server=False,
                                **QUICK_HOST)  # type: ignore[arg-type]
            client = await stack.enter_async_context(open_host(seed(42), joined))

            # The verifier catches the cheater, keeps the proof and states it in its ledger;
            # the other node hears of it and bans the cheater too.
            digest = await verify(client, verifier, cheater)
            assert owned(verifier, EntryKind.FRAUD_PROOF, cheater.peer_id) == [
                FraudProofEntry(FraudStatus.CONFIRMED, digest, verifier.peer_id)]
            assert (tmp_path / "verifier" / "fraud-proofs" / f"{digest.hex()}.proof").is_file()
            await other.fraud_notices.wait_until(lambda stats: stats["confirmed"] >= 1)
            assert owned(other, EntryKind.FRAUD_PROOF, cheater.peer_id) == [
                FraudProofEntry(FraudStatus.CONFIRMED, digest, verifier.peer_id)]
            now = time.time_ns() // 1_000_000
            assert reputation(other.ledger.entries(), now_ms=now)[PeerId(cheater.peer_id)].banned

            # A liar signs a fail against the honest node: refuted there, against the liar.
            digest = await verify(client, liar, honest)
            await other.fraud_notices.wait_until(lambda stats: stats["refuted"] >= 1)
            assert owned(other, EntryKind.ACCUSATION_REFUTED, honest.peer_id) == [
                AccusationRefuted(liar.peer_id, digest)]

            # A client catching up from the other node fetches the proofs from it and bans
            # too; the liar's fail reaches it as a verdict, and the other node's refutation
            # as a notice, so the client refutes it too.
            client_id = Identity.from_seed(seed(42))
            check = proof_checker(Checkpoint.open(tiny_llama), other.model_id)
            await catch_up_from(client, tmp_path / "client", client_id, [other.peer_id], check)
            assert standing(tmp_path / "client", client_id)[PeerId(cheater.peer_id)].banned
            with Ledger.open(tmp_path / "client" / "ledger.sqlite", client_id) as ledger:
                assert [e.record.body for e in ledger.entries(
                    kinds=[EntryKind.ACCUSATION_REFUTED])] == [
                    AccusationRefuted(liar.peer_id, digest)]

            # So does a node that joins later through the other node: it catches up at start.
            late = await start("late", blocks=(0, 1), host=HostConfig(
                bootstrap=(other.listen_addr,), **QUICK_HOST))  # type: ignore[arg-type]
            assert late.fraud_notices is not None and late.ledger is not None
            await late.fraud_notices.wait_until(
                lambda stats: stats["confirmed"] >= 1 and stats["refuted"] >= 1)
            verdicts = [e.record for e in other.ledger.entries(kinds=[EntryKind.VERDICT])]
            assert len(verdicts) == 2 and all(late.ledger.contains(v) for v in verdicts)
            assert owned(late, EntryKind.FRAUD_PROOF, cheater.peer_id)
            assert owned(late, EntryKind.ACCUSATION_REFUTED, honest.peer_id)
