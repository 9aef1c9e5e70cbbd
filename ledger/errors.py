"""The exceptions of the ledger.

Rules:

* ``LedgerError`` is the base of every error ``darwin.ledger`` raises on purpose.
* ``InvalidEntryError``: an entry (ours or a peer's) breaks a schema, a size bound or its
  signature; nothing was appended. For a received record this is the sender's fault.
* ``DuplicateEntryError``: the record is already in the ledger (gossip replays land here); it
  is not a fault of the record, so callers count it apart.
* ``LedgerOwnerError``: the ledger file belongs to another identity.
* ``CorruptLedgerError``: a stored row cannot be read back as an entry; run ``verify_ledger``
  to find the first bad one.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error that ``darwin.ledger`` raises on purpose.

    Attributes:
        reason: a short human-readable statement of what was wrong.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidEntryError(LedgerError):
    """An entry or record breaks its schema, a size bound or its signature."""


class DuplicateEntryError(LedgerError):
    """The record is already in the ledger."""


class LedgerOwnerError(LedgerError):
    """The ledger was created by another identity than the one opening it."""


class CorruptLedgerError(LedgerError):
    """A stored row does not decode as a valid entry."""
