"""What the ``darwin ledger ...`` and ``darwin reputation`` commands run.

Rules:

* Each function takes the node's home directory (the ledger is ``<home>/ledger.sqlite``), prints
  its result (a line or a rich table, or one JSON document with ``json=True``) and returns an
  exit code: 0 done, 1 the ledger is bad, 2 it could not be read at all. Errors become one line
  on stderr, never a traceback.
* Nothing here creates a file in ``home``: ``verify`` and ``reputation`` only read; ``export``
  writes only ``out``. The owner comes from the ledger's genesis; if the identity file exists,
  ``verify`` also checks that the genesis is signed by it.
* The wall clock is read here (for ``reputation``), never inside the scoring.
"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import TextIO

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from darwin.home import IDENTITY_FILE, LEDGER_FILE, load_identity
from darwin.ledger.errors import LedgerError
from darwin.ledger.record import Entry
from darwin.ledger.reputation import DEFAULT_PARAMS, ReputationParams, reputation, verification_rate
from darwin.ledger.rows import read_entries
from darwin.ledger.store import wall_clock_ms
from darwin.ledger.verify import verify_ledger
from darwin.protocol import PeerId, ProtocolError, short_peer_id

__all__ = ["export_command", "ledger_path", "reputation_command", "verify_command"]

EXIT_OK, EXIT_BAD, EXIT_UNREADABLE = 0, 1, 2


def ledger_path(home: Path) -> Path:
    """Where the ledger of the node or client whose home is ``home`` lives."""
    return Path(home) / LEDGER_FILE


def _error(message: str) -> int:
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[red]error:[/red] {escape(message)}")
    return EXIT_UNREADABLE


def _expected_owner(home: Path) -> PeerId | None:
    """The peer id of ``home``'s identity file, if there is one (none is created)."""
    path = Path(home) / IDENTITY_FILE
    if not path.exists():
        return None
    return load_identity(path).peer_id


def verify_command(home: Path, json: bool = False) -> int:
    """``darwin ledger verify --home DIR [--json]``: recompute and check the whole chain.

    Prints ``OK <n> entries, head <seq> <hash>`` or names the first bad entry.

    Returns:
        0 if the ledger verifies, 1 if it does not, 2 if there is no readable ledger.
    """
    try:
        report = verify_ledger(ledger_path(home), expected_owner=_expected_owner(home))
    except FileNotFoundError as exc:
        return _error(str(exc))
    except ProtocolError as exc:  # the identity file exists but cannot be read
        return _error(exc.reason)
    if json:
        sys.stdout.write(jsonlib.dumps(report.to_json()) + "\n")
    else:
        Console(highlight=False, soft_wrap=True).print(escape(report.summary()))
    return EXIT_OK if report.ok else EXIT_BAD


def export_command(home: Path, out: Path | None = None) -> int:
    """``darwin ledger export --home DIR [--out FILE]``: every entry as one JSON line.

    Args:
        home: the node's home directory.
        out: the file to write; standard output when None or ``-``.

    Returns:
        0 when written, 2 if the ledger or the output cannot be read or written.
    """
    try:
        entries = read_entries(ledger_path(home))
        if out is None or str(out) == "-":
            _write_lines(entries, sys.stdout)
        else:
            with Path(out).open("w", encoding="utf-8") as handle:
                _write_lines(entries, handle)
    except FileNotFoundError as exc:
        return _error(str(exc))
    except LedgerError as exc:
        return _error(exc.reason)
    except OSError as exc:
        return _error(f"cannot write {out}: {exc.strerror}")
    return EXIT_OK


def _write_lines(entries: list[Entry], stream: TextIO) -> None:
    for entry in entries:
        stream.write(jsonlib.dumps(entry.to_json(), sort_keys=True) + "\n")


def reputation_command(home: Path, json: bool = False, *,
                       params: ReputationParams = DEFAULT_PARAMS,
                       now_ms: int | None = None) -> int:
    """``darwin reputation --home DIR [--json]``: every peer's score, most trusted first.

    Args:
        home: the node's home directory.
        json: print one JSON object ``{"now_ms", "owner", "peers": [...]}`` instead of a table.
        params: the scoring constants.
        now_ms: the moment to score at; the wall clock when None.

    Returns:
        0 when printed, 2 if the ledger cannot be read.
    """
    try:
        entries = read_entries(ledger_path(home))
        owner = entries[0].signer if entries else None
        scores = reputation(entries, now_ms=wall_clock_ms() if now_ms is None else now_ms,
                            params=params, owner=owner)
    except FileNotFoundError as exc:
        return _error(str(exc))
    except LedgerError as exc:
        return _error(exc.reason)
    ranked = sorted(scores.values(), key=lambda score: (-score.trust, score.peer))
    if json:
        peers = [{**score.to_json(), "verification_rate": verification_rate(score, params)}
                 for score in ranked]
        sys.stdout.write(jsonlib.dumps({"owner": owner, "peers": peers}) + "\n")
        return EXIT_OK
    table = Table(title=f"reputation as seen by {owner}", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="ok/failed: decayed evidence; passes/fails: weighted verdicts; "
                          "verify: verification rate; ms: mean latency; --json for full ids")
    for column in ("peer", "trust", "ok", "failed", "passes", "fails", "state", "verify", "ms"):
        table.add_column(column, justify="left" if column in ("peer", "state") else "right",
                         no_wrap=True)
    for score in ranked:
        state = "banned" if score.banned else "probation" if score.probation else "trusted"
        latency = "-" if score.latency_ms is None else f"{score.latency_ms:.0f}"
        table.add_row(short_peer_id(score.peer), f"{score.trust:.3f}", f"{score.successes:.1f}",
                      f"{score.failures:.1f}", f"{score.verified_passes:.1f}",
                      f"{score.verified_fails:.1f}", state,
                      f"{verification_rate(score, params):.2f}", latency)
    Console().print(table)
    return EXIT_OK
