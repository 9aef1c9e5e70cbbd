"""Catch-up over ``/darwin/ledger-sync/1``: both sides on real hosts, and hostile responders."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio
from transport_support import seed, swarm

from darwin.gossip.ledger_sync import (
    LedgerSyncError,
    LedgerSyncHandler,
    SyncConfig,
    SyncPage,
    SyncRequest,
    catch_up,
)
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
from darwin.net.framing import FramedStream
from darwin.net.host import Host, Stream
from darwin.net.protocols import LEDGER_SYNC_PROTOCOL
from darwin.protocol import ErrorCode, ErrorFrame, Identity, RemoteProtocolError

T0 = 1_700_000_000_000
SUBJECT = Identity.from_seed(b"\x99" * 32).peer_id
VERIFIERS = [Identity.from_seed(bytes([0x50 + i]) * 32) for i in range(3)]
QUICK = {"dial_timeout": 3.0, "dht_timeout": 3.0}


def verdict(identity: Identity, step: int) -> Record:
    return Record.sign(identity, EntryKind.VERDICT, SUBJECT,
                       Verdict("pass", {"step": step}), time_ms=T0 + step)  # type: ignore[arg-type]


def open_ledger(path: Path, i: int) -> Ledger:
    return Ledger.open(path, Identity.from_seed(seed(i)), LedgerConfig(checkpoint_every=0))


def fill(ledger: Ledger) -> tuple[list[Record], list[Record]]:
    """Received and own verdicts between non-gossip entries; own fraud_proof, refutation."""
    expected = []
    for step, verifier in enumerate(VERIFIERS):
        ledger.record_success(SUBJECT)
        ledger.append_signed(verdict(verifier, step))
        expected.append(verdict(verifier, step))
    expected.append(ledger.append(EntryKind.VERDICT, SUBJECT, Verdict("fail")).record)
    proof = FraudProof(FraudStatus.CONFIRMED, b"\x07" * 32, VERIFIERS[0].peer_id)
    refuted = AccusationRefuted(VERIFIERS[1].peer_id, b"\x08" * 32)
    notices = [ledger.append(EntryKind.FRAUD_PROOF, SUBJECT, proof).record,
               ledger.append(EntryKind.ACCUSATION_REFUTED, SUBJECT, refuted).record]
    ledger.record_latency(SUBJECT, 12)  # a non-gossip tail
    return expected, notices


@asynccontextmanager
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Host, Ledger, Host, Ledger]]:
    """(responder host, its ledger, asker host, its ledger): hosts seed(1) and seed(2)."""
    async with AsyncExitStack() as stack:
        responder, asker = await stack.enter_async_context(swarm(2, **QUICK))
        theirs = stack.enter_context(open_ledger(tmp_path / "r.sqlite", 1))
        ours = stack.enter_context(open_ledger(tmp_path / "a.sqlite", 2))
        yield responder, theirs, asker, ours


async def test_an_offline_node_catches_up_page_by_page(tmp_path: Path) -> None:
    notices: list[tuple[Record, str]] = []

    async def on_notice(record: Record, peer: str) -> None:
        notices.append((record, peer))

    with trio.fail_after(30):
        async with pair(tmp_path) as (responder, theirs, asker, ours):
            expected, served = fill(theirs)
            responder.set_stream_handler(LEDGER_SYNC_PROTOCOL, LedgerSyncHandler(theirs))
            config = SyncConfig(page_size=2)
            result = await catch_up(asker, responder.peer_id, ours, 0, config,
                                    on_fraud_notice=on_notice)
            assert result.appended == len(expected) and result.dropped == {}
            assert result.next == theirs.head().seq  # skipped the non-gossip tail
            assert [e.record for e in ours.entries(kinds=[EntryKind.VERDICT])] == expected
            assert notices == [(notice, responder.peer_id) for notice in served]
            assert result.notices == 2 and not any(ours.contains(n) for n in served)

            # Resuming finds nothing new; a later verdict is all the next call brings.
            again = await catch_up(asker, responder.peer_id, ours, result.next, config)
            assert (again.appended, again.notices, again.next) == (0, 0, result.next)
            late = verdict(VERIFIERS[1], 99)
            theirs.append_signed(late)
            last = await catch_up(asker, responder.peer_id, ours, result.next, config)
            assert last.appended == 1 and ours.contains(late)

            # From scratch, everything is a duplicate and nothing is appended twice.
            head = ours.head().seq
            replay = await catch_up(asker, responder.peer_id, ours, 0, config)
            assert replay.appended == 0 and replay.dropped == {"duplicate": len(expected) + 1}
            assert ours.head().seq == head


def test_a_page_is_cut_at_its_size_and_resumes_after_the_last_record(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "r.sqlite", 1) as ledger:
        expected, _ = fill(ledger)
        handler = LedgerSyncHandler(ledger)
        first = handler.page(0, 2)
        assert first.more and [Record.from_wire(r) for r in first.records] == expected[:2]
        rest = handler.page(first.next, 10)
        assert not rest.more and len(rest.records) == len(expected) - 2 + 2  # + the notices
        assert rest.next == ledger.head().seq
        assert handler.page(rest.next, 10) == SyncPage((), rest.next, False)


def test_sync_messages_round_trip_and_refuse_nonsense() -> None:
    assert SyncRequest.from_wire(SyncRequest(5, 3).to_wire()) == SyncRequest(5, 3)
    page = SyncPage((b"a", b"b"), 9, True)
    assert SyncPage.from_wire(page.to_wire()) == page
    error = ErrorFrame(ErrorCode.BUSY, "later")
    assert SyncPage.from_wire(error.to_wire()) == error
    for bad in (b"", b"\xc1", SyncPage((), 1, False).to_wire()):
        with pytest.raises(RemoteProtocolError):
            SyncRequest.from_wire(bad)
    with pytest.raises(ValueError):
        SyncRequest(0, 10_000)


async def test_forged_and_malformed_records_from_a_responder_are_dropped(
        tmp_path: Path) -> None:
    good = verdict(VERIFIERS[0], 1)
    forged = dataclasses.replace(verdict(VERIFIERS[1], 2), time_ms=T0)
    refuted = AccusationRefuted(VERIFIERS[0].peer_id, b"\x08" * 32)
    forged_notice = dataclasses.replace(Record.sign(
        VERIFIERS[2], EntryKind.ACCUSATION_REFUTED, SUBJECT, refuted, time_ms=T0), time_ms=1)
    wrong = Record.sign(VERIFIERS[2], EntryKind.SUCCESS, SUBJECT, Success(), time_ms=T0)

    async def liar(stream: Stream) -> None:
        framed = FramedStream(stream)
        await framed.read()
        records = (forged.to_wire(), b"junk", wrong.to_wire(), forged_notice.to_wire(),
                   good.to_wire())
        await framed.write(SyncPage(records, 4, False).to_wire())

    with trio.fail_after(30):
        async with pair(tmp_path) as (responder, _, asker, ours):
            responder.set_stream_handler(LEDGER_SYNC_PROTOCOL, liar)
            result = await catch_up(asker, responder.peer_id, ours)
            assert result.appended == 1 and ours.contains(good)
            assert result.dropped == {"forged": 2, "malformed": 1, "wrong_kind": 1}
            assert result.notices == 0
            assert not ours.contains(forged)


async def test_a_responder_that_breaks_the_protocol_is_an_error(tmp_path: Path) -> None:
    async def too_many(stream: Stream) -> None:
        framed = FramedStream(stream)
        request = SyncRequest.from_wire(await framed.read())
        records = tuple(verdict(VERIFIERS[0], i).to_wire() for i in range(request.max + 1))
        await framed.write(SyncPage(records, 99, False).to_wire())

    async def backwards(stream: Stream) -> None:
        framed = FramedStream(stream)
        await framed.read()
        await framed.write(SyncPage((), 0, False).to_wire())

    with trio.fail_after(30):
        async with pair(tmp_path) as (responder, _, asker, ours):
            for handler in (too_many, backwards):
                responder.set_stream_handler(LEDGER_SYNC_PROTOCOL, handler)
                with pytest.raises(LedgerSyncError, match="breaks the protocol"):
                    await catch_up(asker, responder.peer_id, ours, 5, SyncConfig(page_size=3))
            assert ours.head().seq == 1  # only the genesis


async def test_the_responder_refuses_bad_requests_and_floods(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with pair(tmp_path) as (responder, theirs, asker, ours):
            handler = LedgerSyncHandler(theirs, SyncConfig(serve_rate=1e-8, serve_burst=1))
            responder.set_stream_handler(LEDGER_SYNC_PROTOCOL, handler)

            stream = await asker.open_stream(responder.peer_id, LEDGER_SYNC_PROTOCOL)
            framed = FramedStream(stream)
            await framed.write(b"\x81\xa1v\x07")  # not a request
            answer = SyncPage.from_wire(await framed.read())
            assert isinstance(answer, ErrorFrame) and answer.code is ErrorCode.BAD_REQUEST

            await catch_up(asker, responder.peer_id, ours)  # the one request allowed
            with pytest.raises(LedgerSyncError, match="busy"):
                await catch_up(asker, responder.peer_id, ours)
