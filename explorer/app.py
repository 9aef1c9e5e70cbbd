"""The explorer's Textual app: it loads the ledger, keeps it live, and hosts the screens.

Rules (``specs/explorer.md``):

* Nothing that reads the ledger runs on the UI's event loop: the first load, every poll, a
  peer's details, the chain's verification and a proof's re-check run in thread workers and
  hand their result back with ``call_from_thread``; the book of peers is changed only on the
  event loop, so a screen never sees it half-updated.
* Live: every ``poll_interval_s`` (and on ``poll()``) a worker reads the entries after the
  book's head, at most ``POLL_LIMIT`` at a time, and the book folds them in; an error while
  polling is shown in the status line and the next poll tries again.
* The scores are for the moment the ledger was opened (``now_ms``); ``ctrl+r`` rescores from
  the start at the current time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from darwin.ledger import DEFAULT_PARAMS, Entry, ReputationParams, VerifyReport
from darwin.ledger.store import wall_clock_ms

from .help import HelpScreen
from .peers import PeerBook
from .peers_screen import PeersScreen
from .source import LedgerSource, LedgerUnavailable

__all__ = ["POLL_LIMIT", "ExplorerApp"]

POLL_LIMIT = 2_000  # the most new entries one poll folds in; the next poll reads the rest
PROGRESS_EVERY_S = 0.25


class ExplorerApp(App[None]):
    """``darwin explore``: peers, a peer, the ledger, live."""

    TITLE = "darwin explorer"
    ENABLE_COMMAND_PALETTE = False
    CSS_PATH = "explorer.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "help"),
        Binding("t", "toggle_theme", "theme"),
        Binding("ctrl+r", "rescore", "rescore", show=False),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, source: LedgerSource, *, home: Path, model: Path | None = None,
                 now_ms: int | None = None, poll_interval_s: float | None = 1.0,
                 params: ReputationParams = DEFAULT_PARAMS) -> None:
        """
        Args:
            source: the opened ledger (``LedgerSource.open``).
            home: its home, where the proof store is.
            model: the checkpoint that fraud proofs are re-checked against.
            now_ms: the moment to score at; the wall clock at each (re)load when None.
            poll_interval_s: seconds between polls for new entries; None: only ``poll()``.
        """
        super().__init__()
        self.source = source
        self.home = home
        self.model = model
        self.params = params
        self.book: PeerBook | None = None
        self.verify_report: VerifyReport | None = None
        self.problem: str | None = None  # the last error reading the ledger, shown in red
        self.progress = "loading…"
        self._now_ms = now_ms
        self._poll_interval_s = poll_interval_s
        self._polling = False
        self._progress_shown = time.monotonic()

    @property
    def now_ms(self) -> int:
        """The moment the scores are for."""
        return self.book.now_ms if self.book is not None else self._now_ms or wall_clock_ms()

    def on_mount(self) -> None:
        self.push_screen(PeersScreen())
        self._start_load()
        if self._poll_interval_s is not None:
            self.set_interval(self._poll_interval_s, self.poll)

    def status_line(self) -> str:
        """Owner, entries and the moment of the scores, or where the load stands."""
        owner = f"owner …{self.source.owner[-10:]}"
        if self.book is None:
            return f"{owner} · {self.progress}"
        return f"{owner} · {self.book.head_seq:,} entries · {len(self.book.scores())} peers"

    def _start_load(self) -> None:
        self.run_worker(self._load, thread=True, group="load", exclusive=True)

    def _load(self) -> None:
        now_ms = self._now_ms if self._now_ms is not None else wall_clock_ms()
        try:
            book = PeerBook.load(self.source, now_ms=now_ms, params=self.params,
                                 progress=self._loading)
        except LedgerUnavailable as exc:
            self.call_from_thread(self.show_problem, str(exc))
            return
        self.call_from_thread(self._loaded, book)

    def _loading(self, done: int, total: int) -> None:
        """Show the load's progress, a few times a second at most (each hand-off waits for
        the event loop, which the load would otherwise wait for 24 times)."""
        now = time.monotonic()
        if now - self._progress_shown >= PROGRESS_EVERY_S:
            self._progress_shown = now
            self.call_from_thread(self._set_progress, f"loading {done:,} of {total:,} entries…")

    def _set_progress(self, text: str) -> None:
        self.progress = text
        self._redraw()

    def _loaded(self, book: PeerBook) -> None:
        self.book = book
        self.problem = None
        self._redraw()

    def show_problem(self, message: str) -> None:
        self.problem = message
        self._redraw()

    def _redraw(self) -> None:
        """Ask the screen on top to redraw from the book (the others do when resumed; one not
        mounted yet draws from it in its own ``on_mount``)."""
        refresh = getattr(self.screen, "refresh_data", None)
        if refresh is not None and self.screen.is_mounted:
            refresh()

    def poll(self) -> None:
        """Read the entries appended since the last poll, in a worker (one at a time)."""
        if self.book is None or self._polling:
            return
        self._polling = True
        self.run_worker(self._read_new, thread=True, group="poll")

    def _read_new(self) -> None:
        assert self.book is not None
        try:
            entries = self.source.entries_after(self.book.head_seq, limit=POLL_LIMIT)
        except LedgerUnavailable as exc:
            self.call_from_thread(self._polled, [], str(exc))
            return
        self.call_from_thread(self._polled, entries, None)

    def _polled(self, entries: list[Entry], problem: str | None) -> None:
        self._polling = False
        self.problem = problem
        if self.book is not None and entries:
            self.book.add(entries)
            self.book.sample_history()
        if entries or problem is not None:
            self._redraw()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_rescore(self) -> None:
        """Score again from the first entry, at the current time."""
        self._now_ms = None
        self.book = None
        self.progress = "rescoring…"
        self._redraw()
        self._start_load()
