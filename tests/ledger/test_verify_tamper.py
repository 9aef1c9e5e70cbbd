"""Every edit made behind the program's back is detected, naming the first bad entry.

The populated ledger (see ``conftest.populated``) holds 11 entries: 1 genesis, 2 success,
3 failure, 4 latency, 5 protocol violation, 6 received fail verdict, 7 checkpoint (also in the
signed head file), 8 fraud proof, 9 refuted accusation, 10 own verdict, 11 received verdict.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from ledger_support import OTHER, OWNER, PEER, T0, open_ledger

from darwin.ledger import Entry, EntryKind, Record, head_file_path, read_entries, verify_ledger
from darwin.ledger.record import entry_hash
from darwin.ledger.rows import COLUMNS

Raw = Callable[..., sqlite3.Cursor]


def rehash_from(raw: Raw, first: int) -> None:
    """What a careful attacker does next: recompute prev_hash and hash from ``first`` on."""
    rows = raw(f"SELECT {', '.join(COLUMNS)} FROM entries ORDER BY seq").fetchall()
    prev = rows[first - 2][-1]
    for row in rows[first - 1:]:
        seq, kind, subject, payload, signer, signature, time_ms, anchor, _, _ = row
        record = Record(kind, subject, payload, signer, time_ms, anchor, signature)
        digest = entry_hash(seq, record, prev)
        raw("UPDATE entries SET prev_hash = ?, hash = ? WHERE seq = ?", prev, digest, seq)
        prev = digest


def assert_bad(path: Path, seq: int, reason: str) -> None:
    report = verify_ledger(path)
    assert not report.ok
    assert (report.first_bad_seq, report.entries) == (seq, seq - 1), report.reason
    assert reason in (report.reason or "")


def test_the_untouched_ledger_verifies(populated: Path) -> None:
    report = verify_ledger(populated, expected_owner=OWNER.peer_id)
    assert report.ok and report.reason is None and report.first_bad_seq is None
    assert (report.entries, report.head_seq, report.checkpoints) == (11, 11, 1)
    assert report.signed_head_seq == 7 and report.owner == OWNER.peer_id
    assert report.head_hash == read_entries(populated)[-1].hash


@pytest.mark.parametrize(("statement", "seq", "reason"), [
    ("UPDATE entries SET payload = x'81a6726561736f6ea774696d656f7554' WHERE seq = 3", 3,
     "bad signature"),  # {"reason": "timeouT"}: canonical, but not what was signed
    ("UPDATE entries SET subject = (SELECT subject FROM entries WHERE seq = 9) WHERE seq = 2", 2,
     "bad signature"),
    ("UPDATE entries SET time_ms = time_ms + 1 WHERE seq = 4", 4, "bad signature"),
    ("UPDATE entries SET kind = 'failure' WHERE seq = 2", 2, "failure payload has keys"),
    ("UPDATE entries SET kind = 'latency', payload = x'81aa6c6174656e63795f6d7300' WHERE seq = 5",
     5, "bad signature"),
    ("UPDATE entries SET hash = zeroblob(32) WHERE seq = 5", 5, "stored hash differs"),
    ("UPDATE entries SET signature = (SELECT signature FROM entries WHERE seq = 2) WHERE seq = 3",
     3, "bad signature"),
    ("UPDATE entries SET signer = (SELECT subject FROM entries WHERE seq = 2) WHERE seq = 4", 4,
     "signed by the owner"),
    ("UPDATE entries SET anchor = x'' WHERE seq = 8", 8, "not anchored"),
    ("UPDATE entries SET prev_hash = zeroblob(32) WHERE seq = 9", 9, "does not chain"),
])
def test_a_raw_update_is_detected_at_the_edited_entry(
        raw: Raw, populated: Path, statement: str, seq: int, reason: str) -> None:
    raw(statement)
    assert_bad(populated, seq, reason)


def test_a_changed_byte_in_a_payload_is_detected(raw: Raw, populated: Path) -> None:
    payload = bytearray(raw("SELECT payload FROM entries WHERE seq = 5").fetchone()[0])
    payload[-1] ^= 0x01  # one bit of the last character of the reason
    raw("UPDATE entries SET payload = ? WHERE seq = 5", bytes(payload))
    assert_bad(populated, 5, "bad signature")


def test_a_deleted_row_is_detected_as_missing(raw: Raw, populated: Path) -> None:
    raw("DELETE FROM entries WHERE seq = 5")
    assert_bad(populated, 5, "entry 5 is missing")


def test_a_deleted_row_is_detected_even_after_renumbering_and_rehashing(
        raw: Raw, populated: Path) -> None:
    raw("DELETE FROM entries WHERE seq = 4")
    raw("UPDATE entries SET seq = seq - 1 WHERE seq > 4")
    rehash_from(raw, 4)
    assert_bad(populated, 4, "not anchored")  # the owner signed its place in the chain


def test_reordered_rows_are_detected(raw: Raw, populated: Path) -> None:
    raw("UPDATE entries SET seq = 100 WHERE seq = 3")
    raw("UPDATE entries SET seq = 3 WHERE seq = 4")
    raw("UPDATE entries SET seq = 4 WHERE seq = 100")
    assert_bad(populated, 3, "does not chain to entry 2")


def test_reordering_received_entries_with_rehashing_is_caught_at_the_next_own_entry(
        raw: Raw, populated: Path) -> None:
    # Swap 10 (own verdict) and 11 (received verdict) and fix every hash: the received record
    # is position-free and passes; the owner's record is anchored to entry 9 and fails.
    raw("UPDATE entries SET seq = 100 WHERE seq = 10")
    raw("UPDATE entries SET seq = 10 WHERE seq = 11")
    raw("UPDATE entries SET seq = 11 WHERE seq = 100")
    rehash_from(raw, 10)
    assert_bad(populated, 11, "not anchored")


def test_an_inserted_row_is_detected(raw: Raw, populated: Path) -> None:
    raw("UPDATE entries SET seq = seq + 100 WHERE seq >= 5")
    raw("UPDATE entries SET seq = seq - 99 WHERE seq >= 105")
    raw(f"INSERT INTO entries ({', '.join(COLUMNS)}) SELECT 5, kind, subject, payload, signer,"
        " signature, time_ms, anchor, prev_hash, hash FROM entries WHERE seq = 2")
    assert_bad(populated, 5, "does not chain to entry 4")


def test_a_replayed_record_is_detected_even_with_a_correct_hash(
        raw: Raw, populated: Path) -> None:
    head = read_entries(populated)[-1]
    replay = Entry.chain(12, read_entries(populated)[5].record, head.hash)  # entry 6 again
    raw(f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        12, str(replay.kind), replay.subject, replay.payload, replay.signer, replay.signature,
        replay.time_ms, replay.anchor, replay.prev_hash, replay.hash)
    assert_bad(populated, 12, "duplicate of entry 6")


def test_an_entry_forged_in_the_owners_name_is_detected(raw: Raw, populated: Path) -> None:
    head = read_entries(populated)[-1]
    record = Record.sign(OTHER, EntryKind.SUCCESS, PEER.peer_id, {}, time_ms=T0, anchor=head.hash)
    forged = Entry.chain(12, record, head.hash)
    raw(f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        12, "success", forged.subject, forged.payload, forged.signer, forged.signature,
        forged.time_ms, forged.anchor, forged.prev_hash, forged.hash)
    assert_bad(populated, 12, "must be signed by the owner")


def test_an_edit_with_every_hash_recomputed_still_fails_the_signature(
        raw: Raw, populated: Path) -> None:
    raw("UPDATE entries SET payload = ? WHERE seq = 3", msgpack.packb({"reason": "no reply"}))
    rehash_from(raw, 3)
    assert_bad(populated, 3, "bad signature")


def test_a_truncated_tail_is_detected_through_the_signed_head(raw: Raw, populated: Path) -> None:
    raw("DELETE FROM entries WHERE seq >= 6")  # drops the checkpoint at 7 that the file names
    assert_bad(populated, 6, "truncated")


def test_truncation_after_the_last_checkpoint_needs_a_later_head(
        raw: Raw, populated: Path) -> None:
    """The documented limit: a prefix that ends after the last signed head is self-consistent.

    Locally nothing says entries 10 and 11 ever existed; a signed head the node gave out later
    (to a peer, a backup) does.
    """
    with open_ledger(populated, checkpoint_on_close=False) as ledger:
        ledger.record_success(PEER.peer_id)
        later_head = ledger.checkpoint()  # seq 13, given to a peer; the file now says 13
    head_file = head_file_path(populated)
    raw("DELETE FROM entries WHERE seq >= 10")
    old_head = Entry.chain(7, read_entries(populated)[6].record, read_entries(populated)[5].hash)
    head_file.write_bytes(old_head.to_wire())  # the attacker restores an older genuine head
    assert verify_ledger(populated).ok
    report = verify_ledger(populated, known_heads=[later_head])
    assert (report.ok, report.first_bad_seq) == (False, 10)
    assert "truncated" in (report.reason or "")


def test_a_corrupt_or_foreign_head_file_is_reported(populated: Path) -> None:
    head_file = head_file_path(populated)
    head_file.write_bytes(b"\x93garbage")
    report = verify_ledger(populated)
    assert not report.ok and "head file is unreadable" in (report.reason or "")
    assert report.entries == 11  # the chain itself verified
    foreign_path = populated.with_name("foreign.sqlite")
    with open_ledger(foreign_path, OTHER) as foreign:
        foreign.record_success(PEER.peer_id)
        head = foreign.checkpoint()
    head_file.write_bytes(head.to_wire())
    report = verify_ledger(populated)
    assert (report.ok, report.first_bad_seq, report.entries) == (False, 3, 11)
    assert "not a checkpoint signed by the owner" in (report.reason or "")


def test_a_ledger_swapped_for_another_owners_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with open_ledger(path, OTHER) as ledger:
        ledger.record_success(PEER.peer_id)
    assert verify_ledger(path).ok  # a valid ledger, but not ours
    report = verify_ledger(path, expected_owner=OWNER.peer_id)
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert "genesis is signed by" in (report.reason or "")


def test_a_dropped_table_or_a_missing_file_is_reported(raw: Raw, populated: Path,
                                                       tmp_path: Path) -> None:
    raw("DROP TABLE entries")
    report = verify_ledger(populated)
    assert not report.ok and "cannot read the ledger" in (report.reason or "")
    with pytest.raises(FileNotFoundError):
        verify_ledger(tmp_path / "absent.sqlite")
    assert not (tmp_path / "absent.sqlite").exists()
