"""The ledger store: append and read back, triggers, received records, threads, checkpoints."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
import threading
from pathlib import Path

import pytest
from ledger_support import (
    OTHER,
    OWNER,
    PEER,
    T0,
    VERIFIER,
    fraud_proof,
    open_ledger,
    populate,
    verdict,
)

from darwin.ledger import (
    Checkpoint,
    CorruptLedgerError,
    DuplicateEntryError,
    Entry,
    EntryKind,
    Failure,
    InvalidEntryError,
    Ledger,
    LedgerConfig,
    LedgerError,
    LedgerOwnerError,
    Record,
    head_file_path,
    read_entries,
    verify_ledger,
)
from darwin.ledger.signed_head import read_signed_head


def test_append_and_read_back_round_trip(ledger_path: Path) -> None:
    with open_ledger(ledger_path) as ledger:
        appended = [
            ledger.record_success(PEER.peer_id, time_ms=T0 + 1),
            ledger.record_failure(PEER.peer_id, "stream reset", time_ms=T0 + 2),
            ledger.append(EntryKind.LATENCY, PEER.peer_id, {"latency_ms": 17}, time_ms=T0 + 3),
            ledger.append_signed(verdict(VERIFIER, PEER, "pass", refs={"b": 2, "a": b"x"})),
        ]
        read = list(ledger.entries(since=1))
        head = ledger.head()
    assert read == appended
    assert [entry.seq for entry in read] == [2, 3, 4, 5]
    assert read[1].body == Failure("stream reset")
    assert read[2].body.latency_ms == 17  # type: ignore[union-attr]
    assert read[3].signer == VERIFIER.peer_id and read[3].anchor == b""
    assert all(entry.signer == OWNER.peer_id for entry in read[:3])
    assert head.seq == 5 and head.hash == read[-1].hash
    assert read_entries(ledger_path)[1:5] == read  # the read-only reader agrees (6: close)
    assert verify_ledger(ledger_path).ok


def test_every_own_entry_is_anchored_and_chained(populated: Path) -> None:
    entries = read_entries(populated)
    assert entries[0].kind == EntryKind.GENESIS and entries[0].signer == OWNER.peer_id
    for before, entry in itertools.pairwise(entries):
        assert entry.prev_hash == before.hash
        if entry.signer == OWNER.peer_id:
            assert entry.anchor == before.hash


def test_entries_since_and_kinds_filter(populated: Path) -> None:
    with open_ledger(populated) as ledger:
        assert [e.seq for e in ledger.entries(since=9)] == [10, 11]
        verdicts = list(ledger.entries(kinds=[EntryKind.VERDICT]))
        assert [e.seq for e in verdicts] == [6, 10, 11]
        assert list(ledger.entries(since=11)) == []


def test_entries_pages_through_a_long_ledger(ledger_path: Path) -> None:
    import darwin.ledger.store as store

    with open_ledger(ledger_path) as ledger:
        for i in range(7):
            ledger.record_latency(PEER.peer_id, i)
        page, store._PAGE = store._PAGE, 3
        try:
            assert [e.seq for e in ledger.entries()] == list(range(1, 9))
        finally:
            store._PAGE = page


@pytest.mark.parametrize("statement", [
    "UPDATE entries SET payload = x'80' WHERE seq = 2",
    "UPDATE entries SET seq = 99 WHERE seq = 3",
    "DELETE FROM entries WHERE seq = 11",
    "DELETE FROM entries",
    "INSERT INTO entries SELECT 20, kind, subject, payload, signer, signature, time_ms, anchor,"
    " prev_hash, hash FROM entries WHERE seq = 2",
    "INSERT OR REPLACE INTO entries SELECT * FROM entries WHERE seq = 2",
])
def test_triggers_refuse_update_delete_and_out_of_place_inserts(
        populated: Path, statement: str) -> None:
    with open_ledger(populated) as ledger:
        connection = ledger._conn  # the program's own connection, on purpose
        with pytest.raises(sqlite3.IntegrityError, match="ledger entries are append"):
            connection.execute(statement)
        assert ledger.head().seq == 11
    assert verify_ledger(populated).ok


def test_triggers_also_bind_any_other_connection(populated: Path) -> None:
    connection = sqlite3.connect(populated)
    with pytest.raises(sqlite3.IntegrityError, match="UPDATE refused"):
        connection.execute("UPDATE entries SET subject = '' WHERE seq = 2")
    connection.close()


def test_received_record_with_a_bad_signature_is_refused(ledger_path: Path) -> None:
    good = verdict(VERIFIER, PEER, "fail")
    forged = [
        dataclasses.replace(good, signature=bytes(64)),
        dataclasses.replace(good, signer=OTHER.peer_id),  # claims another verifier
        Record(good.kind, OTHER.peer_id, good.payload, good.signer, good.time_ms, good.anchor,
               good.signature),  # about someone else
        Record.from_wire(good.to_wire().replace(b"fail", b"pass")),
    ]
    with open_ledger(ledger_path) as ledger:
        for record in forged:
            with pytest.raises(InvalidEntryError, match="bad signature"):
                ledger.append_signed(record)
        assert ledger.head().seq == 1
        assert ledger.append_signed(good).seq == 2


def test_received_records_are_verdicts_only_and_never_twice(ledger_path: Path) -> None:
    with open_ledger(ledger_path) as ledger:
        theirs = Record.sign(VERIFIER, EntryKind.SUCCESS, PEER.peer_id, {}, time_ms=T0)
        with pytest.raises(InvalidEntryError, match="only written by the owner"):
            ledger.append_signed(theirs)
        with pytest.raises(InvalidEntryError, match="written with append"):
            ledger.append_signed(verdict(OWNER, PEER))  # ours must be anchored: use append
        record = verdict(VERIFIER, PEER)
        entry = ledger.append_signed(record)
        assert ledger.contains(record)
        with pytest.raises(DuplicateEntryError):
            ledger.append_signed(record)
        with pytest.raises(DuplicateEntryError):  # an entry from someone's ledger: its record
            ledger.append_signed(entry)
        assert ledger.head().seq == 2


def test_own_verdicts_travel_to_another_ledger(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "a.sqlite", VERIFIER) as theirs:
        entry = theirs.append(EntryKind.VERDICT, PEER.peer_id, {"outcome": "fail", "refs": {}})
    with open_ledger(tmp_path / "b.sqlite") as ours:
        received = ours.append_signed(Entry.from_wire(entry.to_wire()))
    assert received.record == entry.record and received.anchor == entry.prev_hash
    assert verify_ledger(tmp_path / "b.sqlite").ok


@pytest.mark.parametrize(("kind", "subject", "payload", "match"), [
    (EntryKind.FAILURE, PEER.peer_id, {"reason": ""}, "must not be empty"),
    (EntryKind.FAILURE, PEER.peer_id, {"reason": "x" * 257}, "longer than"),
    (EntryKind.FAILURE, PEER.peer_id, {"reason": "x", "extra": 1}, "payload has keys"),
    (EntryKind.LATENCY, PEER.peer_id, {"latency_ms": -1}, "must be in"),
    (EntryKind.LATENCY, PEER.peer_id, {"latency_ms": True}, "must be an int"),
    (EntryKind.SUCCESS, "not-a-peer-id", {}, "not a valid peer id"),
    (EntryKind.SUCCESS, "", {}, "must not be empty"),
    (EntryKind.VERDICT, PEER.peer_id, {"outcome": "maybe", "refs": {}}, "unknown verdict"),
    (EntryKind.VERDICT, PEER.peer_id, {"outcome": "pass", "refs": {"r": 1.5}}, "must be str"),
    (EntryKind.VERDICT, PEER.peer_id, {"outcome": "pass", "refs": {"r": b"x" * 513}}, "over"),
    (EntryKind.VERDICT, PEER.peer_id,
     {"outcome": "pass", "refs": {f"k{i}": 1 for i in range(17)}}, "more than 16"),
    (EntryKind.FRAUD_PROOF, PEER.peer_id,
     {"status": "confirmed", "proof_hash": b"x", "accuser": OTHER.peer_id}, "32 bytes"),
    (EntryKind.CHECKPOINT, "", {"head_seq": 1, "head_hash": bytes(32)}, "written by the ledger"),
    (EntryKind.GENESIS, "", {"format": 1}, "written by the ledger"),
    ("gossip", PEER.peer_id, {}, "unknown entry kind"),
])
def test_invalid_entries_are_refused_and_nothing_is_appended(
        ledger_path: Path, kind: EntryKind, subject: str, payload: dict[str, object],
        match: str) -> None:
    with open_ledger(ledger_path) as ledger:
        with pytest.raises(InvalidEntryError, match=match):
            ledger.append(kind, subject, payload)
        assert ledger.head().seq == 1


def test_a_payload_is_stored_in_its_single_canonical_encoding() -> None:
    import msgpack

    record = Record.sign(OWNER, EntryKind.FAILURE, PEER.peer_id, {"reason": "x"}, time_ms=T0)
    assert msgpack.unpackb(record.payload) == {"reason": "x"}
    longer = b"\xd9\x01x"  # the same str in a str8 header: valid msgpack, not canonical
    payload = b"\x81\xa6reason" + longer
    with pytest.raises(InvalidEntryError, match="canonical"):
        dataclasses.replace(record, payload=payload)


def test_record_wire_round_trip_and_limits() -> None:
    record = verdict(VERIFIER, PEER, "unresponsive", refs={"session": b"\x02" * 16, "step": 4})
    assert Record.from_wire(record.to_wire()) == record
    with pytest.raises(InvalidEntryError, match="at most"):
        Record.from_wire(b"\x00" * 6000)
    with pytest.raises(InvalidEntryError, match="not valid msgpack"):
        Record.from_wire(b"\xc1")
    with pytest.raises(InvalidEntryError, match="keys"):
        Record.from_wire(b"\x80")


def test_opening_someone_elses_ledger_is_refused(populated: Path) -> None:
    with pytest.raises(LedgerOwnerError, match="belongs to"):
        Ledger.open(populated, OTHER)


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY)")
    connection.close()
    with pytest.raises(CorruptLedgerError, match="schema version 0"):
        Ledger.open(path, OWNER)


def test_closed_ledger_refuses_work(ledger_path: Path) -> None:
    ledger = open_ledger(ledger_path)
    ledger.close()
    ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        ledger.record_success(PEER.peer_id)


def test_concurrent_appends_from_threads_are_serialised(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path, OWNER, LedgerConfig(checkpoint_every=10))
    seqs: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def burst(index: int) -> None:
        start.wait(timeout=10)
        for _ in range(15):
            entry = ledger.record_latency(PEER.peer_id, index)
            with lock:
                seqs.append(entry.seq)

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ledger.close()
    report = verify_ledger(ledger_path)
    assert report.ok, report.reason
    assert len(set(seqs)) == 60
    latencies = [e for e in read_entries(ledger_path) if e.kind == EntryKind.LATENCY]
    assert sorted(e.seq for e in latencies) == sorted(seqs)
    assert report.checkpoints >= 6  # every 10 appends, plus one on close


def test_checkpoints_sign_the_head_and_update_the_head_file(ledger_path: Path) -> None:
    with Ledger.open(ledger_path, OWNER, LedgerConfig(checkpoint_every=3)) as ledger:
        for _ in range(3):
            ledger.record_success(PEER.peer_id)
        signed = read_signed_head(ledger_path)
        assert signed is not None and signed.seq == 5
        assert signed.body == Checkpoint(head_seq=4, head_hash=signed.prev_hash)
        ledger.record_success(PEER.peer_id)
    final = read_signed_head(ledger_path)  # the checkpoint on close
    assert final is not None and final.seq == 7
    assert head_file_path(ledger_path).name == "ledger.sqlite.head"
    with Ledger.open(ledger_path, OWNER) as ledger:  # nothing new: no checkpoint on close
        pass
    assert read_entries(ledger_path)[-1].seq == 7


def test_convenience_recorders_write_the_documented_kinds(ledger_path: Path) -> None:
    with open_ledger(ledger_path) as ledger:
        populate(ledger)
        kinds = [e.kind for e in ledger.entries()]
    assert kinds == [EntryKind.GENESIS, EntryKind.SUCCESS, EntryKind.FAILURE, EntryKind.LATENCY,
                     EntryKind.PROTOCOL_VIOLATION, EntryKind.VERDICT, EntryKind.CHECKPOINT,
                     EntryKind.FRAUD_PROOF, EntryKind.ACCUSATION_REFUTED, EntryKind.VERDICT,
                     EntryKind.VERDICT]
    assert fraud_proof(PEER, VERIFIER).accuser == VERIFIER.peer_id
