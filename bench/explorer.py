"""The explorer on a large ledger: how long it takes to open, to paint, and to apply one entry.

A ledger of ``--entries`` entries (100 000 by default) is generated once into bench/out/ with
real signatures: the owner's observations of ``--peers`` peers (successes, latencies, failures,
violations), verdicts signed by a dozen verifiers, two confirmed fraud proofs, one refuted
accusation and a checkpoint every 1 000 entries (the signed head file included), so that
``darwin ledger verify`` accepts it. Then, headless (``App.run_test``) at 80x24:

- open: reading (and validating) every entry and folding it into the reputation, without the
  UI (``PeerBook.load``, what ``--once`` does);
- first paint: from creating the app to its first screen on the terminal (the load runs on in
  a worker, its progress in the status line);
- peers table filled: from creating the app to the table drawn from the whole ledger;
- one new entry: appended through the owner's ``Ledger`` (its own connection), from the poll
  that reads it to the table redrawn;
- ledger view page: ``l`` pressed to its newest page read from SQLite and drawn.

Run: ``.venv/bin/python bench/explorer.py [--entries 100000]``; ``--smoke`` is a 2 000-entry
run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from darwin.explorer.app import ExplorerApp
from darwin.explorer.peers import PeerBook
from darwin.explorer.source import LedgerSource
from darwin.home import LEDGER_FILE
from darwin.ledger import (
    Checkpoint,
    Entry,
    EntryKind,
    Failure,
    FraudProof,
    FraudStatus,
    Latency,
    Ledger,
    LedgerConfig,
    Payload,
    ProtocolViolation,
    Record,
    Success,
    Verdict,
    VerdictOutcome,
)
from darwin.ledger.rows import COLUMNS, entry_row
from darwin.ledger.signed_head import write_signed_head
from darwin.protocol import Identity

T0 = 1_700_000_000_000
CHECKPOINT_EVERY = 1_000


def identity(label: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(label.encode(), digest_size=32).digest())


OWNER = identity("bench-owner")


def _observation(rng: random.Random, peers: list[Identity], verifiers: list[Identity],
                 ) -> tuple[Identity, Identity, Payload]:
    """(signer, subject, payload) of one random entry, in the mix a busy client records."""
    subject = rng.choice(peers)
    roll = rng.random()
    if roll < 0.45:
        return OWNER, subject, Success()
    if roll < 0.70:
        return OWNER, subject, Latency(int(rng.lognormvariate(4.0, 0.5)))
    if roll < 0.75:
        return OWNER, subject, Failure("timeout")
    if roll < 0.76:
        return OWNER, subject, ProtocolViolation("bad receipt signature")
    outcome = VerdictOutcome.PASS if rng.random() < 0.95 else VerdictOutcome.FAIL
    return rng.choice(verifiers), subject, Verdict(outcome, {"n": rng.getrandbits(62)})


def generate(path: Path, entries: int, peer_count: int, seed: int = 0) -> None:
    """Write a ledger of ``entries`` entries at ``path`` in one transaction."""
    rng = random.Random(seed)
    peers = [identity(f"bench-peer-{i}") for i in range(peer_count)]
    verifiers = peers[:12]  # verifiers serve too: the owner's observations make them trusted
    Ledger.open(path, OWNER, LedgerConfig(checkpoint_every=0, checkpoint_on_close=False),
                clock=lambda: T0).close()
    connection = sqlite3.connect(path)
    row = connection.execute("SELECT hash FROM entries WHERE seq = 1").fetchone()
    prev_hash, head = bytes(row[0]), None
    insert = f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    specials: dict[int, tuple[Identity, Payload]] = {
        entries // 3: (peers[0], FraudProof(FraudStatus.CONFIRMED, b"\x01" * 32,
                                            verifiers[0].peer_id)),
        entries // 2: (peers[1], FraudProof(FraudStatus.CONFIRMED, b"\x02" * 32,
                                            verifiers[1].peer_id)),
    }
    with connection:
        for seq in range(2, entries + 1):
            time_ms = T0 + seq * 1000
            signer: Identity
            if seq % CHECKPOINT_EVERY == 0:
                signer, subject, payload = OWNER, "", Checkpoint(seq - 1, prev_hash)
            elif seq in specials:
                signer, (about, payload) = OWNER, specials[seq]
                subject = about.peer_id
            else:
                signer, about, payload = _observation(rng, peers, verifiers)
                subject = about.peer_id
            anchor = prev_hash if signer is OWNER else b""
            record = Record.sign(signer, payload.KIND, subject, payload, time_ms=time_ms,
                                 anchor=anchor)
            entry = Entry.chain(seq, record, prev_hash)
            connection.execute(insert, entry_row(entry))
            prev_hash = entry.hash
            head = entry if entry.kind == EntryKind.CHECKPOINT else head
    connection.close()
    if head is not None:
        write_signed_head(path, head)


def _home(entries: int, peers: int) -> Path:
    home = Path(__file__).parent / "out" / f"explorer-{entries}x{peers}"
    if not (home / LEDGER_FILE).is_file():
        home.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        generate(home / LEDGER_FILE, entries, peers)
        print(f"generated {entries} entries in {time.perf_counter() - started:.1f} s")
    return home


async def _measure_app(home: Path, now_ms: int) -> dict[str, float]:
    """Seconds to first paint, to the filled peers table, to one new entry, to a ledger page."""
    started = time.perf_counter()
    app = ExplorerApp(LedgerSource.open(home), home=home, now_ms=now_ms, poll_interval_s=None)
    async with app.run_test(size=(80, 24)) as pilot:
        first_paint = time.perf_counter() - started
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = time.perf_counter() - started
        with Ledger.open(home / LEDGER_FILE, OWNER,
                         LedgerConfig(checkpoint_every=0, checkpoint_on_close=False)) as ledger:
            ledger.record_success(identity("bench-peer-3").peer_id)
        applied = time.perf_counter()
        app.poll()
        await app.workers.wait_for_complete()
        await pilot.pause()
        applied = time.perf_counter() - applied
        paged = time.perf_counter()
        await pilot.press("l")
        await pilot.pause()
        paged = time.perf_counter() - paged
        app.exit()
    return {"first paint": first_paint, "peers table filled": table, "one new entry": applied,
            "ledger view page": paged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--peers", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="2 000 entries, 20 peers")
    args = parser.parse_args()
    entries, peers = (2_000, 20) if args.smoke else (args.entries, args.peers)
    cached = _home(entries, peers)
    now_ms = T0 + (entries + 1) * 1000
    with tempfile.TemporaryDirectory() as scratch:  # the run appends: work on a copy
        home = Path(scratch)
        shutil.copy(cached / LEDGER_FILE, home / LEDGER_FILE)
        started = time.perf_counter()
        book = PeerBook.load(LedgerSource.open(home), now_ms=now_ms)
        timings = {"open (read and score every entry)": time.perf_counter() - started}
        timings.update(asyncio.run(_measure_app(home, now_ms)))
    table = Table(title=f"explorer on {entries:,} entries, {len(book.scores())} peers (80x24)")
    table.add_column("step")
    table.add_column("ms", justify="right")
    for step, seconds in timings.items():
        table.add_row(step, f"{seconds * 1000:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
