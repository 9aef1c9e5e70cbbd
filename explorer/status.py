"""The two lines at the top of every screen: where the ledger stands, and its last error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from textual.dom import DOMNode
from textual.widgets import Static

if TYPE_CHECKING:
    from .app import ExplorerApp

__all__ = ["StatusBar", "explorer_app"]


def explorer_app(node: DOMNode) -> ExplorerApp:
    """The app a screen or widget of the explorer runs in."""
    from .app import ExplorerApp  # the app imports the screens that call this

    app = node.app
    assert isinstance(app, ExplorerApp)
    return app


class StatusBar(Static):
    """``status`` in muted text, then the last problem reading the ledger in red."""

    def show(self, status: str) -> None:
        problem = explorer_app(self).problem
        text = escape(status)
        if problem is not None:
            text += f"\n[b red]{escape(problem)}[/]"
        self.update(text)
