"""The peers table: every peer's score and counts, sortable by every column, filterable."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from darwin.protocol import PeerId

from .columns import COLUMNS, matches, sort_rows
from .ledger_screen import LedgerScreen
from .peer_screen import PeerScreen
from .peers import PeerStatus
from .status import StatusBar, explorer_app

__all__ = ["PeersScreen"]

_STATUS_CYCLE: tuple[PeerStatus | None, ...] = (None, *PeerStatus)


class PeersScreen(Screen[None]):
    """The first screen: one row per peer the ledger mentions."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "filter"),
        Binding("f", "cycle_status", "status"),
        Binding("s", "next_sort", "sort"),
        Binding("S", "reverse_sort", "reverse"),
        Binding("l", "ledger", "ledger"),
        Binding("escape", "leave_filter", "table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort_key = "trust"
        self.descending = True
        self.status_filter: PeerStatus | None = None
        self.text_filter = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusBar(classes="status", id="status")
        yield Input(placeholder="filter: part of a peer id, or a status (press /)", id="filter")
        yield DataTable(id="peers", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#peers", DataTable)
        for column in COLUMNS:
            table.add_column(column.label, key=column.key)
        table.focus()
        self.refresh_data()

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        """Redraw the table from the book, keeping the cursor on the same peer."""
        app = explorer_app(self)
        order = f"{self.sort_key} {'↓' if self.descending else '↑'}"
        shown = f"status {self.status_filter or 'any'}"
        self.query_one("#status", StatusBar).show(f"{app.status_line()} · {shown} · {order}")
        table = self.query_one("#peers", DataTable)
        if app.book is None:
            table.clear()
            return
        rows = [row for row in app.book.rows()
                if matches(row, self.text_filter, self.status_filter)]
        rows = sort_rows(rows, self.sort_key, descending=self.descending)
        selected = self.selected_peer()
        table.clear()
        for row in rows:
            table.add_row(*(column.cell(row, app.now_ms) for column in COLUMNS), key=row.peer)
        if selected is not None and any(row.peer == selected for row in rows):
            table.move_cursor(row=table.get_row_index(selected))

    def selected_peer(self) -> PeerId | None:
        """The peer under the cursor, if the table has rows."""
        table = self.query_one("#peers", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return None if key.value is None else PeerId(key.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value
        self.refresh_data()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_leave_filter()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by it; a second click reverses the order."""
        self.sort_by(str(event.column_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(PeerScreen(PeerId(event.row_key.value)))

    def sort_by(self, key: str) -> None:
        if key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_key = key
            self.descending = key not in ("peer", "status")
        self.refresh_data()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one("#peers", DataTable).focus()

    def action_cycle_status(self) -> None:
        index = _STATUS_CYCLE.index(self.status_filter)
        self.status_filter = _STATUS_CYCLE[(index + 1) % len(_STATUS_CYCLE)]
        self.refresh_data()

    def action_next_sort(self) -> None:
        keys = [column.key for column in COLUMNS]
        self.sort_by(keys[(keys.index(self.sort_key) + 1) % len(keys)])

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_key)

    def action_ledger(self) -> None:
        self.app.push_screen(LedgerScreen())
