"""``darwin explore --once`` and ``--json`` print the peers table; a missing, empty, corrupt
or locked ledger gives one clear line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from explorer_support import CHEATER, HONEST, NOW, OWNER, VERIFIER
from ledger_support import tamper
from locks import exclusively_locked

from darwin.client.cli import main
from darwin.explorer.command import explore_command
from darwin.home import LEDGER_FILE


def test_once_prints_the_peers_table(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert explore_command(home, once=True, now_ms=NOW) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f"peers as seen by {OWNER.peer_id} (43 entries)" in " ".join(out.split())
    first = next(line for line in lines if line.startswith(" …"))
    assert first.split()[:3] == ["…" + VERIFIER.peer_id[-10:], "0.94±0.11", "trusted"]
    assert max(len(line) for line in lines) <= 80


def test_json_prints_every_peer_with_its_score_and_counts(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--home", str(home), "--json"]) == 0  # at the wall clock
    document = json.loads(capsys.readouterr().out)
    assert (document["owner"], document["entries"]) == (OWNER.peer_id, 43)
    assert explore_command(home, json=True, now_ms=NOW) == 0
    document = json.loads(capsys.readouterr().out)
    peers = {peer["peer"]: peer for peer in document["peers"]}
    honest = peers[HONEST.peer_id]
    assert (honest["status"], honest["served"], honest["latency_p50_ms"]) == ("trusted", 12, 40)
    assert honest["verdicts"] == {"pass": 3, "fail": 1, "unresponsive": 0}
    assert peers[CHEATER.peer_id]["status"] == "banned" and peers[CHEATER.peer_id]["trust"] == 0


def _explore_fails(home: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["explore", "--home", str(home), "--once"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return " ".join(captured.err.split())


def test_a_missing_ledger_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = _explore_fails(tmp_path, capsys)
    assert message.startswith("error: no ledger at") and "home of a node or a client" in message
    assert not (tmp_path / LEDGER_FILE).exists()  # and none was created


@pytest.mark.parametrize("make", ["zero bytes", "no table", "no rows"])
def test_an_empty_ledger_is_called_empty(make: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / LEDGER_FILE
    path.touch()
    if make != "zero bytes":
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE other (x)" if make == "no table" else
                           "CREATE TABLE entries (seq INTEGER PRIMARY KEY, kind, subject, "
                           "payload, signer, signature, time_ms, anchor, prev_hash, hash)")
        connection.commit()
        connection.close()
    assert "is empty" in _explore_fails(tmp_path, capsys)


def test_a_file_that_is_not_a_database_is_called_corrupt(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / LEDGER_FILE).write_bytes(b"not a database, " * 64)
    message = _explore_fails(tmp_path, capsys)
    assert "is not a readable ledger" in message and "darwin ledger verify" in message


def test_a_bad_row_is_named_with_what_to_run(home: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    tamper(home / LEDGER_FILE, "UPDATE entries SET payload = x'c1' WHERE seq = 9")
    message = _explore_fails(home, capsys)
    assert "an entry of" in message and "is invalid" in message
    assert "darwin ledger verify" in message


def test_a_locked_ledger_says_so(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with exclusively_locked(home / LEDGER_FILE):
        message = _explore_fails(home, capsys)
    assert "is locked by another process" in message and "try again" in message
