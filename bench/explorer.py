"""The explorer on a large ledger: how long it takes to open, to paint, and to apply one entry.

A ledger of ``--entries`` entries (100 000 by default) is generated once into bench/out/ with
real signatures: the owner's observations of ``--peers`` peers (successes, latencies, failures,
violations), verdicts signed by a dozen verifiers, two confirmed fraud proofs, one refuted
accusation and a checkpoint every 1 000 entries (the signed head file included), so that
``darwin ledger verify`` accepts it. Then, headless (``App.run_test``) at 80x24:

- open: reading every entry and folding it into the reputation (``PeerBook.load``);
- first paint: from starting the app to the peers table on screen (the peers screen mounted
  and the first refresh done);
- one new entry: another process's append, from the poll that reads it to the table redrawn;
- the ledger view: its newest page read from SQLite and painted.

Run: ``.venv/bin/python bench/explorer.py [--entries 100000]``; ``--smoke`` is a 2 000-entry
run.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from pathlib import Path

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
