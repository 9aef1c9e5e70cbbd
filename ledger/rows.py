"""The ``entries`` table's rows: their columns, and reading them without a writer.

Rules: a row is rebuilt into an ``Entry`` only through ``entry_from_row``, which validates every
column (types, sizes, payload schema) and trusts none; read-only access never creates a file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import CorruptLedgerError, InvalidEntryError
from .record import Entry, Record

__all__ = ["COLUMNS", "SELECT", "entry_from_row", "entry_row", "open_read_only", "read_entries"]

COLUMNS = ("seq", "kind", "subject", "payload", "signer", "signature", "time_ms", "anchor",
           "prev_hash", "hash")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM entries"


def entry_from_row(row: tuple[Any, ...]) -> Entry:
    """Rebuild an entry from a stored row (in ``COLUMNS`` order), validating every field.

    Raises:
        InvalidEntryError: if a column has the wrong type or the entry is invalid.
    """
    seq, kind, subject, payload, signer, signature, time_ms, anchor, prev_hash, hash_ = row
    record = Record(kind, subject, payload, signer, time_ms, anchor, signature)
    return Entry(seq, record, prev_hash, hash_)


def entry_row(entry: Entry) -> tuple[object, ...]:
    """The row that stores ``entry``, in ``COLUMNS`` order."""
    return (entry.seq, str(entry.kind), entry.subject, entry.payload, entry.signer,
            entry.signature, entry.time_ms, entry.anchor, entry.prev_hash, entry.hash)


def open_read_only(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection that can only read the existing database at ``path`` (it creates nothing).

    ``check_same_thread=False`` lets threads share it (the caller serialises their calls).

    Raises:
        sqlite3.Error: the file is missing or not a database.
    """
    connection = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                                 check_same_thread=check_same_thread)
    connection.execute("PRAGMA query_only = ON")
    return connection


def read_entries(path: Path) -> list[Entry]:
    """Every entry of the ledger at ``path``, read without opening it for writing.

    For readers that hold no identity (the CLI, the explorer); a node uses ``Ledger.entries``.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        CorruptLedgerError: the file cannot be read as a ledger, or a row does not decode.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no ledger at {path}")
    try:
        connection = open_read_only(path)
    except sqlite3.Error as exc:
        raise CorruptLedgerError(f"cannot read {path}: {exc}") from exc
    try:
        rows = connection.execute(f"{SELECT} ORDER BY seq").fetchall()
        return [entry_from_row(row) for row in rows]
    except sqlite3.Error as exc:
        raise CorruptLedgerError(f"cannot read {path}: {exc}") from exc
    except InvalidEntryError as exc:
        raise CorruptLedgerError(f"an entry of {path} is invalid: {exc.reason}; "
                                 f"run `darwin ledger verify`") from exc
    finally:
        connection.close()
