"""A ledger read without ever writing to it, while its owner may be appending.

Rules (``specs/explorer.md``):

* The file is opened read-only (``mode=ro``, ``query_only``: ``darwin.ledger.rows``); the
  owner's WAL journal lets it append meanwhile. Rows are rebuilt only through
  ``entry_from_row``, which validates every column, so nothing the file says is trusted unread.
* Every failure to read becomes one ``LedgerUnavailable`` whose message says what is wrong and
  what to do: the ledger is missing, empty, not a ledger (corrupt), or locked by another
  process (a writer holding an exclusive lock; a reader waits ``BUSY_TIMEOUT_MS`` at most).
* One connection, shared by the UI and its worker threads under a lock; each call is one short
  query (a page, the rows after a seq), so no caller holds it for long.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection
from pathlib import Path

from darwin.home import LEDGER_FILE
from darwin.ledger import Entry, EntryKind, InvalidEntryError
from darwin.ledger.rows import SELECT, entry_from_row, open_read_only

__all__ = ["BUSY_TIMEOUT_MS", "LedgerSource", "LedgerUnavailable"]

BUSY_TIMEOUT_MS = 500  # a reader never waits long: it says the ledger is locked instead


class LedgerUnavailable(Exception):
    """The ledger cannot be read; the message says why and what to do."""


class LedgerSource:
    """The entries of one ledger file, read on demand; use ``LedgerSource.open``."""

    def __init__(self, path: Path, connection: sqlite3.Connection, owner: str) -> None:
        self.path = path
        self.owner = owner  # the genesis signer
        self._conn = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, home: Path) -> LedgerSource:
        """Open ``<home>/ledger.sqlite`` read-only and read its genesis.

        Raises:
            LedgerUnavailable: the ledger is missing, empty, corrupt or locked.
        """
        path = Path(home) / LEDGER_FILE
        if not path.is_file():
            raise LedgerUnavailable(f"no ledger at {path}: is {home} the home of a node or a "
                                    f"client? (one is created on its first start)")
        try:
            connection = open_read_only(path, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise _unavailable(path, exc) from exc
        source = cls(path, connection, owner="")
        try:
            genesis = source.entries_after(0, limit=1)
        except LedgerUnavailable:
            connection.close()
            raise
        if not genesis:
            connection.close()
            raise LedgerUnavailable(f"{path} is empty: it holds no entries yet (its node has "
                                    f"not finished creating it)")
        if genesis[0].kind != EntryKind.GENESIS:
            connection.close()
            raise LedgerUnavailable(f"{path} does not start with a genesis entry: run "
                                    f"`darwin ledger verify --home {home}`")
        source.owner = genesis[0].signer
        return source

    def _query(self, sql: str, args: tuple[object, ...]) -> list[Entry]:
        try:
            with self._lock:
                rows = self._conn.execute(sql, args).fetchall()
            return [entry_from_row(row) for row in rows]
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from exc
        except InvalidEntryError as exc:
            raise LedgerUnavailable(f"an entry of {self.path} is invalid: {exc.reason}; run "
                                    f"`darwin ledger verify` to find the first bad one") from exc

    def entries_after(self, seq: int, *, limit: int) -> list[Entry]:
        """Up to ``limit`` entries with a seq above ``seq``, oldest first."""
        return self._query(f"{SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))

    def newest(self, *, before: int | None = None, limit: int,
               kinds: Collection[EntryKind] = ()) -> list[Entry]:
        """Up to ``limit`` entries below seq ``before`` (or the newest), newest first."""
        where = "WHERE seq < ?"
        args: list[object] = [before if before is not None else 2**63 - 1]
        if kinds:
            where += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args += [str(kind) for kind in sorted(kinds)]
        return self._query(f"{SELECT} {where} ORDER BY seq DESC LIMIT ?", (*args, limit))

    def about(self, peer: str) -> list[Entry]:
        """Every entry whose subject is ``peer``, oldest first (the subject index)."""
        return self._query(f"{SELECT} WHERE subject = ? ORDER BY seq", (peer,))

    def of_kinds(self, kinds: Collection[EntryKind]) -> list[Entry]:
        """Every entry of one of ``kinds``, oldest first."""
        marks = ", ".join("?" * len(kinds))
        return self._query(f"{SELECT} WHERE kind IN ({marks}) ORDER BY seq",
                           tuple(str(kind) for kind in sorted(kinds)))

    def count(self) -> int:
        """How many entries the ledger holds now."""
        try:
            with self._lock:
                return int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _unavailable(path: Path, exc: sqlite3.Error) -> LedgerUnavailable:
    """The clear message for an SQLite error on ``path``."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return LedgerUnavailable(f"{path} is locked by another process ({text}): try again "
                                 f"once it releases its exclusive lock")
    if "no such table" in text:
        return LedgerUnavailable(f"{path} is empty: it is an SQLite file without a ledger "
                                 f"table (its node has not finished creating it)")
    return LedgerUnavailable(f"{path} is not a readable ledger ({text}): it is damaged or "
                             f"not a ledger; `darwin ledger verify` names the first bad entry")

