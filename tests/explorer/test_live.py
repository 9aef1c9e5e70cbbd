"""Live: entries that another process appends appear without a restart; a bad entry that
arrives while the app runs is reported in the status line, and the app keeps running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from explorer_support import NEWCOMER, explorer, headless
from ledger_support import identity, tamper
from test_app import peer_column, running

from darwin.explorer.app import ExplorerApp
from darwin.home import LEDGER_FILE

APPENDER = Path(__file__).with_name("appender.py")
LATE = identity("late")


def append_from_another_process(home: Path, peer: str, count: int) -> None:
    subprocess.run([sys.executable, str(APPENDER), str(home / LEDGER_FILE), peer, str(count)],
                   check=True, timeout=60)


def status(app: ExplorerApp) -> str:
    return str(app.screen.query_one("#status").render())


@headless
async def test_entries_appended_by_the_owner_process_appear_while_the_app_runs(
        home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        assert LATE.peer_id not in peer_column(app)
        append_from_another_process(home, LATE.peer_id, 3)  # the app holds the ledger open
        app.poll()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert LATE.peer_id in peer_column(app)
        assert app.book is not None and app.book.row(LATE.peer_id).served == 3
        assert "47 entries" in status(app)  # 43, three successes and a closing checkpoint
        await pilot.press("slash", *NEWCOMER.peer_id[-6:])  # input still answers
        assert peer_column(app) == [NEWCOMER.peer_id]


@headless
async def test_a_bad_entry_appended_while_the_app_runs_is_reported_not_raised(
        home: Path) -> None:
    async with running(explorer(home)) as pilot:
        app = pilot.app
        tamper(home / LEDGER_FILE, "INSERT INTO entries SELECT seq + 1, kind, subject, "
               "x'c1', signer, signature, time_ms, anchor, prev_hash, hash FROM entries "
               "WHERE seq = 43")
        app.poll()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert "an entry of" in status(app) and "is invalid" in status(app)
        assert app.book is not None and app.book.head_seq == 43  # nothing half-applied
        await pilot.press("f")  # and the app still answers
        assert app.screen.status_filter is not None
