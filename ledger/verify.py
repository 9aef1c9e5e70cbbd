"""Check a whole ledger file from its raw rows, trusting nothing the program wrote.

Rules:

* ``verify_ledger`` reads the rows with its own read-only SQLite connection, in ``seq`` order,
  and for each one checks: ``seq`` is the next integer; every column has its type and size; the
  payload is the canonical encoding of a valid payload of the kind; ``prev_hash`` is the
  recomputed hash of the entry before (the stored ``hash`` column is never trusted, only
  compared); entry 1 is a genesis and no other entry is; the owner's kinds are signed by the
  owner (the genesis signer); every entry the owner signed is anchored to ``prev_hash``; a
  checkpoint signs exactly the head before it; the signature verifies; no record appears twice;
  the stored hash equals the recomputed one.
* Then it compares the chain with every *signed head* it knows (the ``<ledger>.head`` file and
  any ``known_heads`` given, e.g. heads received from peers): each must be an owner-signed
  checkpoint present in the chain with the same hash. A head that names a seq beyond the last
  row means the tail was truncated.
* The report names the first bad entry (the lowest seq at which something is wrong) and why.
  What truncation can and cannot be detected is stated in ``specs/ledger.md``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from darwin.protocol import PeerId

from .entries import OWNER_KINDS, Checkpoint, EntryKind
from .errors import InvalidEntryError
from .record import GENESIS_PREV_HASH, Entry, entry_hash
from .rows import COLUMNS, entry_from_row, open_read_only
from .signed_head import read_signed_head

__all__ = ["VerifyReport", "verify_ledger"]


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``verify_ledger``."""

    path: Path
    ok: bool
    entries: int  # entries that verified, in order from seq 1 (all of them when ok)
    head_seq: int  # seq of the last entry that verified (0 if none)
    head_hash: bytes | None  # its recomputed hash
    owner: PeerId | None  # the genesis signer, if the genesis verified
    checkpoints: int  # checkpoint entries among those that verified
    signed_head_seq: int | None  # the highest signed head compared with the chain
    first_bad_seq: int | None  # the first bad entry; None when ok or not tied to an entry
    reason: str | None  # why the ledger is bad; None when ok

    def summary(self) -> str:
        """One line saying whether the ledger verified, and if not, where and why."""
        if self.ok:
            head = self.head_hash.hex() if self.head_hash is not None else "-"
            return (f"OK {self.entries} entries, head {self.head_seq} {head} "
                    f"(owner {self.owner}, {self.checkpoints} checkpoints)")
        where = f"entry {self.first_bad_seq}" if self.first_bad_seq is not None else "ledger"
        return f"BAD {where}: {self.reason} ({self.entries} entries verified before it)"

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view (hashes in hex)."""
        return {"path": str(self.path), "ok": self.ok, "entries": self.entries,
                "head_seq": self.head_seq,
                "head_hash": None if self.head_hash is None else self.head_hash.hex(),
                "owner": self.owner, "checkpoints": self.checkpoints,
                "signed_head_seq": self.signed_head_seq, "first_bad_seq": self.first_bad_seq,
                "reason": self.reason}


@dataclass
class _ChainCheck:
    """Walks the rows in order, keeping the recomputed chain state."""

    expected_owner: PeerId | None
    wanted_hashes: set[int]  # seqs named by signed heads: remember their hashes
    seq: int = 0
    prev_hash: bytes = GENESIS_PREV_HASH
    owner: PeerId | None = None
    checkpoints: int = 0
    seen: dict[tuple[str, bytes], int] = field(default_factory=dict)
    hashes: dict[int, bytes] = field(default_factory=dict)

    def step(self, row: tuple[object, ...]) -> str | None:
        """Check the next row; advance and return None if it is good, else say why not."""
        expected = self.seq + 1
        if row[0] != expected:
            return f"entry {expected} is missing (the next row has seq {row[0]!r})"
        try:
            entry = entry_from_row(row)
        except InvalidEntryError as exc:
            return f"malformed entry: {exc.reason}"
        reason = self._check_links(entry) or self._check_content(entry)
        if reason is not None:
            return reason
        computed = entry_hash(entry.seq, entry.record, self.prev_hash)
        if entry.hash != computed:
            return "the stored hash differs from the recomputed hash"
        self._advance(entry, computed)
        return None

    def _check_links(self, entry: Entry) -> str | None:
        if entry.prev_hash != self.prev_hash:
            return f"prev_hash does not chain to entry {entry.seq - 1}"
        if (entry.seq == 1) != (entry.kind == EntryKind.GENESIS):
            return "entry 1 must be the genesis, and only entry 1"
        if entry.seq == 1:
            if self.expected_owner is not None and entry.signer != self.expected_owner:
                return f"the genesis is signed by {entry.signer}, not by {self.expected_owner}"
            self.owner = entry.signer
        if entry.kind in OWNER_KINDS and entry.signer != self.owner:
            return f"a {entry.kind} entry must be signed by the owner {self.owner}"
        if entry.signer == self.owner and entry.anchor != self.prev_hash:
            return "the owner's entry is not anchored to the entry before it"
        return None

    def _check_content(self, entry: Entry) -> str | None:
        body = entry.body
        if isinstance(body, Checkpoint) and (body.head_seq, body.head_hash) != \
                (entry.seq - 1, self.prev_hash):
            return "the checkpoint does not sign the head before it"
        try:
            entry.record.check_signature()
        except InvalidEntryError as exc:
            return exc.reason
        first = self.seen.get((entry.signer, entry.signature))
        if first is not None:
            return f"duplicate of entry {first}"
        return None

    def _advance(self, entry: Entry, computed: bytes) -> None:
        self.seen[(entry.signer, entry.signature)] = entry.seq
        self.checkpoints += entry.kind == EntryKind.CHECKPOINT
        if entry.seq in self.wanted_hashes:
            self.hashes[entry.seq] = computed
        self.seq, self.prev_hash = entry.seq, computed


def _head_problem(head: Entry, check: _ChainCheck, complete: bool) -> tuple[int, str] | None:
    """Compare one signed head with the walked chain; (seq, reason) if they disagree."""
    what = f"the signed head at seq {head.seq}"
    if head.kind != EntryKind.CHECKPOINT or head.signer != check.owner:
        return head.seq, f"{what} is not a checkpoint signed by the owner"
    try:
        head.record.check_signature()
    except InvalidEntryError as exc:
        return head.seq, f"{what}: {exc.reason}"
    if head.seq > check.seq:
        if not complete:
            return None  # the walk stopped at a bad entry, which is reported instead
        return check.seq + 1, (f"truncated: {what} (hash {head.hash.hex()[:16]}…) names more "
                               f"entries than the ledger holds (it ends at seq {check.seq})")
    if check.hashes.get(head.seq) != head.hash:
        return head.seq, f"entry {head.seq} differs from {what}"
    return None


def verify_ledger(
    path: str | Path,
    *,
    expected_owner: PeerId | None = None,
    known_heads: Iterable[Entry] = (),
) -> VerifyReport:
    """Recompute and check the whole chain of the ledger at ``path``.

    Args:
        path: the SQLite ledger file.
        expected_owner: if given, the genesis must be signed by this peer id.
        known_heads: signed checkpoint entries learnt elsewhere (from peers, a backup), checked
            like the signed head file.

    Returns:
        The report; ``ok`` is False with ``first_bad_seq`` and ``reason`` on the first problem.

    Raises:
        FileNotFoundError: there is no file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ledger at {path}")
    heads = list(known_heads)
    problems: list[tuple[int | None, str]] = []
    try:  # read the head file first: it never claims more than what is committed before it
        signed_head = read_signed_head(path)
        if signed_head is not None:
            heads.append(signed_head)
    except (InvalidEntryError, OSError) as exc:
        problems.append((None, f"the signed head file is unreadable: {exc}"))
    check = _ChainCheck(expected_owner, {head.seq for head in heads})
    complete = _walk(path, check, problems)
    for head in heads:
        problem = _head_problem(head, check, complete)
        if problem is not None:
            problems.append(problem)
    return _report(path, check, heads, problems)


def _walk(path: Path, check: _ChainCheck, problems: list[tuple[int | None, str]]) -> bool:
    """Feed every row to ``check``; False (with a problem recorded) if it stopped early."""
    try:
        connection = open_read_only(path)
    except sqlite3.Error as exc:
        problems.append((None, f"cannot open the ledger: {exc}"))
        return False
    try:
        rows = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM entries ORDER BY seq")
        for row in rows:
            reason = check.step(row)
            if reason is not None:
                problems.append((check.seq + 1, reason))
                return False
    except sqlite3.Error as exc:
        problems.append((check.seq + 1, f"cannot read the ledger: {exc}"))
        return False
    finally:
        connection.close()
    if check.seq == 0:
        problems.append((1, "the ledger has no entries"))
        return False
    return True


def _report(path: Path, check: _ChainCheck, heads: list[Entry],
            problems: list[tuple[int | None, str]]) -> VerifyReport:
    tied = sorted((seq, reason) for seq, reason in problems if seq is not None)
    untied = [(seq, reason) for seq, reason in problems if seq is None]
    first: tuple[int | None, str] | None = (tied or untied or [None])[0]
    return VerifyReport(
        path=path, ok=first is None, entries=check.seq, head_seq=check.seq,
        head_hash=check.prev_hash if check.seq else None, owner=check.owner,
        checkpoints=check.checkpoints,
        signed_head_seq=max((head.seq for head in heads), default=None),
        first_bad_seq=None if first is None else first[0],
        reason=None if first is None else first[1],
    )
