"""The peers table's columns, shared by the terminal UI and ``--once``: label, cell, sort key.

Rules: a cell is plain text that fits an 80-column terminal (peer ids cut to their last 10
characters, times as an age); a sort key orders the real value (numbers as numbers, a missing
value last whichever way the column is sorted); filters match the full peer id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from darwin.ledger import VerdictOutcome

from .peers import PeerRow, PeerStatus

__all__ = ["COLUMNS", "Column", "age", "column", "matches", "sort_rows"]

_STATUS_ORDER = {PeerStatus.BANNED: 0, PeerStatus.PROBATION: 1, PeerStatus.TRUSTED: 2}


def age(time_ms: int | None, now_ms: int) -> str:
    """How long before ``now_ms`` an entry was written, in its largest unit: 40s, 3m, 5h, 2d."""
    if time_ms is None:
        return "-"
    seconds = max(0, now_ms - time_ms) // 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class Column:
    """One column of the peers table."""

    key: str
    label: str
    cell: Callable[[PeerRow, int], str]  # (row, now_ms) -> text
    sort_key: Callable[[PeerRow], float | str | None]
    numeric: bool = True


def _verdicts(outcome: VerdictOutcome) -> Callable[[PeerRow, int], str]:
    return lambda row, _now: str(row.verdicts[outcome])


COLUMNS: tuple[Column, ...] = (
    Column("peer", "peer", lambda row, _now: row.short, lambda row: row.peer, numeric=False),
    Column("trust", "trust ±95%", lambda row, _now: f"{row.score.trust:.2f}±{row.confidence:.2f}",
           lambda row: row.score.trust),
    Column("status", "status", lambda row, _now: str(row.status),
           lambda row: _STATUS_ORDER[row.status], numeric=False),
    Column("served", "served", lambda row, _now: str(row.served), lambda row: row.served),
    Column("p50", "p50 ms", lambda row, _now: _number(row.latency_p50_ms),
           lambda row: row.latency_p50_ms),
    Column("pass", "pass", _verdicts(VerdictOutcome.PASS),
           lambda row: row.verdicts[VerdictOutcome.PASS]),
    Column("fail", "fail", _verdicts(VerdictOutcome.FAIL),
           lambda row: row.verdicts[VerdictOutcome.FAIL]),
    Column("unresponsive", "unr", _verdicts(VerdictOutcome.UNRESPONSIVE),
           lambda row: row.verdicts[VerdictOutcome.UNRESPONSIVE]),
    Column("seen", "seen", lambda row, now: age(row.last_seen_ms, now),
           lambda row: row.last_seen_ms),
)


def column(key: str) -> Column:
    """The column named ``key``.

    Raises:
        KeyError: there is none.
    """
    for candidate in COLUMNS:
        if candidate.key == key:
            return candidate
    raise KeyError(key)


def sort_rows(rows: Sequence[PeerRow], key: str, *, descending: bool) -> list[PeerRow]:
    """``rows`` sorted by column ``key``, ties by peer id, missing values last."""
    by_peer = sorted(rows, key=lambda row: row.peer)
    sort_key = column(key).sort_key
    present = [row for row in by_peer if sort_key(row) is not None]
    missing = [row for row in by_peer if sort_key(row) is None]
    present.sort(key=lambda row: sort_key(row), reverse=descending)  # type: ignore[arg-type,return-value]
    return present + missing


def matches(row: PeerRow, text: str, status: PeerStatus | None) -> bool:
    """Whether ``row`` passes the text filter (part of its peer id or status) and the status."""
    if status is not None and row.status != status:
        return False
    needle = text.strip().lower()
    return not needle or needle in row.peer.lower() or needle in str(row.status)
