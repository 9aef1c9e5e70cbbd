"""Another process that owns a ledger and appends to it: ``python appender.py LEDGER PEER N``.

Run by the live tests while the explorer has the same ledger open read-only."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_support import open_ledger


def main(path: str, peer: str, count: int) -> None:
    with open_ledger(Path(path)) as ledger:
        for _ in range(count):
            ledger.record_success(peer)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
