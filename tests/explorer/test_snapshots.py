"""The main screens at 80x24, as SVG snapshots (pytest-textual-snapshot).

After a deliberate change of a screen: ``pytest tests/explorer/test_snapshots.py
--snapshot-update``, look at the new SVGs, and copy them to docs/ (docs/explorer.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from explorer_support import HONEST, explorer
from test_app import settle
from textual.pilot import Pilot

SIZE = (80, 24)
SnapCompare = Callable[..., bool]


def steps(*keys: str) -> Callable[[Pilot[Any]], Any]:
    """Wait for the load, press ``keys``, and wait for what they started."""

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return run


@pytest.mark.parametrize(("name", "keys"), [
    ("peers", ()),
    ("peers-light", ("t",)),
    ("peer", ("slash", *HONEST.peer_id[-8:], "enter", "enter")),
    ("ledger", ("l",)),
    ("help", ("question_mark",)),
])
def test_screen(name: str, keys: tuple[str, ...], home: Path, snap_compare: SnapCompare) -> None:
    assert snap_compare(explorer(home), terminal_size=SIZE, run_before=steps(*keys))
