"""Catch-up cursors: kept per peer across runs, bounded, and harmless when damaged."""

from __future__ import annotations

from pathlib import Path

from darwin.gossip.sync_cursors import CURSORS_FILE, SyncCursors


def test_cursors_survive_a_restart_and_forget_the_least_recent_peer(tmp_path: Path) -> None:
    cursors = SyncCursors.load(tmp_path, max_peers=2)
    assert cursors.get("a") == 0
    for peer, seq in (("a", 5), ("b", 7), ("a", 9), ("c", 1)):
        cursors.set(peer, seq)
    again = SyncCursors.load(tmp_path, max_peers=2)
    assert (again.get("a"), again.get("b"), again.get("c")) == (9, 0, 1)


def test_a_damaged_file_means_from_zero(tmp_path: Path) -> None:
    for junk in ("{not json", '{"a": -1}', '{"a": "5"}', "[1, 2]", '{"a": true}'):
        (tmp_path / CURSORS_FILE).write_text(junk)
        assert SyncCursors.load(tmp_path).get("a") == 0
