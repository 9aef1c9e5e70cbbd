"""Writers for the crash test: a fork server whose children append in a burst until killed.

Usage: ``python crash_writer.py LEDGER SEED_HEX SUBJECT``. The server imports the ledger once,
prints ``ready``, then for each ``burst`` line read on stdin forks a writer and prints
``pid <pid>``; when that writer has died it prints ``exit <wait status>``. Forking from an
imported interpreter makes a run cost a fork instead of an interpreter start.

A writer opens (or recovers) the ledger and appends forever, alternating kinds, with a
checkpoint every 5 appends (so kills also land inside checkpoints and head-file writes). After
each append has returned, that is, after it committed, it writes ``<seq> <hash hex>`` to stdout
with one ``write`` (a line is shorter than PIPE_BUF, so lines never interleave). The test kills
it with SIGKILL.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn

from darwin.ledger import Ledger, LedgerConfig
from darwin.protocol import Identity


def burst(path: str, identity: Identity, subject: str) -> NoReturn:
    """Append until killed; never returns into the server."""
    try:
        ledger = Ledger.open(path, identity, LedgerConfig(checkpoint_every=5))
        index = 0
        while True:
            index += 1
            if index % 3 == 0:
                entry = ledger.record_failure(subject, f"burst failure {index}")
            elif index % 3 == 1:
                entry = ledger.record_success(subject)
            else:
                entry = ledger.record_latency(subject, index % 1000)
            os.write(1, f"{entry.seq} {entry.hash.hex()}\n".encode())
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(1)


def serve(path: str, seed_hex: str, subject: str) -> None:
    identity = Identity.from_seed(bytes.fromhex(seed_hex))
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "burst":
            continue
        pid = os.fork()
        if pid == 0:
            burst(path, identity, subject)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    serve(*sys.argv[1:4])
