"""darwin.ledger: the node's append-only, hash-chained ledger and the reputation derived from it.

``Ledger`` (``store.py``) keeps signed entries in SQLite; ``verify_ledger`` (``verify.py``)
recomputes the chain from the raw rows; ``reputation`` (``reputation.py``) is a pure function of
the entries, and ``ReputationState`` the same computation fed one entry at a time (live views).
It imports nothing of darwin but ``darwin.protocol``. The formats are in ``specs/ledger.md``;
the scoring rules and their constants in ``specs/reputation.md``.
"""

from __future__ import annotations

from .entries import (
    OWNER_KINDS,
    RECEIVABLE_KINDS,
    AccusationRefuted,
    Checkpoint,
    EntryKind,
    Failure,
    FraudProof,
    FraudStatus,
    Genesis,
    Latency,
    Payload,
    ProtocolViolation,
    Success,
    Verdict,
    VerdictOutcome,
)
from .errors import (
    CorruptLedgerError,
    DuplicateEntryError,
    InvalidEntryError,
    LedgerError,
    LedgerOwnerError,
)
from .record import Entry, Record
from .reputation import (
    DEFAULT_PARAMS,
    ReputationParams,
    ReputationState,
    Score,
    reputation,
    unknown_score,
    verification_rate,
    verifier_weight,
)
from .rows import read_entries
from .signed_head import head_file_path
from .store import Head, Ledger, LedgerConfig
from .verify import VerifyReport, verify_ledger

__all__ = [
    "DEFAULT_PARAMS",
    "OWNER_KINDS",
    "RECEIVABLE_KINDS",
    "AccusationRefuted",
    "Checkpoint",
    "CorruptLedgerError",
    "DuplicateEntryError",
    "Entry",
    "EntryKind",
    "Failure",
    "FraudProof",
    "FraudStatus",
    "Genesis",
    "Head",
    "InvalidEntryError",
    "Latency",
    "Ledger",
    "LedgerConfig",
    "LedgerError",
    "LedgerOwnerError",
    "Payload",
    "ProtocolViolation",
    "Record",
    "ReputationParams",
    "ReputationState",
    "Score",
    "Success",
    "Verdict",
    "VerdictOutcome",
    "VerifyReport",
    "head_file_path",
    "read_entries",
    "reputation",
    "unknown_score",
    "verification_rate",
    "verifier_weight",
    "verify_ledger",
]
