"""The ledger itself: newest entries first, a page at a time from SQLite, and the chain's
integrity as ``darwin ledger verify`` reports it, the first bad entry in red."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from darwin.ledger import Entry, VerifyReport, verify_ledger
from darwin.ledger.cli import short_peer, verify_summary

from .columns import age
from .source import LedgerUnavailable
from .status import StatusBar, explorer_app

__all__ = ["PAGE", "LedgerScreen"]

PAGE = 100  # entries per page: one query, one table fill, however long the ledger


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
        if explorer_app(self).verify_report is None:
            self.action_verify()
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
                     short_peer(entry.subject) if entry.subject else "-",
                     "owner" if entry.signer == app.source.owner else short_peer(entry.signer))
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
        app = explorer_app(self)
        try:
            report = verify_ledger(app.source.path)
        except FileNotFoundError as exc:
            self.app.call_from_thread(app.show_problem, str(exc))
            return
        self.app.call_from_thread(self._verified, report)

    def _verified(self, report: VerifyReport) -> None:
        explorer_app(self).verify_report = report
        self._show_report()
        self._fill()

    def _show_report(self) -> None:
        report = explorer_app(self).verify_report
        assert report is not None
        signed = ("no signed head file" if report.signed_head_seq is None
                  else f"signed head at seq {report.signed_head_seq:,}")
        text = Text(verify_summary(report), style="green" if report.ok else "bold red")
        text.append(f"\n{report.checkpoints} signed checkpoints · {signed}",
                    style="" if report.ok else "red")
        if not report.ok and report.first_bad_seq is not None:
            text.append(" · b shows the first bad entry", style="red")
        self.query_one("#integrity", Static).update(text)
