"""Fraud proofs kept by content: ``<home>/fraud-proofs/<proof_hash hex>.proof``.

Rules (normative text: ``specs/gossip.md`` section 6):

- A proof's file is named by the hash of its bytes (``proof_hash``); a ledger's
  ``fraud_proof`` and ``accusation_refuted`` entries name the same hash, so whoever holds the
  entry can serve the bytes over ``/darwin/proof/1``.
- Writing is atomic and durable (temporary file, fsync, rename, fsync the directory): a
  reader never sees half a proof, even across a crash. Writing a proof already held is a
  no-op, so concurrent writers of the same proof agree.
- Sizes are bounded: ``put`` refuses more than ``max_bytes``; ``get`` reads at most its limit
  plus one byte and re-hashes what it read, so a damaged or swapped file is never returned
  (it is logged and reported as absent).
- Every method blocks on the file system: call it from a worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from darwin.protocol import CHALLENGE_LIMITS
from darwin.protocol.ids import DIGEST_SIZE
from darwin.protocol.proof_request import proof_hash

__all__ = ["MAX_STORED_PROOF_BYTES", "PROOFS_DIR", "ProofStore", "ProofTooLarge"]

logger = logging.getLogger(__name__)

PROOFS_DIR = "fraud-proofs"
# A proof is a challenge plus a reveal: nothing larger can decode as one.
MAX_STORED_PROOF_BYTES = CHALLENGE_LIMITS.max_message_bytes
_SUFFIX = ".proof"


class ProofTooLarge(ValueError):
    """A proof is larger than the store keeps."""


class ProofStore:
    """A directory of fraud proofs named by their hash."""

    def __init__(self, directory: Path, max_bytes: int = MAX_STORED_PROOF_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    @classmethod
    def in_home(cls, home: Path) -> ProofStore:
        """The store of a node's or client's home directory."""
        return cls(home / PROOFS_DIR)

    def path(self, digest: bytes) -> Path:
        """Where the proof named ``digest`` is (or would be) kept.

        Raises:
            ValueError: ``digest`` is not a 32-byte hash.
        """
        if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
            raise ValueError(f"a proof hash is {DIGEST_SIZE} bytes")
        return self.directory / f"{digest.hex()}{_SUFFIX}"

    def contains(self, digest: bytes) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes) -> bytes:
        """Keep ``data`` (an encoded proof) under its hash; return the hash.

        Raises:
            ProofTooLarge: ``data`` is over ``max_bytes``.
            OSError: the directory or the file cannot be written.
        """
        if len(data) > self.max_bytes:
            raise ProofTooLarge(f"a proof of {len(data)} bytes is over {self.max_bytes}")
        digest = proof_hash(data)
        path = self.path(digest)
        if path.is_file():
            return digest
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with tmp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_directory(self.directory)
        return digest

    def get(self, digest: bytes, max_bytes: int | None = None) -> bytes | None:
        """The proof named ``digest``, or None if it is absent, over the limit or damaged.

        Args:
            max_bytes: the most to read (default ``self.max_bytes``).

        Raises:
            ValueError: ``digest`` is not a 32-byte hash.
            OSError: the file exists but cannot be read.
        """
        limit = self.max_bytes if max_bytes is None else max_bytes
        path = self.path(digest)
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except FileNotFoundError:
            return None
        if len(data) > limit:
            logger.debug("proof %s is over %d bytes: not read", digest.hex(), limit)
            return None
        if proof_hash(data) != digest:
            logger.warning("proof file %s does not hash to its name: ignored", path)
            return None
        return data


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
