"""Properties: any sequence of appends verifies; any single changed payload byte is caught."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_support import OWNER, T0, TRIGGERS, identity, open_ledger, populate

from darwin.ledger import (
    AccusationRefuted,
    EntryKind,
    Failure,
    FraudProof,
    FraudStatus,
    Latency,
    Ledger,
    ProtocolViolation,
    Record,
    Success,
    Verdict,
    VerdictOutcome,
    read_entries,
    verify_ledger,
)

PEERS = [identity(f"peer-{i}") for i in range(3)]
VERIFIERS = [identity(f"verifier-{i}") for i in range(2)]

reasons = st.text(min_size=1, max_size=40)
ref_values = st.one_of(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=16),
                       st.text(max_size=16), st.booleans(), st.none())
refs = st.dictionaries(st.text(min_size=1, max_size=8), ref_values, max_size=4)
peer = st.sampled_from(PEERS)
outcomes = st.sampled_from(list(VerdictOutcome))
proof_hash = st.binary(min_size=32, max_size=32)

# One operation: ("own", kind, subject, payload) | ("received", record) | ("checkpoint",)
own_ops = st.one_of(
    st.tuples(st.just(EntryKind.SUCCESS), peer, st.just(Success())),
    st.tuples(st.just(EntryKind.FAILURE), peer, st.builds(Failure, reasons)),
    st.tuples(st.just(EntryKind.LATENCY), peer, st.builds(Latency, st.integers(0, 3_600_000))),
    st.tuples(st.just(EntryKind.PROTOCOL_VIOLATION), peer, st.builds(ProtocolViolation, reasons)),
    st.tuples(st.just(EntryKind.VERDICT), peer, st.builds(Verdict, outcomes, refs)),
    st.tuples(st.just(EntryKind.FRAUD_PROOF), peer,
              st.builds(FraudProof, st.sampled_from(list(FraudStatus)), proof_hash,
                        st.sampled_from([v.peer_id for v in VERIFIERS]))),
    st.tuples(st.just(EntryKind.ACCUSATION_REFUTED), peer,
              st.builds(AccusationRefuted, st.sampled_from([v.peer_id for v in VERIFIERS]),
                        proof_hash)),
).map(lambda op: ("own", *op))
received_ops = st.builds(
    lambda verifier, subject, body, time_ms: ("received", Record.sign(
        verifier, EntryKind.VERDICT, subject.peer_id, body, time_ms=time_ms)),
    st.sampled_from(VERIFIERS), peer, st.builds(Verdict, outcomes, refs),
    st.integers(T0, T0 + 10**9),
)
operations = st.lists(st.one_of(own_ops, received_ops, st.just(("checkpoint",))),
                      min_size=1, max_size=10)


def apply(ledger: Ledger, op: tuple[object, ...]) -> bool:
    """Apply one operation; False if it was a duplicate received record (not appended)."""
    if op[0] == "checkpoint":
        ledger.checkpoint()
    elif op[0] == "received":
        record = op[1]
        assert isinstance(record, Record)
        if ledger.contains(record):
            return False
        ledger.append_signed(record)
    else:
        _, kind, subject, payload = op
        ledger.append(kind, subject.peer_id, payload)  # type: ignore[arg-type, attr-defined]
    return True


@settings(max_examples=25, deadline=None)
@given(ops=operations)
def test_any_sequence_of_appends_verifies_and_reads_back(ops: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.sqlite"
        with open_ledger(path, checkpoint_every=4, checkpoint_on_close=False) as ledger:
            appended = sum(apply(ledger, op) for op in ops)
            auto = ledger.head().seq - 1 - appended  # automatic checkpoints
        report = verify_ledger(path, expected_owner=OWNER.peer_id)
        assert report.ok, report.reason
        entries = read_entries(path)
        assert len(entries) == 1 + appended + auto
        wanted = [op[3] for op in ops if op[0] == "own"]
        bodies = [e.body for e in entries if e.kind not in (EntryKind.GENESIS,
                                                            EntryKind.CHECKPOINT)
                  and e.signer == OWNER.peer_id]
        assert bodies == wanted


@pytest.fixture(scope="module")
def frozen_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """A closed ledger of every kind, opened raw with its triggers dropped."""
    path = tmp_path_factory.mktemp("frozen") / "ledger.sqlite"
    with open_ledger(path) as ledger:
        populate(ledger)
    connection = sqlite3.connect(path)
    for trigger in TRIGGERS:
        connection.execute(f"DROP TRIGGER {trigger}")
    connection.commit()
    yield connection
    connection.close()


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_to_a_stored_payload_is_detected(
        frozen_ledger: sqlite3.Connection, data: st.DataObject) -> None:
    connection = frozen_ledger
    path = Path(connection.execute("PRAGMA database_list").fetchone()[2])
    count = connection.execute("SELECT MAX(seq) FROM entries").fetchone()[0]
    seq = data.draw(st.integers(1, count), label="seq")
    original = connection.execute("SELECT payload FROM entries WHERE seq = ?",
                                  (seq,)).fetchone()[0]
    index = data.draw(st.integers(0, len(original) - 1), label="byte")
    changed = bytearray(original)
    changed[index] ^= data.draw(st.integers(1, 255), label="xor")
    connection.execute("UPDATE entries SET payload = ? WHERE seq = ?", (bytes(changed), seq))
    connection.commit()
    try:
        report = verify_ledger(path)
        assert (report.ok, report.first_bad_seq) == (False, seq), report.reason
    finally:
        connection.execute("UPDATE entries SET payload = ? WHERE seq = ?", (original, seq))
        connection.commit()
    assert verify_ledger(path).ok
