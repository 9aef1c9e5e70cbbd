"""The functions behind ``darwin ledger verify|export`` and ``darwin reputation``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from ledger_support import OTHER, OWNER, PEER, T0, TRIGGERS

from darwin.client.ledger_commands import (
    export_command,
    ledger_path,
    reputation_command,
    verify_command,
)
from darwin.home import IDENTITY_FILE, save_identity


@pytest.fixture
def home(populated: Path) -> Path:
    assert populated == ledger_path(populated.parent)
    return populated.parent


def break_entry(path: Path, seq: int) -> None:
    connection = sqlite3.connect(path)
    for trigger in TRIGGERS:
        connection.execute(f"DROP TRIGGER {trigger}")
    connection.execute("UPDATE entries SET time_ms = time_ms + 1 WHERE seq = ?", (seq,))
    connection.commit()
    connection.close()


def test_verify_prints_ok_with_count_and_head(home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_command(home) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK 11 entries, head 11 ") and OWNER.peer_id in out


def test_verify_names_the_first_bad_entry_and_exits_1(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    break_entry(ledger_path(home), 5)
    assert verify_command(home) == 1
    assert capsys.readouterr().out.startswith("BAD entry 5: bad signature")
    assert verify_command(home, json=True) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["first_bad_seq"], report["entries"]) == (False, 5, 4)


def test_verify_checks_the_home_identity_and_creates_nothing(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_identity(OWNER, home / IDENTITY_FILE)
    assert verify_command(home, json=True) == 0
    assert json.loads(capsys.readouterr().out)["owner"] == OWNER.peer_id
    (home / IDENTITY_FILE).unlink()
    save_identity(OTHER, home / IDENTITY_FILE)
    assert verify_command(home) == 1
    assert "BAD entry 1: the genesis is signed by" in capsys.readouterr().out
    empty = tmp_path / "empty-home"
    empty.mkdir()
    assert verify_command(empty) == 2
    assert "no ledger at" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


def test_export_writes_one_json_line_per_entry(home: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ledger.jsonl"
    assert export_command(home, out) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 12))
    assert lines[2]["kind"] == "failure" and lines[2]["payload"] == {"reason": "timeout"}
    assert lines[2]["subject"] == PEER.peer_id and len(lines[2]["hash"]) == 64
    assert lines[3]["prev_hash"] == lines[2]["hash"]
    assert export_command(home) == 0  # to stdout
    assert capsys.readouterr().out.splitlines() == out.read_text().splitlines()
    assert export_command(tmp_path / "nowhere") == 2


def test_reputation_prints_json_or_a_table(home: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert reputation_command(home, json=True, now_ms=T0 + 100) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["owner"] == OWNER.peer_id
    peers = {peer["peer"]: peer for peer in document["peers"]}
    assert peers[PEER.peer_id]["banned"] is True  # the populated ledger confirms a fraud proof
    assert peers[OTHER.peer_id]["verification_rate"] == 1.0  # on probation
    assert reputation_command(home, now_ms=T0 + 100) == 0
    assert "reputation as seen by" in capsys.readouterr().out
    assert reputation_command(home / "nowhere") == 2
