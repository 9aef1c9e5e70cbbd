"""The keyboard help (``?``): every key of every screen, on one page that fits 80x24."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HELP", "HelpScreen"]

HELP = """\
[b]Everywhere[/b]   ? help · t light/dark theme · ctrl+r rescore now · q quit
             escape back · mouse: rows, headers (sort), the keys below

[b]Peers[/b]        enter open the peer · / filter by text · f status filter
             s next sort column · S reverse the order · l the ledger

[b]Peer[/b]         the trust over time, its verdicts, proofs and accusations
             tab / shift+tab move between the tables
             c re-check the fraud proof under the cursor (needs --model)

[b]Ledger[/b]       newest first, a page at a time; the chain's integrity
             n / pagedown older · p / pageup newer · g newest
             b go to the first bad entry · v verify again

New entries appear by themselves while the ledger's node is running."""


class HelpScreen(ModalScreen[None]):
    """Keys, over whatever screen was open."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(HELP)
