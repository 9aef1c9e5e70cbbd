"""``darwin explore --home DIR [--once] [--json] [--model PATH]``: the app, or its peers table
printed without a terminal UI.

Rules: like ``darwin reputation`` (``darwin.client.ledger_commands``), the result goes to
stdout (a rich table, or one JSON document) and the exit code says how it went: 0 done, 2 the
ledger could not be read, with one line on stderr saying why (missing, empty, corrupt,
locked), never a traceback. The wall clock is read here; ``now_ms`` fixes it for tests.
"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from darwin.ledger import DEFAULT_PARAMS, ReputationParams
from darwin.ledger.store import wall_clock_ms

from .columns import COLUMNS, sort_rows
from .peers import PeerBook
from .source import LedgerSource, LedgerUnavailable

__all__ = ["EXIT_OK", "EXIT_UNREADABLE", "explore_command"]

EXIT_OK, EXIT_UNREADABLE = 0, 2


def explore_command(home: Path, *, once: bool = False, json: bool = False,
                    model: Path | None = None, now_ms: int | None = None,
                    params: ReputationParams = DEFAULT_PARAMS) -> int:
    """Open ``home``'s ledger read-only; run the app, or print the peers table and return.

    Returns:
        0 when done, 2 if the ledger cannot be read.
    """
    try:
        source = LedgerSource.open(home)
    except LedgerUnavailable as exc:
        return _error(str(exc))
    try:
        if not (once or json):
            from .app import ExplorerApp  # Textual is only loaded for the app itself

            ExplorerApp(source, home=home, model=model, now_ms=now_ms, params=params).run()
            return EXIT_OK
        book = PeerBook.load(source, now_ms=wall_clock_ms() if now_ms is None else now_ms,
                             params=params)
    except LedgerUnavailable as exc:
        return _error(str(exc))
    finally:
        source.close()
    rows = sort_rows(book.rows(), "trust", descending=True)
    if json:
        sys.stdout.write(jsonlib.dumps({"owner": book.owner, "now_ms": book.now_ms,
                                        "entries": book.head_seq,
                                        "peers": [row.to_json() for row in rows]}) + "\n")
        return EXIT_OK
    table = Table(title=f"peers as seen by {book.owner} ({book.head_seq:,} entries)",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption="trust ±95%: the beta estimate and its interval; served: successes; "
                          "pass/fail/unr: verdicts; seen: age of the newest entry")
    for column in COLUMNS:
        table.add_column(column.label, justify="right" if column.numeric else "left",
                         no_wrap=True)
    for row in rows:
        table.add_row(*(column.cell(row, book.now_ms) for column in COLUMNS))
    Console(highlight=False).print(table)
    return EXIT_OK


def _error(message: str) -> int:
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[red]error:[/red] {escape(message)}")
    return EXIT_UNREADABLE
