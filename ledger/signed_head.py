"""The signed head file: the latest checkpoint, kept beside the ledger as a witness.

Rules: ``<ledger>.head`` holds the wire form of the latest checkpoint entry. It is replaced
atomically and durably (write a temporary file, fsync, rename, fsync the directory) only after
the checkpoint has committed, so it never claims more than the ledger holds; ``verify_ledger``
reports a ledger shorter than its signed head as truncated.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .record import Entry

__all__ = ["head_file_path", "read_signed_head", "write_signed_head"]


def head_file_path(ledger_path: Path) -> Path:
    """Where the signed head of ``ledger_path`` is kept: ``<ledger>.head``."""
    return ledger_path.with_name(ledger_path.name + ".head")


def read_signed_head(ledger_path: Path) -> Entry | None:
    """The checkpoint entry stored in the signed head file, or None if there is no file.

    Raises:
        InvalidEntryError: if the file exists but does not hold a valid entry.
        OSError: if it cannot be read.
    """
    path = head_file_path(ledger_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return Entry.from_wire(data)


def write_signed_head(ledger_path: Path, entry: Entry) -> None:
    """Replace the signed head file atomically and durably (tmp, fsync, rename, fsync dir)."""
    path = head_file_path(ledger_path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(entry.to_wire())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
