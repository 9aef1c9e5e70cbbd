"""Ledger records as the simulated clients write them: real ``Record``s, stand-in signatures.

``reputation`` consumes ``Record``s (``specs/reputation.md``); it never checks a signature,
which the ledger does on append. Signing with ed25519 costs about 40 µs a record and a run
writes millions, so a record here carries a unique 64-byte stand-in instead (a counter): every
other field is built and validated by the real ``Record`` constructor, and the stand-in keeps
the ``(signer, signature)`` identity that ``reputation`` de-duplicates by.
"""

from __future__ import annotations

import copy
import itertools
from functools import lru_cache

from darwin.ledger import (
    AccusationRefuted,
    EntryKind,
    Failure,
    FraudProof,
    FraudStatus,
    Record,
    Success,
    Verdict,
    VerdictOutcome,
)
from darwin.ledger.entries import encode_payload
from darwin.protocol import PeerId

__all__ = ["RecordMaker"]

EPOCH_MS = 1_700_000_000_000  # simulated time 0, as a wall-clock instant


@lru_cache(maxsize=4096)
def _verdict_payload(outcome: VerdictOutcome, verifier: str) -> bytes:
    return encode_payload(EntryKind.VERDICT, Verdict(outcome, {"verifier": verifier}))


_SUCCESS = encode_payload(EntryKind.SUCCESS, Success())


class RecordMaker:
    """Makes the records of one simulated world; each gets the next stand-in signature."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def _record(self, kind: EntryKind, subject: str, payload: bytes, signer: str,
                now_s: float) -> Record:
        signature = next(self._counter).to_bytes(64, "big")
        return Record(kind, subject, payload, PeerId(signer), time_ms(now_s), b"", signature)

    def success(self, owner: str, peer: str, now_s: float) -> Record:
        return self._record(EntryKind.SUCCESS, peer, _SUCCESS, owner, now_s)

    def failure(self, owner: str, peer: str, reason: str, now_s: float) -> Record:
        return self._record(EntryKind.FAILURE, peer,
                            encode_payload(EntryKind.FAILURE, Failure(reason)), owner, now_s)

    def verdict(self, signer: str, peer: str, outcome: VerdictOutcome, verifier: str,
                now_s: float) -> Record:
        return self._record(EntryKind.VERDICT, peer, _verdict_payload(outcome, verifier),
                            signer, now_s)

    def fraud_proof(self, owner: str, peer: str, accuser: str, proof: bytes,
                    now_s: float) -> Record:
        body = FraudProof(FraudStatus.CONFIRMED, proof, accuser)
        return self._record(EntryKind.FRAUD_PROOF, peer,
                            encode_payload(EntryKind.FRAUD_PROOF, body), owner, now_s)

    def reissued(self, record: Record, owner: str, now_s: float) -> Record:
        """``record`` restated by another owner at ``now_s`` (a fraud notice each client
        re-checks and records as its own). The template was validated when it was made and
        ``owner`` is a client's valid peer id, so the copy skips re-validating the payload:
        a notice reaches every client, and that would be most of a run's time."""
        restated = copy.copy(record)
        object.__setattr__(restated, "signer", PeerId(owner))
        object.__setattr__(restated, "time_ms", time_ms(now_s))
        object.__setattr__(restated, "signature", next(self._counter).to_bytes(64, "big"))
        return restated

    def refuted(self, owner: str, peer: str, accuser: str, proof: bytes,
                now_s: float) -> Record:
        body = AccusationRefuted(accuser, proof)
        return self._record(EntryKind.ACCUSATION_REFUTED, peer,
                            encode_payload(EntryKind.ACCUSATION_REFUTED, body), owner, now_s)


def time_ms(now_s: float) -> int:
    """The wall-clock instant, in ms, of simulated time ``now_s``."""
    return EPOCH_MS + int(now_s * 1000)
