"""Where ledger catch-up resumes with each peer: ``<home>/sync-cursors.json``.

Rules (normative text: ``specs/gossip.md`` §5):

- One cursor per responder: the ``next`` its last completed catch-up returned (a seq in the
  *responder's* ledger), so the next catch-up asks only for what was appended since.
- The file is local and small: at most ``max_peers`` cursors (the least recently set are
  dropped, so a forgotten peer is asked from 0 again), replaced atomically but not fsync'd:
  losing it only costs a catch-up from 0. A missing, unreadable or malformed file means every
  peer from 0 (logged), never an error.
- A responder that restarts its ledger under the same key is not noticed: what it appends
  below our cursor is missed from it (other peers still serve it).
- Blocking file I/O: call ``load`` and ``set`` from a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

__all__ = ["CURSORS_FILE", "SyncCursors"]

logger = logging.getLogger(__name__)

CURSORS_FILE = "sync-cursors.json"
_I64_MAX = 2**63 - 1


class SyncCursors:
    """Catch-up cursors per peer id, persisted in one JSON file."""

    def __init__(self, path: Path, cursors: dict[str, int], max_peers: int = 1024) -> None:
        self.path = path
        self.max_peers = max_peers
        self._cursors = cursors  # insertion order: least recently set first

    @classmethod
    def load(cls, home: Path, max_peers: int = 1024) -> SyncCursors:
        """The cursors kept in ``home`` (none when the file is missing or damaged)."""
        path = home / CURSORS_FILE
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path, {}, max_peers)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable catch-up cursors %s: %s", path, exc)
            return cls(path, {}, max_peers)
        if not isinstance(obj, dict) or not all(
                isinstance(peer, str) and type(seq) is int and 0 <= seq <= _I64_MAX
                for peer, seq in obj.items()):
            logger.warning("ignoring malformed catch-up cursors %s", path)
            return cls(path, {}, max_peers)
        return cls(path, dict(list(obj.items())[-max_peers:]), max_peers)

    def get(self, peer: str) -> int:
        """Where to resume with ``peer`` (0 for a peer never caught up from)."""
        return self._cursors.get(peer, 0)

    def set(self, peer: str, next_seq: int) -> None:
        """Remember ``next_seq`` for ``peer`` and save (a failed save is logged)."""
        self._cursors.pop(peer, None)
        self._cursors[peer] = next_seq
        while len(self._cursors) > self.max_peers:
            del self._cursors[next(iter(self._cursors))]
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_text(json.dumps(self._cursors), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("cannot save catch-up cursors to %s: %s", self.path, exc)
            tmp.unlink(missing_ok=True)
