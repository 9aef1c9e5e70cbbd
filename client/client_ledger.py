"""The client's own ledger: what it saw of each node, and the standing it derives from that.

Rules (``specs/ledger.md``, ``specs/reputation.md``):
- The ledger lives at ``<home>/ledger.sqlite`` and is signed with the client's identity.
- After a generation the client records what it saw (``specs/ledger.md`` §7), all at once when
  the session has ended: one success for every node that signed receipts in the trace, one
  protocol violation for every node excluded for its own protocol violation and one failure
  for every other node it failed over from (with the reason), and one latency per node: the
  median of its hop's step times in the session.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from darwin.gossip.fraud_notices import FraudNotices, ProofCheck
from darwin.gossip.ledger_sync import SyncConfig, catch_up_with
from darwin.gossip.proof_store import ProofStore
from darwin.gossip.sync_cursors import SyncCursors
from darwin.home import LEDGER_FILE
from darwin.ledger import Ledger
from darwin.ledger.entries import MAX_REASON_CHARS
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


@dataclass(frozen=True)
class Observations:
    """What one generation showed of the nodes it used (``specs/ledger.md`` §7)."""

    served: Sequence[str]  # the node of every receipt in the trace (repeats are one success)
    failed: Mapping[str, str] = field(default_factory=dict)  # peer -> reason, not its fault
    violations: Mapping[str, str] = field(default_factory=dict)  # peer -> what it broke
    latencies_ms: Mapping[str, int] = field(default_factory=dict)  # peer -> median step time


def record_generation(home: Path, identity: Identity, seen: Observations) -> None:
    """Append what one generation showed, once, after the session ended (never per step).

    A peer in ``seen.violations`` gets a ``protocol_violation`` entry and no ``failure``: one
    fault is counted once, at the violation's weight.
    """
    home.mkdir(parents=True, exist_ok=True)
    with Ledger.open(home / LEDGER_FILE, identity) as ledger:
        for peer in dict.fromkeys(seen.served):
            ledger.record_success(peer)
        for peer, reason in seen.failed.items():
            if peer not in seen.violations:
                ledger.record_failure(peer, reason[:MAX_REASON_CHARS])
        for peer, reason in seen.violations.items():
            ledger.record_violation(peer, reason[:MAX_REASON_CHARS])
        for peer, latency_ms in seen.latencies_ms.items():
            ledger.record_latency(peer, latency_ms)


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
