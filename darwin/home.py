"""A node's home directory: its persistent identity and its caches.

Rules:
- The identity is created once, on first start, and loaded on every later start: the key carries
  the node's reputation, so it is never overwritten or regenerated (a damaged key file is an
  error, not a reason to make a new one).
- The home directory is created private (0700); the key file is 0600, written once and never
  overwritten, and refused on load when group or others can read it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from darwin.protocol import Identity, IdentityFileError

__all__ = [
    "IDENTITY_FILE",
    "LEDGER_FILE",
    "load_identity",
    "load_or_create_identity",
    "model_cache_dir",
    "save_identity",
]

logger = logging.getLogger(__name__)

IDENTITY_FILE = "identity"
# The append-only ledger of every process of this home (specs/ledger.md).
LEDGER_FILE = "ledger.sqlite"
# An identity file is one short line; anything longer is not one.
_IDENTITY_MAX_BYTES = 256


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
            save_identity(Identity.generate(), path)
            logger.info("created a new node identity in %s", path)
        except FileExistsError:  # another process created it first; use that one
            pass
    return load_identity(path)


def model_cache_dir(home: Path) -> Path:
    """Where the node caches tensor digests of the checkpoints it serves (for model ids)."""
    return home / "cache"


def save_identity(identity: Identity, path: Path) -> None:
    """Write ``identity`` to a new file of mode 0600.

    Raises:
        FileExistsError: if ``path`` exists; an identity is never overwritten, since the key
            carries the node's reputation.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, identity.file_bytes())
    finally:
        os.close(descriptor)


def load_identity(path: Path) -> Identity:
    """Read an identity written by `save_identity`.

    Raises:
        IdentityFileError: if the file is missing, readable by group or others, or not
            exactly in the format `save_identity` writes.
    """
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            content = handle.read(_IDENTITY_MAX_BYTES + 1)
    except OSError as exc:
        raise IdentityFileError(f"cannot read identity file {path}: {exc.strerror}") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise IdentityFileError(f"identity file {path} is accessible by others; chmod 600 it")
    return Identity.from_file_bytes(content, f"identity file {path}")
