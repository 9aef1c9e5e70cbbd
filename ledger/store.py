"""The node's local, append-only, hash-chained ledger in SQLite.

Rules (normative layout in ``specs/ledger.md``):

* One table, ``entries``; ``seq`` is contiguous from 1 and entry 1 is the genesis, signed by the
  owner, so a ledger names its owner. Triggers refuse UPDATE and DELETE, and any INSERT that is
  not ``max(seq) + 1``.
* Durability: WAL journal, ``synchronous=FULL``; every append is one ``BEGIN IMMEDIATE``
  transaction that reads the head, signs and inserts; when ``append`` returns, the entry is
  committed and survives SIGKILL (and power loss, as far as the disk honours fsync). Appends from
  threads are serialised by a lock, appends from other processes by SQLite's write lock.
* Own records are anchored to the previous hash and signed by the owner (``append``); records
  received from others (verdicts) go through ``append_signed``, which refuses the owner's own
  records, checks the signature first and refuses duplicates.
* A checkpoint entry signs the head; after it commits, it is also written atomically to the
  *signed head file* ``<ledger>.head`` so ``verify_ledger`` can detect a truncated tail. The file
  never claims more than what was committed (it is written after the commit).
* Rows are validated when read back (``CorruptLedgerError``); the full chain check is
  ``darwin.ledger.verify.verify_ledger``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlite_utils

from darwin.protocol import Identity, PeerId

from .entries import (
    RECEIVABLE_KINDS,
    Checkpoint,
    EntryKind,
    Failure,
    Genesis,
    Latency,
    Payload,
    ProtocolViolation,
    Success,
    parse_kind,
)
from .errors import (
    CorruptLedgerError,
    DuplicateEntryError,
    InvalidEntryError,
    LedgerError,
    LedgerOwnerError,
)
from .record import GENESIS_PREV_HASH, Entry, Record
from .rows import COLUMNS, SELECT, entry_from_row, entry_row
from .signed_head import write_signed_head

__all__ = ["Head", "Ledger", "LedgerConfig", "wall_clock_ms"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_PAGE = 512
_TRIGGERS = (
    """CREATE TRIGGER entries_refuse_update BEFORE UPDATE ON entries
       BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER entries_refuse_delete BEFORE DELETE ON entries
       BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only: DELETE refused'); END""",
    """CREATE TRIGGER entries_contiguous BEFORE INSERT ON entries
       WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM entries)
       BEGIN SELECT RAISE(ABORT, 'ledger entries are appended at max(seq) + 1 only'); END""",
)


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch, from the system clock."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class LedgerConfig:
    """How a ledger is kept; one per node, passed whole."""

    # Appends between automatic checkpoints (each also rewrites the signed head file); it bounds
    # how many trailing entries a truncation can remove undetected. 0 disables them.
    checkpoint_every: int = 64
    # Whether ``close`` signs a checkpoint when entries were appended since the last one.
    checkpoint_on_close: bool = True
    # How long a writer waits for another process's write transaction, in milliseconds.
    busy_timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0 or self.busy_timeout_ms < 0:
            raise ValueError("LedgerConfig bounds must be non-negative")


@dataclass(frozen=True)
class Head:
    """The last entry's position and hash."""

    seq: int
    hash: bytes


class Ledger:
    """An open ledger owned by one identity. Thread-safe; use as a context manager."""

    def __init__(self, path: Path, identity: Identity, config: LedgerConfig,
                 clock: Callable[[], int], connection: sqlite3.Connection) -> None:
        """Use ``Ledger.open``."""
        self.path = path
        self.identity = identity
        self.config = config
        self._clock = clock
        self._conn = connection
        self._lock = threading.RLock()
        self._since_checkpoint = 0
        self._closed = False

    @property
    def owner(self) -> PeerId:
        """The peer id that owns (and signs) this ledger."""
        return self.identity.peer_id

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        identity: Identity,
        config: LedgerConfig | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> Ledger:
        """Open the ledger at ``path``, creating it (with its genesis entry) if absent.

        Args:
            path: the SQLite file.
            identity: the owner; signs every own entry.
            config: how the ledger is kept.
            clock: milliseconds since the epoch, for entry times (simulations pass their own).

        Raises:
            LedgerOwnerError: the file's genesis was signed by another identity.
            CorruptLedgerError: the file is not a ledger of a known schema version.
            sqlite3.Error: the file cannot be opened.
        """
        config = config or LedgerConfig()
        connection = sqlite3.connect(Path(path), isolation_level=None, check_same_thread=False,
                                     timeout=config.busy_timeout_ms / 1000)
        try:
            ledger = cls(Path(path), identity, config, clock, connection)
            ledger._prepare()
        except BaseException:
            connection.close()
            raise
        return ledger

    def _prepare(self) -> None:
        db = sqlite_utils.Database(self._conn, recursive_triggers=True)
        db.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_ms)}")
        db.enable_wal()
        db.execute("PRAGMA synchronous = FULL")
        with self._transaction():
            if "entries" not in db.table_names():
                self._create_schema(db)
        try:
            self._check_existing()
        except sqlite3.DatabaseError as exc:
            raise CorruptLedgerError(f"{self.path} is not a readable ledger: {exc}") from exc

    def _check_existing(self) -> None:
        """Check the schema version and the owner; count entries since the last checkpoint."""
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise CorruptLedgerError(f"{self.path} has schema version {version}")
        genesis = self._entry_at(1)
        if genesis is None or genesis.kind != EntryKind.GENESIS:
            raise CorruptLedgerError(f"{self.path} has no genesis entry")
        if genesis.signer != self.owner:
            raise LedgerOwnerError(f"{self.path} belongs to {genesis.signer}, not {self.owner}")
        row = self._conn.execute(
            "SELECT COALESCE(MAX(seq), 1) FROM entries WHERE kind IN ('checkpoint', 'genesis')"
        ).fetchone()
        self._since_checkpoint = self.head().seq - int(row[0])

    def _create_schema(self, db: sqlite_utils.Database) -> None:
        """Create the table, its triggers and the genesis entry (inside a transaction)."""
        db.table("entries").create(
            {"seq": int, "kind": str, "subject": str, "payload": bytes, "signer": str,
             "signature": bytes, "time_ms": int, "anchor": bytes, "prev_hash": bytes,
             "hash": bytes},
            pk="seq", not_null=set(COLUMNS) - {"seq"}, strict=True,
        )
        db.execute("CREATE INDEX entries_by_subject ON entries (subject, seq)")
        db.execute("CREATE INDEX entries_by_signature ON entries (signature)")
        for trigger in _TRIGGERS:
            db.execute(trigger)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        record = Record.sign(self.identity, EntryKind.GENESIS, "", Genesis(),
                             time_ms=self._clock(), anchor=GENESIS_PREV_HASH)
        self._insert(Entry.chain(1, record, GENESIS_PREV_HASH))
        logger.info("created ledger %s for %s", self.path, self.owner)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One IMMEDIATE transaction: committed on success, rolled back on any error."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _insert(self, entry: Entry) -> None:
        placeholders = ", ".join("?" * len(COLUMNS))
        self._conn.execute(f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                           entry_row(entry))

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError(f"ledger {self.path} is closed")

    def head(self) -> Head:
        """The position and hash of the last entry."""
        with self._lock:
            self._check_open()
            row = self._conn.execute(
                "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            raise CorruptLedgerError(f"{self.path} has no entries")
        return Head(int(row[0]), bytes(row[1]))

    def _append_own(self, kind: EntryKind, subject: str, payload: Payload | dict[str, object],
                    time_ms: int | None) -> Entry:
        """Sign a record anchored to the current head and append it, in one transaction."""
        with self._lock:
            self._check_open()
            with self._transaction():
                head = self.head()
                record = Record.sign(self.identity, kind, subject, payload,
                                     time_ms=self._clock() if time_ms is None else time_ms,
                                     anchor=head.hash)
                entry = Entry.chain(head.seq + 1, record, head.hash)
                self._insert(entry)
            return entry

    def append(self, kind: EntryKind | str, subject: str,
               payload: Payload | dict[str, object], *, time_ms: int | None = None) -> Entry:
        """Append an entry signed by the owner; it is committed when this returns.

        Args:
            kind: any kind but genesis and checkpoint (use ``checkpoint``).
            subject: the peer id the entry is about.
            payload: the typed payload or a map of its fields.
            time_ms: the entry's time; the ledger's clock when None.

        Raises:
            InvalidEntryError: the kind, subject or payload is invalid; nothing was appended.
            LedgerError: the ledger is closed.
            sqlite3.Error: the database failed; nothing was appended.
        """
        kind = parse_kind(kind)
        if kind in (EntryKind.GENESIS, EntryKind.CHECKPOINT):
            raise InvalidEntryError(f"{kind} entries are written by the ledger itself")
        with self._lock:
            entry = self._append_own(kind, subject, payload, time_ms)
            self._count_append()
        return entry

    def _count_append(self) -> None:
        """Count one appended entry; sign a checkpoint every ``checkpoint_every``."""
        self._since_checkpoint += 1
        every = self.config.checkpoint_every
        if every and self._since_checkpoint >= every:
            self.checkpoint()

    def append_signed(self, item: Record | Entry) -> Entry:
        """Append a record signed by someone else (a verdict from gossip or catch-up).

        The record keeps its signer's signature; its signature is checked before anything is
        written. An ``Entry`` from another ledger is accepted for its record. The owner's own
        verdicts are written with ``append`` (anchored), then passed on as ``entry.record``.

        Raises:
            InvalidEntryError: the kind may not be received, the record is the owner's own, or
                the signature does not verify.
            DuplicateEntryError: the same record is already in the ledger.
            LedgerError: the ledger is closed.
        """
        record = item.record if isinstance(item, Entry) else item
        if record.kind not in RECEIVABLE_KINDS:
            raise InvalidEntryError(f"{record.kind} entries are only written by the owner")
        if record.signer == self.owner:
            raise InvalidEntryError("the owner's own records are written with append, which "
                                    "anchors them to the chain")
        record.check_signature()
        with self._lock:
            self._check_open()
            with self._transaction():
                if self._find_signature(record) is not None:
                    raise DuplicateEntryError(f"record from {record.signer} is already in "
                                              f"the ledger")
                head = self.head()
                entry = Entry.chain(head.seq + 1, record, head.hash)
                self._insert(entry)
            self._count_append()
        return entry

    def _find_signature(self, record: Record) -> int | None:
        row = self._conn.execute("SELECT seq FROM entries WHERE signature = ? AND signer = ?",
                                 (record.signature, record.signer)).fetchone()
        return None if row is None else int(row[0])

    def contains(self, record: Record) -> bool:
        """Whether ``record`` (same signer and signature) is already in the ledger."""
        with self._lock:
            self._check_open()
            return self._find_signature(record) is not None

    def checkpoint(self) -> Entry:
        """Append a checkpoint signing the current head, then write the signed head file.

        Raises:
            LedgerError: the ledger is closed.
            OSError: the head file could not be written (the checkpoint entry is committed).
        """
        with self._lock:
            self._check_open()
            with self._transaction():
                head = self.head()
                payload = Checkpoint(head_seq=head.seq, head_hash=head.hash)
                record = Record.sign(self.identity, EntryKind.CHECKPOINT, "", payload,
                                     time_ms=self._clock(), anchor=head.hash)
                entry = Entry.chain(head.seq + 1, record, head.hash)
                self._insert(entry)
            self._since_checkpoint = 0
            write_signed_head(self.path, entry)
        logger.debug("checkpoint of %s at seq %d", self.path, entry.seq)
        return entry

    def _entry_at(self, seq: int) -> Entry | None:
        row = self._conn.execute(f"{SELECT} WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else self._decode(row)

    def _decode(self, row: tuple[Any, ...]) -> Entry:
        try:
            return entry_from_row(row)
        except InvalidEntryError as exc:
            raise CorruptLedgerError(f"entry {row[0]} of {self.path} is invalid: {exc.reason}; "
                                     f"run `darwin ledger verify`") from exc

    def entries(self, since: int = 0, *,
                kinds: Collection[EntryKind] | None = None) -> Iterator[Entry]:
        """The entries with ``seq > since``, in order, read in pages.

        Args:
            since: the last seq the caller already has (0 for all).
            kinds: only these kinds, if given.

        Raises:
            CorruptLedgerError: a stored row does not decode as a valid entry.
        """
        wanted = None if kinds is None else sorted(str(parse_kind(kind)) for kind in kinds)
        last = since
        while True:
            query = f"{SELECT} WHERE seq > ?"
            args: list[object] = [last]
            if wanted is not None:
                query += f" AND kind IN ({', '.join('?' * len(wanted))})"
                args += wanted
            with self._lock:
                self._check_open()
                rows = self._conn.execute(f"{query} ORDER BY seq LIMIT {_PAGE}", args).fetchall()
            for row in rows:
                yield self._decode(row)
            if len(rows) < _PAGE:
                return
            last = int(rows[-1][0])

    def record_success(self, peer: str, *, time_ms: int | None = None) -> Entry:
        """Record that ``peer`` served a request correctly."""
        return self.append(EntryKind.SUCCESS, peer, Success(), time_ms=time_ms)

    def record_failure(self, peer: str, reason: str, *, time_ms: int | None = None) -> Entry:
        """Record that ``peer`` failed a request, and why."""
        return self.append(EntryKind.FAILURE, peer, Failure(reason), time_ms=time_ms)

    def record_latency(self, peer: str, latency_ms: int, *, time_ms: int | None = None) -> Entry:
        """Record how long one request to ``peer`` took."""
        return self.append(EntryKind.LATENCY, peer, Latency(latency_ms), time_ms=time_ms)

    def record_violation(self, peer: str, reason: str, *, time_ms: int | None = None) -> Entry:
        """Record that ``peer`` broke the protocol, and how."""
        return self.append(EntryKind.PROTOCOL_VIOLATION, peer, ProtocolViolation(reason),
                           time_ms=time_ms)

    def close(self) -> None:
        """Sign a final checkpoint (if configured and needed) and close the database."""
        with self._lock:
            if self._closed:
                return
            try:
                if self.config.checkpoint_on_close and self._since_checkpoint > 0:
                    self.checkpoint()
            finally:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
