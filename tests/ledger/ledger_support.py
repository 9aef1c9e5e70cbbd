"""Builders shared by the ledger tests: fixed identities, small ledgers, raw tampering."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from darwin.ledger import (
    EntryKind,
    FraudProof,
    FraudStatus,
    Ledger,
    LedgerConfig,
    Record,
    Verdict,
    VerdictOutcome,
)
from darwin.protocol import Identity

TRIGGERS = ("entries_refuse_update", "entries_refuse_delete", "entries_contiguous")
T0 = 1_700_000_000_000  # a fixed epoch for entry times, in ms


def identity(label: str) -> Identity:
    """A deterministic identity named by ``label``."""
    return Identity.from_seed(hashlib.blake2b(label.encode(), digest_size=32).digest())


OWNER = identity("owner")
PEER = identity("peer")
VERIFIER = identity("verifier")
OTHER = identity("other")


class FixedClock:
    """A clock for ledgers that advances one millisecond per reading."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


def open_ledger(path: Path, owner: Identity = OWNER, **config: int | bool) -> Ledger:
    """A ledger at ``path`` with a deterministic clock and no automatic checkpoints."""
    settings = {"checkpoint_every": 0, **config}
    return Ledger.open(path, owner, LedgerConfig(**settings), clock=FixedClock())  # type: ignore[arg-type]


def verdict(verifier: Identity, subject: Identity, outcome: str = "pass", *,
            time_ms: int = T0, refs: dict[str, object] | None = None) -> Record:
    """A verdict record signed by ``verifier`` about ``subject``."""
    body = Verdict(VerdictOutcome(outcome), refs or {"receipt": b"\x01" * 32})  # type: ignore[arg-type]
    return Record.sign(verifier, EntryKind.VERDICT, subject.peer_id, body, time_ms=time_ms)


def fraud_proof(subject: Identity, accuser: Identity, status: str = "confirmed") -> FraudProof:
    """A fraud-proof payload with a fixed proof hash."""
    return FraudProof(FraudStatus(status), b"\x07" * 32, accuser.peer_id)


def populate(ledger: Ledger) -> None:
    """Append one entry of every kind the owner writes, a received verdict, and a checkpoint."""
    ledger.record_success(PEER.peer_id)
    ledger.record_failure(PEER.peer_id, "timeout")
    ledger.record_latency(PEER.peer_id, 42)
    ledger.record_violation(PEER.peer_id, "bad receipt signature")
    ledger.append_signed(verdict(VERIFIER, PEER, "fail"))
    ledger.checkpoint()
    ledger.append(EntryKind.FRAUD_PROOF, PEER.peer_id, fraud_proof(PEER, VERIFIER))
    ledger.append(EntryKind.ACCUSATION_REFUTED, OTHER.peer_id,
                  {"accuser": VERIFIER.peer_id, "proof_hash": b"\x08" * 32})
    ledger.append(EntryKind.VERDICT, PEER.peer_id,
                  Verdict(VerdictOutcome.UNRESPONSIVE, {"step": 3}))
    ledger.append_signed(verdict(VERIFIER, OTHER, "pass", time_ms=T0 + 5))


def tamper(path: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    """Edit the ledger behind the program's back: drop the triggers, run SQL, commit."""
    connection = sqlite3.connect(path)
    try:
        for trigger in TRIGGERS:
            connection.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in statements:
            connection.execute(statement, params if "?" in statement else ())
        connection.commit()
    finally:
        connection.close()
