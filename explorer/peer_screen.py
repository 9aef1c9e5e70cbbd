"""One peer: its trust over time, the verdicts about it and who signed them, the fraud proofs
against it (re-checkable), and the accusations it made."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Sparkline, Static, TabbedContent, TabPane

from darwin.ledger import Entry, EntryKind, Verdict
from darwin.protocol import PeerId, short_peer_id

from .columns import age
from .peers import status_of
from .proofs import ProofRef, Recheck, proof_ref, recheck
from .source import LedgerUnavailable
from .status import StatusBar, explorer_app

__all__ = ["PeerScreen"]

_PROOF_KINDS = frozenset({EntryKind.FRAUD_PROOF, EntryKind.ACCUSATION_REFUTED})
_OUTCOME_STYLE = {"confirmed": "bold red", "refuted": "bold green", "error": "bold yellow"}


class PeerScreen(Screen[None]):
    """The peer view; its lists are read from the ledger in a worker when shown."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("c", "recheck", "re-check proof"),
    ]

    def __init__(self, peer: PeerId) -> None:
        super().__init__()
        self.peer = peer
        self.proofs: dict[str, ProofRef] = {}  # row key -> proof, in both proof tables
        self.last_recheck: Recheck | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusBar(classes="status", id="status")
        yield Static(id="summary")
        yield Sparkline([], id="history")
        with TabbedContent(id="tabs"):
            with TabPane("verdicts", id="verdicts-tab"):
                yield DataTable(id="verdicts", cursor_type="row", zebra_stripes=True)
            with TabPane("fraud proofs", id="proofs-tab"):
                yield DataTable(id="proofs", cursor_type="row", zebra_stripes=True)
            with TabPane("its accusations", id="accusations-tab"):
                yield DataTable(id="accusations", cursor_type="row", zebra_stripes=True)
        yield Static(id="recheck")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#verdicts", DataTable).add_columns(
            "seq", "age", "outcome", "verifier", "its trust", "its status")
        self.query_one("#proofs", DataTable).add_columns(
            "seq", "age", "conclusion", "accuser", "proof")
        self.query_one("#accusations", DataTable).add_columns(
            "seq", "age", "accused", "conclusion", "refuted")
        self.refresh_data()

    def refresh_data(self) -> None:
        """Redraw the summary and the chart, then read the lists again in a worker."""
        app = explorer_app(self)
        self.query_one("#status", StatusBar).show(app.status_line())
        if app.book is None:
            return
        row = app.book.row(self.peer)
        score = row.score
        latency = "-" if row.latency_p50_ms is None else f"{row.latency_p50_ms:.0f} ms"
        self.query_one("#summary", Static).update(
            f"[b]{self.peer}[/b]\n{row.status} · trust {score.trust:.3f} ± "
            f"{row.confidence:.3f} · served {row.served} · p50 {latency} · last seen "
            f"{age(row.last_seen_ms, app.now_ms)} ago · traffic cap "
            f"{score.traffic_share_cap:.0%}")
        self.query_one("#history", Sparkline).data = app.book.history.get(self.peer, [])
        self.run_worker(self._read_lists, thread=True, group="lists", exclusive=True)

    def _read_lists(self) -> None:
        app = explorer_app(self)
        try:
            about = app.source.about(self.peer)
            proofs = app.source.of_kinds(_PROOF_KINDS)
        except LedgerUnavailable as exc:
            self.app.call_from_thread(app.show_problem, str(exc))
            return
        self.app.call_from_thread(self._show_lists, about, proofs)

    def _show_lists(self, about: list[Entry], proofs: list[Entry]) -> None:
        app = explorer_app(self)
        assert app.book is not None
        verdicts = self.query_one("#verdicts", DataTable)
        verdicts.clear()
        for entry in reversed(about):
            body = entry.body
            if not isinstance(body, Verdict) or entry.signer == self.peer:
                continue
            if entry.signer == app.book.owner:
                trust, status = "1.000", "owner"
            else:
                verifier = app.book.score(entry.signer)
                trust, status = f"{verifier.trust:.3f}", str(status_of(verifier))
            verdicts.add_row(str(entry.seq), age(entry.time_ms, app.now_ms), str(body.outcome),
                             short_peer_id(entry.signer), trust, status)
        self.proofs = {}
        against = self.query_one("#proofs", DataTable)
        made = self.query_one("#accusations", DataTable)
        for table in (against, made):
            table.clear()
        for ref in reversed([ref for entry in proofs if (ref := proof_ref(entry)) is not None]):
            key = f"{ref.seq}"
            when = age(ref.time_ms, app.now_ms)
            if ref.accused == self.peer:
                self.proofs[key] = ref
                against.add_row(str(ref.seq), when, ref.conclusion, short_peer_id(ref.accuser),
                                ref.proof_hash.hex()[:12], key=key)
            if ref.accuser == self.peer:
                self.proofs[key] = ref
                made.add_row(str(ref.seq), when, short_peer_id(ref.accused), ref.conclusion,
                             "yes" if ref.refuted else "no", key=key)

    def _proof_under_cursor(self) -> ProofRef | None:
        tab = self.query_one("#tabs", TabbedContent).active
        table_id = {"proofs-tab": "#proofs", "accusations-tab": "#accusations"}.get(tab)
        if table_id is None:
            return None
        table = self.query_one(table_id, DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None else self.proofs.get(key)

    def action_recheck(self) -> None:
        """Re-check the proof under the cursor with ``darwin verify-proof``, in a worker."""
        proof = self._proof_under_cursor()
        if proof is None:
            self._show_recheck(Recheck("error", "choose a proof first: the fraud proofs or "
                                                "its accusations tab, then a row"))
            return
        self.query_one("#recheck", Static).update(
            f"re-checking proof {proof.proof_hash.hex()[:12]}… (entry {proof.seq})")
        self.run_worker(lambda: self._recheck(proof), thread=True, group="recheck",
                        exclusive=True)

    def _recheck(self, proof: ProofRef) -> None:
        app = explorer_app(self)
        result = recheck(app.home, proof, app.model)
        self.app.call_from_thread(self._show_recheck, result)

    def _show_recheck(self, result: Recheck) -> None:
        self.last_recheck = result
        text = Text.assemble((f"{result.outcome}: ", _OUTCOME_STYLE[result.outcome]),
                             result.message)
        self.query_one("#recheck", Static).update(text)
