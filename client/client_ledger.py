"""The client's own ledger: what it saw of each node, and the standing it derives from that.

Rules (DESIGN.md, "Ledger and reputation"; issue 5, "Clients have ledgers too"):
- The ledger lives at ``<home>/ledger.sqlite`` and is signed with the client's identity.
- After a generation the client records one success for every node that signed receipts in the
  verified trace and one failure for every node it had to fail over from, with the reason.
- Routing reads the standing the ledger yields (`standing`): trust, ban, probation.
- Before routing, `darwin submit` catches up (`catch_up_from`, ``/darwin/ledger-sync/1``) from
  at most ``CATCH_UP_PEERS`` connected nodes, bounded by ``CATCH_UP_TIMEOUT`` seconds in all,
  so verdicts it missed while offline land in its ledger (each record checked as gossip would)
  and its standing reflects them. A peer that fails is skipped (logged). A fraud-proof
  notice is handled as a node handles one (`darwin.gossip.fraud_notices`): the proof is fetched
  from the peer (``/darwin/proof/1``), re-checked with the client's checkpoint and recorded
  (``fraud_proof`` confirmed bans the subject; ``accusation_refuted`` penalises the accuser).
  It resumes with each peer where its last completed catch-up from that peer ended (cursors
  in ``<home>/sync-cursors.json``, `darwin.gossip.sync_cursors`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import trio

from darwin.gossip.fraud_notices import FraudNotices, ProofCheck
from darwin.gossip.ledger_sync import SyncConfig, catch_up_with
from darwin.gossip.proof_store import ProofStore
from darwin.gossip.sync_cursors import SyncCursors
from darwin.home import LEDGER_FILE
from darwin.ledger import Ledger
from darwin.ledger.reputation import Score, reputation
from darwin.net.host import Host
from darwin.protocol import Identity, PeerId

logger = logging.getLogger(__name__)

CATCH_UP_PEERS = 2  # nodes asked per submit: a responder can withhold, so more than one
CATCH_UP_TIMEOUT = 10.0  # seconds for the whole catch-up; routing goes on after it
_SYNC = SyncConfig(timeout=5.0, max_pages=4)


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


async def catch_up_from(host: Host, home: Path, identity: Identity, peers: Sequence[str],
                        check: ProofCheck, timeout: float = CATCH_UP_TIMEOUT) -> int:
    """Take in the verdicts the first ``CATCH_UP_PEERS`` of ``peers`` hold; how many were new.

    Fraud-proof notices among them are fetched, re-checked with ``check`` (see
    ``darwin.gossip.fraud_notices.proof_checker``) and recorded, one at a time. Failures (a peer
    that does not answer, refuses, or breaks the protocol) are logged at debug and skipped;
    the whole call returns within ``timeout`` seconds.
    """
    home.mkdir(parents=True, exist_ok=True)
    appended = 0
    with Ledger.open(home / LEDGER_FILE, identity) as ledger, trio.move_on_after(timeout):
        notices = await trio.to_thread.run_sync(FraudNotices.open, host, ledger,
                                                ProofStore.in_home(home), check)
        cursors = await trio.to_thread.run_sync(SyncCursors.load, home)
        appended = await catch_up_with(host, list(peers)[:CATCH_UP_PEERS], ledger, cursors,
                                       _SYNC, on_fraud_notice=notices.handle)
    return appended
