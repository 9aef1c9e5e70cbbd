"""SIGKILL during a burst of appends never breaks the chain nor loses a committed entry."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ledger_support import OWNER, PEER

from darwin.ledger import read_entries, verify_ledger

WRITER = Path(__file__).with_name("crash_writer.py")
CRASH_RUNS = 50  # the figure
MAX_LINES_BEFORE_KILL = 25  # the kill comes after 1..25 committed appends, drawn per run
SEED = 20_240_601


class WriterServer:
    """The fork server of ``crash_writer.py``: one interpreter, one forked writer per run."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), OWNER.seed.hex(), PEER.peer_id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        # A hung server fails the test instead of hanging it: its pipe closes when killed.
        self.watchdog = threading.Timer(120, self.process.kill)
        self.watchdog.start()
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the writer server died"
        return line.strip()

    def burst_then_kill(self, kill_after: int) -> list[tuple[int, str]]:
        """Fork a writer, read ``kill_after`` committed lines, SIGKILL it, return every line.

        The writer keeps appending while the lines are read, so the kill lands at whatever
        point of an append (or checkpoint) it has reached; the lines it wrote before dying are
        read too (they come before the server's ``exit`` line), each reported as committed.
        """
        assert self.process.stdin is not None
        self.process.stdin.write("burst\n")
        self.process.stdin.flush()
        committed: list[tuple[int, str]] = []
        pid = None
        while pid is None or len(committed) < kill_after:
            line = self.readline()
            if line.startswith("pid "):
                pid = int(line.split()[1])
            else:
                seq, digest = line.split()
                committed.append((int(seq), digest))
        os.kill(pid, signal.SIGKILL)  # our grandchild, alive until its parent reaps it
        while not (line := self.readline()).startswith("exit "):
            seq, digest = line.split()
            committed.append((int(seq), digest))
        status = int(line.split()[1])
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
            "the writer failed before it was killed (its traceback is on stderr)"
        return committed

    def close(self) -> None:
        self.watchdog.cancel()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.mark.slow
def test_sigkill_in_a_burst_keeps_the_ledger_valid_and_every_committed_entry(
        tmp_path: Path) -> None:
    """50 writers on the same ledger, each SIGKILLed after a random number of appends.

    The kill moment is drawn in appends, not time (no sleeps): after reading the k-th printed
    seq, k seeded in 1..25, while the writer is busy with the next appends. After each kill the
    ledger verifies (chain, signatures, signed head file) and every seq ever printed is present
    with the hash that was printed. Writers are forked from a server that imported the ledger
    once, so a run costs a fork plus its appends (each an fsync'd commit): 4-13 s for the
    50 runs on two shared cores.
    """
    path = tmp_path / "ledger.sqlite"
    rng = random.Random(SEED)
    printed: dict[int, str] = {}
    server = WriterServer(path)
    try:
        for run in range(CRASH_RUNS):
            for seq, digest in server.burst_then_kill(rng.randint(1, MAX_LINES_BEFORE_KILL)):
                assert printed.setdefault(seq, digest) == digest, f"run {run}: seq {seq} reused"
            report = verify_ledger(path, expected_owner=OWNER.peer_id)
            assert report.ok, f"run {run}: entry {report.first_bad_seq}: {report.reason}"
            stored = {entry.seq: entry.hash.hex() for entry in read_entries(path)}
            lost = sorted(seq for seq, digest in printed.items() if stored.get(seq) != digest)
            assert lost == [], f"run {run}: committed entries lost or changed: {lost[:10]}"
    finally:
        server.close()
    assert len(printed) >= CRASH_RUNS
