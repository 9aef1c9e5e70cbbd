"""A small ledger that shows every part of the explorer, and the app over it, headless.

Owner's view: HONEST served 12 requests (trusted), VERIFIER 15 and signs verdicts about
HONEST (3 pass, 1 fail) and CHEATER (2 fail); CHEATER is banned by a confirmed fraud proof
that VERIFIER raised; LIAR falsely accused HONEST (refuted); NEWCOMER has one success
(probation). Entry times are T0 + 1, T0 + 2...; the scores are for NOW.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec

from ledger_support import OWNER, T0, identity, open_ledger, verdict

from darwin.explorer.app import ExplorerApp
from darwin.explorer.source import LedgerSource
from darwin.home import LEDGER_FILE
from darwin.ledger import AccusationRefuted, EntryKind, FraudProof, FraudStatus, Ledger

HONEST, VERIFIER, CHEATER = identity("honest"), identity("verifier"), identity("cheater")
LIAR, NEWCOMER = identity("liar"), identity("newcomer")
NOW = T0 + 120_000
CONFIRMED_HASH, REFUTED_HASH = b"\x07" * 32, b"\x08" * 32


def write_entries(ledger: Ledger) -> None:
    for _ in range(12):
        ledger.record_success(HONEST.peer_id)
    for latency in (30, 40, 50):
        ledger.record_latency(HONEST.peer_id, latency)
    for _ in range(15):
        ledger.record_success(VERIFIER.peer_id)
    ledger.record_failure(LIAR.peer_id, "timeout")
    clock = T0 + 100
    for outcome in ("pass", "pass", "pass", "fail"):
        clock += 1
        ledger.append_signed(verdict(VERIFIER, HONEST, outcome, time_ms=clock, refs={"n": clock}))
    for _ in range(2):
        clock += 1
        ledger.append_signed(verdict(VERIFIER, CHEATER, "fail", time_ms=clock, refs={"n": clock}))
    ledger.checkpoint()
    ledger.append(EntryKind.FRAUD_PROOF, CHEATER.peer_id,
                  FraudProof(FraudStatus.CONFIRMED, CONFIRMED_HASH, VERIFIER.peer_id))
    ledger.append(EntryKind.ACCUSATION_REFUTED, HONEST.peer_id,
                  AccusationRefuted(LIAR.peer_id, REFUTED_HASH))
    ledger.record_success(NEWCOMER.peer_id)


def build_home(home: Path) -> Path:
    """A home with the ledger described above (closed: its last entry is a checkpoint)."""
    home.mkdir(parents=True)
    with open_ledger(home / LEDGER_FILE) as ledger:
        write_entries(ledger)
    return home


def explorer(home: Path, *, model: Path | None = None) -> ExplorerApp:
    """The app over ``home``, scoring at NOW, polling only when told to."""
    return ExplorerApp(LedgerSource.open(home), home=home, model=model, now_ms=NOW,
                       poll_interval_s=None)


P = ParamSpec("P")


def headless(scenario: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """A test that runs an async Pilot scenario on asyncio (Textual's loop; the suite's async
    mode is trio's, so the scenario gets a loop of its own)."""

    @functools.wraps(scenario)
    def test(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(asyncio.wait_for(scenario(*args, **kwargs), timeout=120))

    return test


__all__ = ["CHEATER", "CONFIRMED_HASH", "HONEST", "LIAR", "NEWCOMER", "NOW", "OWNER",
           "REFUTED_HASH", "VERIFIER", "build_home", "explorer", "headless", "write_entries"]
