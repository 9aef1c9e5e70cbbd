"""Fraud-proof notices (``specs/gossip.md`` §4.2) between two real hosts, each with a ledger.

The holder (host seed(1)) serves proofs over ``/darwin/proof/1``; the asker (host seed(2))
takes in notices with `FraudNotices` and re-checks every proof with the tiny model. A genuine
proof bans its subject; a false accusation is refuted against its verifier, whoever's notice
(a fraud_proof or an accusation_refuted) named it, and the refutation is published; a proof
of another model is recorded unconfirmed; anything a hostile holder sends appends nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from proof_support import CHEATER, HONEST, VERIFIER, Proofs, make_proofs, notice, refutation
from transport_support import seed, swarm

from darwin.gossip.fraud_notices import (
    FraudNotices,
    NoticeConfig,
    NoticeOutcome,
    ProofCheck,
    proof_checker,
)
from darwin.gossip.proof_exchange import ProofExchangeConfig, ProofHandler
from darwin.gossip.proof_store import ProofStore
from darwin.ledger import (
    AccusationRefuted,
    EntryKind,
    FraudStatus,
    Ledger,
    LedgerConfig,
    Record,
    reputation,
)
from darwin.ledger import FraudProof as FraudProofEntry
from darwin.model import Checkpoint
from darwin.net.framing import FrameConfig, FramedStream
from darwin.net.host import Host, Stream
from darwin.net.protocols import PROOF_PROTOCOL
from darwin.protocol import FraudProof, Identity, ModelId, Verdict
from darwin.protocol.proof_request import ProofAnswer, ProofRequest, proof_hash
from darwin.verifier import FraudCheck

HOLDER, ASKER = Identity.from_seed(seed(1)), Identity.from_seed(seed(2))
QUICK = {"dial_timeout": 3.0, "dht_timeout": 3.0}
SMALL = NoticeConfig(fetch=ProofExchangeConfig(max_proof_bytes=1 << 20, timeout=5.0))


@pytest.fixture(scope="module")
def proofs(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proofs]:
    yield make_proofs(tiny_llama, tmp_path_factory.mktemp("digests"))


@dataclass
class Pair:
    holder: Host
    held: ProofStore
    asker: Host
    ledger: Ledger
    notices: FraudNotices


@asynccontextmanager
async def pair(tmp_path: Path, check: ProofCheck,
               config: NoticeConfig = SMALL) -> AsyncIterator[Pair]:
    async with AsyncExitStack() as stack:
        holder, asker = await stack.enter_async_context(swarm(2, **QUICK))
        held = ProofStore(tmp_path / "holder")
        holder.set_stream_handler(PROOF_PROTOCOL, ProofHandler(held, config.fetch))
        ledger = stack.enter_context(Ledger.open(tmp_path / "asker.sqlite", ASKER,
                                                 LedgerConfig(checkpoint_every=0)))
        notices = FraudNotices.open(asker, ledger, ProofStore(tmp_path / "asker"), check, config)
        yield Pair(holder, held, asker, ledger, notices)


def checker(tiny_llama: Path, model_id: ModelId) -> ProofCheck:
    return proof_checker(Checkpoint.open(tiny_llama), model_id)


def never_called(proof: FraudProof) -> FraudCheck | None:
    raise AssertionError("a proof that was never had was checked")


def own_entries(ledger: Ledger) -> list[Record]:
    return [e.record for e in ledger.entries()
            if e.record.kind in (EntryKind.FRAUD_PROOF, EntryKind.ACCUSATION_REFUTED)]


def scores(ledger: Ledger):  # type: ignore[no-untyped-def]
    return reputation(ledger.entries(), now_ms=time.time_ns() // 1_000_000, owner=ASKER.peer_id)


async def test_a_notice_of_a_genuine_proof_bans_the_cheater_once(
        proofs: Proofs, tiny_llama: Path, tmp_path: Path) -> None:
    data = proofs.confirmed.to_wire()
    with trio.fail_after(30):
        async with pair(tmp_path, checker(tiny_llama, proofs.model_id)) as p:
            p.held.put(data)
            told = notice(HOLDER, CHEATER, data)
            assert await p.notices.handle(told, p.holder.peer_id) is NoticeOutcome.CONFIRMED
            [entry] = own_entries(p.ledger)
            assert entry.signer == ASKER.peer_id and entry.subject == CHEATER.peer_id
            assert entry.body == FraudProofEntry(FraudStatus.CONFIRMED, proof_hash(data),
                                                 VERIFIER.peer_id)
            assert scores(p.ledger)[CHEATER.peer_id].banned
            assert p.notices.store.get(proof_hash(data)) == data  # we can serve it now

            # Told again (another record, another teller, or after a restart): handled once.
            again = notice(VERIFIER, CHEATER, data, time_ms=2)
            assert await p.notices.handle(again, p.holder.peer_id) is NoticeOutcome.DUPLICATE
            reopened = FraudNotices.open(p.asker, p.ledger, ProofStore(tmp_path / "other"),
                                         never_called, SMALL)
            assert await reopened.handle(again, p.holder.peer_id) is NoticeOutcome.DUPLICATE
            assert len(own_entries(p.ledger)) == 1


async def test_a_false_accusation_is_refuted_against_its_verifier(
        proofs: Proofs, tiny_llama: Path, tmp_path: Path) -> None:
    data = proofs.false.to_wire()
    with trio.fail_after(30):
        async with pair(tmp_path, checker(tiny_llama, proofs.model_id)) as p:
            p.held.put(data)
            # The notice's signer is not where the bytes are: the teller is tried first.
            told = notice(VERIFIER, HONEST, data)
            assert await p.notices.handle(told, p.holder.peer_id) is NoticeOutcome.REFUTED
            [entry] = own_entries(p.ledger)
            assert (entry.kind, entry.subject) == (EntryKind.ACCUSATION_REFUTED, HONEST.peer_id)
            assert entry.body == AccusationRefuted(VERIFIER.peer_id, proof_hash(data))
            standing = scores(p.ledger)
            assert not standing[HONEST.peer_id].banned
            assert standing[VERIFIER.peer_id].failures == pytest.approx(10)  # the penalty


async def test_a_refutation_we_hear_of_is_rechecked_and_ours_is_published(
        proofs: Proofs, tiny_llama: Path, tmp_path: Path) -> None:
    false, genuine = proofs.false.to_wire(), proofs.confirmed.to_wire()
    published: list[Record] = []

    async def publish(record: Record) -> None:
        published.append(record)

    with trio.fail_after(30):
        async with pair(tmp_path, checker(tiny_llama, proofs.model_id)) as p:
            p.notices.publish = publish
            p.held.put(false)
            p.held.put(genuine)
            # The holder refuted the verifier's fail: we re-check and refute it too, in our
            # own name, and tell the network.
            told = refutation(HOLDER, HONEST, false)
            assert await p.notices.handle(told, p.holder.peer_id) is NoticeOutcome.REFUTED
            [entry] = own_entries(p.ledger)
            assert (entry.signer, entry.subject) == (ASKER.peer_id, HONEST.peer_id)
            assert entry.body == AccusationRefuted(VERIFIER.peer_id, proof_hash(false))
            assert published == [entry]
            assert p.notices.store.get(proof_hash(false)) == false  # we can serve it now
            assert scores(p.ledger)[VERIFIER.peer_id].failures == pytest.approx(10)
            # The liar's own notice of that proof is handled already.
            liar = notice(VERIFIER, HONEST, false)
            assert await p.notices.handle(liar, p.holder.peer_id) is NoticeOutcome.DUPLICATE

            # What the teller found does not matter: a "refuted" genuine proof still bans,
            # and only refutations are published.
            told = refutation(HOLDER, CHEATER, genuine)
            assert await p.notices.handle(told, p.holder.peer_id) is NoticeOutcome.CONFIRMED
            assert scores(p.ledger)[CHEATER.peer_id].banned
            assert published == [entry]


async def test_a_proof_that_cannot_be_rerun_here_is_recorded_unconfirmed(
        proofs: Proofs, tiny_llama: Path, tmp_path: Path) -> None:
    data = proofs.confirmed.to_wire()
    with trio.fail_after(30):
        async with pair(tmp_path, checker(tiny_llama, ModelId(b"\x00" * 32))) as p:
            p.held.put(data)
            told = notice(HOLDER, CHEATER, data)
            assert await p.notices.handle(told, p.holder.peer_id) is NoticeOutcome.UNCONFIRMED
            [entry] = own_entries(p.ledger)
            assert entry.body == FraudProofEntry(FraudStatus.UNCONFIRMED, proof_hash(data),
                                                 VERIFIER.peer_id)
            assert not scores(p.ledger)[CHEATER.peer_id].banned


async def test_nothing_a_hostile_holder_sends_is_appended(
        proofs: Proofs, tiny_llama: Path, tmp_path: Path) -> None:
    genuine = proofs.confirmed.to_wire()
    unsigned = dataclasses.replace(proofs.confirmed, verdict=Verdict(
        proofs.confirmed.verdict.body, b"\x00" * 64)).to_wire()
    served: dict[bytes, bytes] = {}  # hash asked for -> the bytes the liar sends

    async def liar(stream: Stream) -> None:
        framed = FramedStream(stream, FrameConfig(max_frame_size=128, max_write_size=4 << 20))
        request = ProofRequest.from_wire(await framed.read())
        await framed.write(ProofAnswer(served[request.proof_hash]).to_wire())

    cases = [  # (what the notice names, what is sent, the outcome)
        (genuine, b"other bytes", NoticeOutcome.UNAVAILABLE),  # hash does not match
        (genuine, genuine + b"\x00" * (2 << 20), NoticeOutcome.UNAVAILABLE),  # oversized
        (b"not a proof", b"not a proof", NoticeOutcome.WORTHLESS),
        (unsigned, unsigned, NoticeOutcome.WORTHLESS),  # its verdict is not signed
    ]
    with trio.fail_after(30):
        async with pair(tmp_path, checker(tiny_llama, proofs.model_id)) as p:
            p.holder.set_stream_handler(PROOF_PROTOCOL, liar)
            head = p.ledger.head()
            for named, sent, outcome in cases:
                served[proof_hash(named)] = sent
                told = notice(HOLDER, CHEATER, named)
                assert await p.notices.handle(told, p.holder.peer_id) is outcome, outcome
            # A genuine proof against someone else than the notice names.
            served[proof_hash(genuine)] = genuine
            told = notice(HOLDER, HONEST, genuine)
            assert await p.notices.handle(told, p.holder.peer_id) is NoticeOutcome.MISMATCHED
            # A refutation naming someone else than the proof accuses.
            false = proofs.false.to_wire()
            served[proof_hash(false)] = false
            told = refutation(HOLDER, CHEATER, false)
            assert await p.notices.handle(told, p.holder.peer_id) is NoticeOutcome.MISMATCHED
            # Notices that are not signed by who they name.
            for forged in (dataclasses.replace(notice(HOLDER, CHEATER, genuine), time_ms=1),
                           dataclasses.replace(refutation(HOLDER, HONEST, false), time_ms=1)):
                assert await p.notices.handle(forged, p.holder.peer_id) is NoticeOutcome.INVALID
            assert p.ledger.head() == head
            assert list((tmp_path / "asker").glob("*")) == []  # nothing stored either
            # Worthless and mismatched proofs are not fetched again; unavailable ones may be.
            assert await p.notices.handle(notice(HOLDER, CHEATER, unsigned, time_ms=9),
                                          p.holder.peer_id) is NoticeOutcome.DUPLICATE
            counted = ("worthless", "unavailable", "mismatched", "invalid")
            assert {k: p.notices.stats[k] for k in counted} == dict.fromkeys(counted, 2)


async def test_submitted_notices_are_queued_bounded_and_deduplicated(
        proofs: Proofs, tmp_path: Path) -> None:
    config = dataclasses.replace(SMALL, queue=1, workers=1)
    with trio.fail_after(30):
        async with pair(tmp_path, never_called, config) as p:
            first, second = (notice(HOLDER, CHEATER, bytes([i])) for i in range(2))
            await p.notices.submit(first, p.holder.peer_id)
            await p.notices.submit(first, p.holder.peer_id)  # in flight: a duplicate
            await p.notices.submit(second, p.holder.peer_id)  # the queue is full
            assert p.notices.stats["duplicate"] == 1 and p.notices.stats["overloaded"] == 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(p.notices.serve)
                await p.notices.wait_until(lambda stats: stats["unavailable"] == 1)
                nursery.cancel_scope.cancel()
            await p.notices.submit(second, p.holder.peer_id)  # room again, and not held
            assert p.notices.stats["overloaded"] == 1
