"""The client's own ledger: what it saw of each node, and the standing it derives from that.

Rules (DESIGN.md, "Ledger and reputation"; issue 5, "Clients have ledgers too"):
- The ledger lives at ``<home>/ledger.sqlite`` and is signed with the client's identity.
- After a generation the client records one success for every node that signed receipts in the
  verified trace and one failure for every node it had to fail over from, with the reason.
- Routing reads the standing the ledger yields (`standing`): trust, ban, probation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from darwin.ledger import Ledger
from darwin.ledger.reputation import Score, reputation
from darwin.protocol import Identity, PeerId

LEDGER_FILE = "ledger.sqlite"


def standing(home: Path, identity: Identity) -> dict[PeerId, Score]:
    """Every peer's score in the client's ledger (empty when there is none yet)."""
    path = home / LEDGER_FILE
    if not path.exists():
        return {}
    with Ledger.open(path, identity) as ledger:
        return reputation(ledger.entries(), now_ms=time.time_ns() // 1_000_000,
                          owner=identity.peer_id)


def record_generation(home: Path, identity: Identity, served: Iterable[str],
                      failed: Mapping[str, str]) -> None:
    """Append what one generation showed: who served it, and who failed (peer -> reason)."""
    home.mkdir(parents=True, exist_ok=True)
    with Ledger.open(home / LEDGER_FILE, identity) as ledger:
        for peer in dict.fromkeys(served):
            ledger.record_success(peer)
        for peer, reason in failed.items():
            ledger.record_failure(peer, reason[:200])
