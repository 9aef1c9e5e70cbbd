"""The ``darwin`` command line: make-tiny writes a loadable model, the demo runs end to end.

The demo test starts real node processes (a local swarm of four) and checks they are all gone
afterwards.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from darwin.client.cli import main
from darwin.model import Checkpoint


def test_make_tiny_writes_a_checkpoint_darwin_can_open(tmp_path: Path) -> None:
    assert main(["model", "make-tiny", "--family", "gpt2", "--layers", "3", "--hidden", "32",
                 str(tmp_path / "m")]) == 0
    assert Checkpoint.open(tmp_path / "m").n_layers == 3


def test_demo_generates_and_verifies_its_trace(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--home", str(tmp_path), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "random-initialised" in out
    hops = int(re.search(r"trace verified: \d+ signed receipts, hash-linked across (\d+) hops "
                         r"and 4 steps", out)[1])  # type: ignore[index]
    assert 2 <= hops <= 4
    assert "stopped the local swarm" in out
    assert not _processes_under(tmp_path / "nodes")


def _processes_under(home: Path) -> list[int]:
    """Pids of live processes whose command line names `home` (nodes the demo left behind)."""
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if str(home) in " ".join(p.info["cmdline"] or [])]


def test_a_user_error_is_one_line_not_a_traceback(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--model", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_python_dash_m_darwin_is_the_same_program() -> None:
    result = subprocess.run([sys.executable, "-m", "darwin", "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0 and "make-tiny" not in result.stderr
    assert "demo" in result.stdout


def test_ledger_verify_reputation_and_export_read_a_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from darwin.home import save_identity
    from darwin.ledger import Ledger
    from darwin.protocol import Identity

    identity = Identity.generate()
    save_identity(identity, tmp_path / "identity")
    peer = Identity.generate().peer_id
    with Ledger.open(tmp_path / "ledger.sqlite", identity) as ledger:
        ledger.record_success(peer)
        ledger.record_failure(peer, "timeout")
    assert main(["ledger", "verify", "--home", str(tmp_path)]) == 0
    assert main(["reputation", "--home", str(tmp_path), "--json"]) == 0
    assert peer in capsys.readouterr().out
    assert main(["ledger", "export", "--home", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("\n") >= 3

    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE entries SET subject = 'x' WHERE seq = 2")
    assert main(["ledger", "verify", "--home", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "entry 2" in captured.out + captured.err
