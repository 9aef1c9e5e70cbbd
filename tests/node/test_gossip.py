"""Verdict gossip between real hosts on 127.0.0.1, each with its own ledger.

A, B and C form a line (A - B - C): whatever reaches C went through B's validator and mesh.
The adversarial test adds M, connected to B only, which publishes raw bytes on the topic
with no validator of its own. Every wait is on a gossip service's stats, bounded.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from transport_support import seed

from darwin.gossip.policy import GossipConfig
from darwin.gossip.verdicts import VerdictGossip, open_verdict_gossip, verdict_topic
from darwin.ledger import (
    AccusationRefuted,
    EntryKind,
    FraudProof,
    FraudStatus,
    Ledger,
    LedgerConfig,
    Record,
    Success,
    Verdict,
)
from darwin.net.host import Host, HostConfig, open_host
from darwin.net.pubsub import PubsubConfig
from darwin.protocol import Identity

MODEL = b"\x42" * 32
TOPIC = verdict_topic(MODEL)
SUBJECT = Identity.from_seed(b"\x99" * 32).peer_id
CONFIG = HostConfig(pubsub=PubsubConfig(), dial_timeout=3.0, dht_timeout=3.0)
T0 = 1_700_000_000_000


@dataclass
class Peer:
    host: Host
    ledger: Ledger
    gossip: VerdictGossip | None = None

    @property
    def identity(self) -> Identity:
        return self.ledger.identity


@asynccontextmanager
async def line(tmp_path: Path, n: int, gossip: dict[int, GossipConfig] | None = None,
               notices: list[tuple[Record, str]] | None = None) -> AsyncIterator[list[Peer]]:
    """``n`` hosts, host i connected to host i-1, each gossiping with its own ledger."""
    async with AsyncExitStack() as stack:
        peers: list[Peer] = []
        for i in range(n):
            host = await stack.enter_async_context(open_host(seed(i + 1), CONFIG))
            ledger = stack.enter_context(Ledger.open(
                tmp_path / f"ledger{i}.sqlite", Identity.from_seed(seed(i + 1)),
                LedgerConfig(checkpoint_every=0)))
            if peers:
                await host.connect(peers[-1].host.listen_addrs[0])
            peers.append(Peer(host, ledger))

        async def notice(record: Record, origin: str) -> None:
            assert notices is not None
            notices.append((record, origin))

        for i, peer in enumerate(peers):
            peer.gossip = await stack.enter_async_context(open_verdict_gossip(
                peer.host, peer.ledger, MODEL, (gossip or {}).get(i),
                on_fraud_notice=notice if notices is not None else None))
        for left, right in itertools.pairwise(peers):
            await left.host.pubsub.wait_for_mesh_peer(right.host.peer_id, TOPIC, 5.0)
            await right.host.pubsub.wait_for_mesh_peer(left.host.peer_id, TOPIC, 5.0)
        yield peers


def gossip(peer: Peer) -> VerdictGossip:
    assert peer.gossip is not None
    return peer.gossip


def verdicts(ledger: Ledger) -> list[Record]:
    return [entry.record for entry in ledger.entries(kinds=[EntryKind.VERDICT])]


def signed_verdict(identity: Identity, step: int) -> Record:
    return Record.sign(identity, EntryKind.VERDICT, SUBJECT,
                       Verdict("pass", {"step": step}), time_ms=T0 + step)  # type: ignore[arg-type]


async def test_a_verdict_from_a_reaches_cs_ledger_through_b(tmp_path: Path) -> None:
    notices: list[tuple[Record, str]] = []
    with trio.fail_after(30):
        async with line(tmp_path, 3, notices=notices) as (a, b, c):
            entry = await gossip(a).publish_own_verdict(SUBJECT, Verdict("fail", {"step": 7}))
            await gossip(c).wait_until(lambda s: s["appended"] == 1)
            await gossip(b).wait_until(lambda s: s["appended"] == 1)  # B forwards, then appends
            assert verdicts(c.ledger) == [entry.record] == verdicts(b.ledger)
            assert a.host.peer_id not in c.host.connected_peers()  # it came through B

            # Fraud-proof notices (a fraud_proof, an accusation_refuted) reach C's hook but
            # never C's ledger.
            proof = FraudProof(FraudStatus.CONFIRMED, b"\x07" * 32, a.host.peer_id)
            refuted = AccusationRefuted(b.host.peer_id, b"\x08" * 32)
            own = [a.ledger.append(EntryKind.FRAUD_PROOF, SUBJECT, proof).record,
                   a.ledger.append(EntryKind.ACCUSATION_REFUTED, SUBJECT, refuted).record]
            for record in own:
                await gossip(a).publish(record)
            await gossip(c).wait_until(lambda s: s["notices"] == 2)
            assert all((record, a.host.peer_id) in notices for record in own)
            assert not any(c.ledger.contains(record) for record in own)

            # Drop counters stayed at zero everywhere: honest traffic is never refused.
            for peer in (a, b, c):
                stats = gossip(peer).stats
                assert sum(stats[k] for k in ("forged", "oversized", "malformed", "duplicate",
                                              "rate_limited", "wrong_kind")) == 0, stats


async def test_publish_refuses_what_peers_would_drop(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with line(tmp_path, 1) as (a,):
            good = signed_verdict(a.identity, 1)
            with pytest.raises(ValueError):
                await gossip(a).publish(Record.sign(a.identity, EntryKind.SUCCESS, SUBJECT,
                                                    Success(), time_ms=T0))
            with pytest.raises(Exception, match="signature"):
                await gossip(a).publish(dataclasses.replace(good, time_ms=good.time_ms + 1))


async def test_hostile_gossip_is_dropped_counted_and_never_appended(tmp_path: Path) -> None:
    # B: M may publish 6 messages, then nothing (refills in ~1000 days).
    strict = GossipConfig(origin_rate=1e-8, origin_burst=6)
    with trio.fail_after(60):
        async with line(tmp_path, 3, gossip={1: strict}) as (a, b, c), \
                open_host(seed(9), CONFIG) as m_host:
            await m_host.connect(b.host.listen_addrs[0])
            async with m_host.pubsub.subscribe(TOPIC):
                await b.host.pubsub.wait_for_mesh_peer(m_host.peer_id, TOPIC, 5.0)
                await _attack(a, b, c, m_host, Identity.from_seed(seed(9)))


async def _attack(a: Peer, b: Peer, c: Peer, m_host: Host, m: Identity) -> None:
    honest = await gossip(a).publish_own_verdict(SUBJECT, Verdict("pass", {"step": 1}))
    await gossip(c).wait_until(lambda s: s["appended"] == 1)

    async def send(data: bytes) -> None:
        await m_host.pubsub.publish(TOPIC, data)

    forged = dataclasses.replace(signed_verdict(a.identity, 2), time_ms=T0)  # A never signed
    wrong_kind = Record.sign(m, EntryKind.SUCCESS, SUBJECT, Success(), time_ms=T0)
    await send(b"\x00" * 70_000)  # oversized: refused before it is parsed (costs no token)
    await send(forged.to_wire())  # forged: 1 token
    await send(b"\x85\xa1v\x01garbage")  # malformed: 1 token
    await send(wrong_kind.to_wire())  # wrong kind: 1 token
    await send(honest.record.to_wire())  # replayed: 1 token
    await send(honest.record.to_wire())  # replayed again: 1 token
    expected = {"oversized": 1, "forged": 1, "malformed": 1, "wrong_kind": 1, "duplicate": 2,
                "rate_limited": 0, "appended": 1}
    await gossip(b).wait_until(lambda s: all(s[k] >= v for k, v in expected.items()))

    flood = [signed_verdict(m, step) for step in range(10, 20)]
    for record in flood:  # 1 token left: one is accepted, nine are rate-limited
        await send(record.to_wire())
    expected.update(rate_limited=9, appended=2)
    await gossip(b).wait_until(lambda s: all(s[k] >= v for k, v in expected.items()))
    stats = gossip(b).stats
    assert {k: stats[k] for k in expected} == expected
    appended_flood = [r for r in flood if b.ledger.contains(r)]
    assert len(appended_flood) == 1
    assert verdicts(b.ledger) == [honest.record, *appended_flood]
    assert not b.ledger.contains(forged) and not b.ledger.contains(wrong_kind)

    # B forwarded only what it accepted: C saw no hostile message at all.
    await gossip(c).wait_until(lambda s: s["appended"] == 2)
    assert verdicts(c.ledger) == verdicts(b.ledger)
    assert sum(gossip(c).stats[k] for k in expected if k != "appended") == 0

    # And the swarm still works: a new verdict from A reaches C.
    after = await gossip(a).publish_own_verdict(SUBJECT, Verdict("pass", {"step": 3}))
    await gossip(c).wait_until(lambda s: s["appended"] == 3)
    assert c.ledger.contains(after.record)
