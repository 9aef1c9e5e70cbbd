"""Fixtures of the ledger tests (the builders are in ``ledger_support``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ledger_support import TRIGGERS, open_ledger, populate


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def populated(ledger_path: Path) -> Path:
    """A closed ledger of 11 entries: genesis, one of every kind, checkpoint at 7, head file."""
    with open_ledger(ledger_path, checkpoint_on_close=False) as ledger:
        populate(ledger)
    return ledger_path


@pytest.fixture
def raw(populated: Path) -> Iterator[Callable[..., sqlite3.Cursor]]:
    """Run SQL on the populated ledger with its triggers dropped, committing each statement."""
    connection = sqlite3.connect(populated)
    for trigger in TRIGGERS:
        connection.execute(f"DROP TRIGGER IF EXISTS {trigger}")

    def run(statement: str, *params: object) -> sqlite3.Cursor:
        cursor = connection.execute(statement, params)
        connection.commit()
        return cursor

    yield run
    connection.close()
