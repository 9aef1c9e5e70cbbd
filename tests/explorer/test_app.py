"""The explorer driven headless (``App.run_test`` and Pilot) over a real ledger at 80x24:
navigation, sorting, filtering, the peer view, the ledger view, help and themes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from explorer_support import CHEATER, HONEST, LIAR, NEWCOMER, VERIFIER, explorer, headless
from ledger_support import tamper
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Sparkline, Static

from darwin.explorer.app import ExplorerApp
from darwin.explorer.help import HelpScreen
from darwin.explorer.ledger_screen import LedgerScreen
from darwin.explorer.peer_screen import PeerScreen
from darwin.explorer.peers_screen import PeersScreen
from darwin.home import LEDGER_FILE

SIZE = (80, 24)


@asynccontextmanager
async def running(app: ExplorerApp) -> AsyncIterator[Pilot[None]]:
    """The app at 80x24, its ledger loaded."""
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        yield pilot


async def settle(pilot: Pilot[None]) -> None:
    """Let every worker finish and the screen handle what they handed back."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def peer_column(app: ExplorerApp) -> list[str]:
    table = app.screen.query_one("#peers", DataTable)
    return [str(key.value) for key in table.rows]


def cells(app: ExplorerApp, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(table_id, DataTable)
    return [[str(cell) for cell in table.get_row(key)] for key in table.rows]


@headless
async def test_the_peers_table_lists_every_peer_most_trusted_first(home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        assert isinstance(app.screen, PeersScreen)
        assert peer_column(app) == [VERIFIER.peer_id, HONEST.peer_id, NEWCOMER.peer_id,
                                    LIAR.peer_id, CHEATER.peer_id]
        honest = cells(app, "#peers")[1]
        assert honest[2:] == ["trusted", "12", "40", "3", "1", "0", "1m"]
        assert cells(app, "#peers")[-1][2] == "banned"


@headless
async def test_keys_and_header_clicks_sort_by_any_column(home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        await pilot.press("s")  # trust -> status, banned first
        assert peer_column(app)[0] == CHEATER.peer_id
        await pilot.press("s")  # served, most first
        assert peer_column(app)[:2] == [VERIFIER.peer_id, HONEST.peer_id]
        await pilot.press("S")  # reversed
        assert peer_column(app)[-2:] == [HONEST.peer_id, VERIFIER.peer_id]
        table = app.screen.query_one("#peers", DataTable)
        x = sum(column.get_render_width(table) for column in list(table.columns.values())[:5])
        await pilot.click("#peers", offset=(x + 1, 0))  # the "pass" header
        await pilot.pause()
        assert app.screen.sort_key == "pass" and peer_column(app)[0] == HONEST.peer_id


@headless
async def test_the_text_and_status_filters_narrow_the_table(home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        await pilot.press("f")  # trusted only
        assert peer_column(app) == [VERIFIER.peer_id, HONEST.peer_id]
        await pilot.press("f", "f")  # banned only
        assert peer_column(app) == [CHEATER.peer_id]
        await pilot.press("f")  # any status again
        await pilot.press("slash", *HONEST.peer_id[-6:])
        assert app.screen.query_one("#filter", Input).value == HONEST.peer_id[-6:]
        assert peer_column(app) == [HONEST.peer_id]
        await pilot.press("enter")  # back to the table
        assert isinstance(app.focused, DataTable)


@headless
async def test_enter_opens_the_peer_view_with_its_verdicts_and_proofs(home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        await pilot.press("down", "enter")  # HONEST
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PeerScreen) and screen.peer == HONEST.peer_id
        summary = str(screen.query_one("#summary", Static).render())
        assert HONEST.peer_id in summary and "served 12" in summary and "p50 40 ms" in summary
        assert len(screen.query_one("#history", Sparkline).data or []) > 1
        verdicts = cells(app, "#verdicts")
        assert [row[2] for row in verdicts] == ["fail", "pass", "pass", "pass"]  # newest first
        assert {row[3] for row in verdicts} == {"…" + VERIFIER.peer_id[-10:]}
        assert verdicts[0][5] == "trusted"  # the verifier's own standing
        assert [row[2:4] for row in cells(app, "#proofs")] == [
            ["refuted", "…" + LIAR.peer_id[-10:]]]
        await pilot.press("escape")
        assert isinstance(app.screen, PeersScreen)


@headless
async def test_the_peer_view_lists_the_accusations_a_peer_made(home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        await pilot.press("slash", *LIAR.peer_id[-8:], "enter", "enter")
        await settle(pilot)
        assert isinstance(app.screen, PeerScreen) and app.screen.peer == LIAR.peer_id
        assert [row[2:] for row in cells(app, "#accusations")] == [
            ["…" + HONEST.peer_id[-10:], "refuted", "yes"]]


@headless
async def test_the_ledger_view_pages_newest_first_and_verifies_the_chain(home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        await pilot.press("l")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, LedgerScreen)
        rows = cells(app, "#entries")
        assert rows[0][:3] == ["43", "1m", "checkpoint"] and rows[-1][2] == "genesis"
        integrity = str(screen.query_one("#integrity", Static).render())
        assert integrity.startswith("OK 43 entries") and "signed head at seq 43" in integrity
        await pilot.press("n")  # one page holds the whole ledger: nothing older
        assert cells(app, "#entries")[0][0] == "43"


@headless
async def test_a_tampered_entry_is_named_in_red(home: Path) -> None:
    tamper(home / LEDGER_FILE, "UPDATE entries SET time_ms = time_ms + 1 WHERE seq = 5")
    async with running(explorer(home)) as pilot:
        app = pilot.app
        await pilot.press("l")
        await settle(pilot)
        integrity = app.screen.query_one("#integrity", Static).render()
        assert str(integrity).startswith("BAD entry 5:")
        await pilot.press("b")
        table = app.screen.query_one("#entries", DataTable)
        first = table.get_row_at(0)
        assert str(first[0]) == "5" and "red" in str(first[0].style)


@headless
async def test_help_opens_on_question_mark_and_t_switches_the_theme(home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, PeersScreen)
        before = app.theme
        await pilot.press("t")
        assert app.theme != before and app.theme in ("textual-dark", "textual-light")
        await pilot.press("t")
        assert app.theme == before
