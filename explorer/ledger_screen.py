"""The ledger itself: newest entries first, a page at a time from SQLite, and the chain's
integrity as ``darwin ledger verify`` reports it, the first bad entry in red."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from darwin.ledger import Entry, VerifyReport
from darwin.protocol import PeerId, short_peer_id

from .columns import age
from .source import LedgerUnavailable
from .status import StatusBar, explorer_app

__all__ = ["PAGE", "LedgerScreen"]

PAGE = 100  # entries per page: one query, one table fill, however long the ledger
VERIFY_TIMEOUT_S = 600


class LedgerScreen(Screen[None]):
    """The entries table, paged; verification runs once per session in a worker."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("n,pagedown", "older", "older"),
        Binding("p,pageup", "newer", "newer"),
        Binding("g", "newest", "newest"),
        Binding("b", "first_bad", "first bad"),
        Binding("v", "verify", "verify"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.before: int | None = None  # the page holds entries below this seq; None: newest
        self.shown: list[Entry] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusBar(classes="status", id="status")
        yield Static("verifying the chain…", classes="status", id="integrity")
        yield DataTable(id="entries", cursor_type="row", zebra_stripes=True)
        yield Static(classes="status", id="page")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#entries", DataTable).add_columns(
            "seq", "age", "kind", "subject", "signer")
        self.query_one("#entries", DataTable).focus()
        if explorer_app(self).verify_report is None:  # once the first page is on screen
            self.call_after_refresh(self.action_verify)
        else:
            self._show_report()
        self.refresh_data()

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        """Read the page again (only the newest page moves as entries arrive)."""
        app = explorer_app(self)
        self.query_one("#status", StatusBar).show(app.status_line())
        try:
            entries = app.source.newest(before=self.before, limit=PAGE)
        except LedgerUnavailable as exc:
            app.show_problem(str(exc))
            return
        if entries or self.before is None:
            self.shown = entries
        self._fill()

    def _fill(self) -> None:
        app = explorer_app(self)
        report = app.verify_report
        bad = None if report is None else report.first_bad_seq
        table = self.query_one("#entries", DataTable)
        table.clear()
        for entry in self.shown:
            style = "bold red" if entry.seq == bad else ""
            cells = (str(entry.seq), age(entry.time_ms, app.now_ms), str(entry.kind),
                     short_peer_id(entry.subject) if entry.subject else "-",
                     "owner" if entry.signer == app.source.owner else short_peer_id(entry.signer))
            table.add_row(*(Text(cell, style=style) for cell in cells), key=str(entry.seq))
        if self.shown:
            where = "newest" if self.before is None else "older"
            self.query_one("#page", Static).update(
                f"entries {self.shown[-1].seq:,}–{self.shown[0].seq:,} ({where}) · n older · "
                f"p newer · g newest")

    def action_older(self) -> None:
        if self.shown and self.shown[-1].seq > 1:
            self.before = self.shown[-1].seq
            self.refresh_data()

    def action_newer(self) -> None:
        if self.before is None or not self.shown:
            return
        app = explorer_app(self)
        try:
            newer = app.source.entries_after(self.shown[0].seq, limit=PAGE)
        except LedgerUnavailable as exc:
            app.show_problem(str(exc))
            return
        self.before = newer[-1].seq + 1 if len(newer) == PAGE else None
        self.refresh_data()

    def action_newest(self) -> None:
        self.before = None
        self.refresh_data()

    def action_first_bad(self) -> None:
        """Show the page whose top row is the first bad entry, if verification found one."""
        report = explorer_app(self).verify_report
        if report is not None and report.first_bad_seq is not None:
            self.before = report.first_bad_seq + 1
            self.refresh_data()

    def action_verify(self) -> None:
        self.query_one("#integrity", Static).update("verifying the chain…")
        self.run_worker(self._verify, thread=True, group="verify", exclusive=True)

    def _verify(self) -> None:
        """``darwin ledger verify --json`` in a process of its own: on a long ledger it is
        seconds of pure Python, which in a thread would hold the interpreter lock against the
        UI; the command also checks the genesis against the home's identity file."""
        app = explorer_app(self)
        command = [sys.executable, "-m", "darwin", "ledger", "verify", "--home", str(app.home),
                   "--json"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            self.app.call_from_thread(app.show_problem, "verifying the chain took over "
                                                        f"{VERIFY_TIMEOUT_S} s: stopped")
            return
        if done.returncode not in (0, 1):
            message = done.stderr.strip().removeprefix("error: ") or "cannot verify the ledger"
            self.app.call_from_thread(app.show_problem, message)
            return
        self.app.call_from_thread(self._verified, _report(json.loads(done.stdout)))

    def _verified(self, report: VerifyReport) -> None:
        explorer_app(self).verify_report = report
        self._show_report()
        self._fill()

    def _show_report(self) -> None:
        report = explorer_app(self).verify_report
        assert report is not None
        signed = ("no signed head file" if report.signed_head_seq is None
                  else f"signed head at seq {report.signed_head_seq:,}")
        text = Text(report.summary(), style="green" if report.ok else "bold red")
        text.append(f"\n{report.checkpoints} signed checkpoints · {signed}",
                    style="" if report.ok else "red")
        if not report.ok and report.first_bad_seq is not None:
            text.append(" · b shows the first bad entry", style="red")
        self.query_one("#integrity", Static).update(text)


def _report(document: dict[str, object]) -> VerifyReport:
    """The report back from ``VerifyReport.to_json``."""
    head = document["head_hash"]
    return VerifyReport(
        path=Path(str(document["path"])), ok=bool(document["ok"]),
        entries=int(str(document["entries"])), head_seq=int(str(document["head_seq"])),
        head_hash=None if head is None else bytes.fromhex(str(head)),
        owner=None if document["owner"] is None else PeerId(str(document["owner"])),
        checkpoints=int(str(document["checkpoints"])),
        signed_head_seq=_optional_int(document["signed_head_seq"]),
        first_bad_seq=_optional_int(document["first_bad_seq"]),
        reason=None if document["reason"] is None else str(document["reason"]))


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))
