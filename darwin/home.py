"""A node's home directory: its persistent identity and its caches.

Rules:
- The identity is created once, on first start, and loaded on every later start: the key carries
  the node's reputation, so it is never overwritten or regenerated (a damaged key file is an
  error, not a reason to make a new one).
- The home directory is created private (0700); the key file is 0600 (``Identity.save``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from darwin.protocol import Identity

__all__ = ["IDENTITY_FILE", "LEDGER_FILE", "load_or_create_identity", "model_cache_dir"]

logger = logging.getLogger(__name__)

IDENTITY_FILE = "identity"
# The append-only ledger of every process of this home (specs/ledger.md).
LEDGER_FILE = "ledger.sqlite"


def load_or_create_identity(home: Path) -> Identity:
    """The node's identity stored in ``home``, generated and saved there on first use.

    Raises:
        IdentityFileError: the key file exists but is unreadable, malformed or not private.
        OSError: ``home`` cannot be created or written.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / IDENTITY_FILE
    if not path.exists():
        try:
            Identity.generate().save(path)
            logger.info("created a new node identity in %s", path)
        except FileExistsError:  # another process created it first; use that one
            pass
    return Identity.load(path)


def model_cache_dir(home: Path) -> Path:
    """Where the node caches tensor digests of the checkpoints it serves (for model ids)."""
    return home / "cache"
