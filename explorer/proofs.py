"""Fraud proofs as the explorer lists them, and their re-check with the real ``verify-proof``.

Rules (``specs/explorer.md``):

* A ``fraud_proof`` or ``accusation_refuted`` entry names a proof by hash; its bytes are in the
  home's proof store (``<home>/fraud-proofs``, ``darwin.gossip.proof_store``), which refuses a
  file that does not hash to its name.
* A re-check runs ``darwin.verifier.verify_proof_command`` (the code behind ``darwin
  verify-proof``) on the stored file against the checkpoint given with ``--model``: it blocks
  for as long as one layer's recompute takes, so the UI calls it from a worker thread.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from darwin.gossip.proof_store import ProofStore
from darwin.ledger import AccusationRefuted, Entry, FraudProof

__all__ = ["ProofRef", "Recheck", "proof_ref", "recheck"]


@dataclass(frozen=True)
class ProofRef:
    """A proof named by a ledger entry: who accused whom, and what the owner concluded."""

    seq: int
    time_ms: int
    accused: str
    accuser: str
    proof_hash: bytes
    conclusion: str  # "confirmed", "unconfirmed" (fraud_proof) or "refuted"

    @property
    def refuted(self) -> bool:
        return self.conclusion == "refuted"


def proof_ref(entry: Entry) -> ProofRef | None:
    """The proof an entry names, or None if it names none."""
    body = entry.body
    if isinstance(body, FraudProof):
        return ProofRef(entry.seq, entry.time_ms, entry.subject, body.accuser, body.proof_hash,
                        str(body.status))
    if isinstance(body, AccusationRefuted):
        return ProofRef(entry.seq, entry.time_ms, entry.subject, body.accuser, body.proof_hash,
                        "refuted")
    return None


@dataclass(frozen=True)
class Recheck:
    """The outcome of one re-check: ``outcome`` is confirmed, refuted or error."""

    outcome: str
    message: str

    @property
    def confirmed(self) -> bool:
        return self.outcome == "confirmed"


def recheck(home: Path, proof: ProofRef, model: Path | None) -> Recheck:
    """Re-check ``proof`` from ``home``'s proof store against the checkpoint at ``model``."""
    if model is None:
        return Recheck("error", "a re-check runs the accused layer: start the explorer with "
                                "--model PATH (the checkpoint the proof is about)")
    store = ProofStore.in_home(home)
    path = store.path(proof.proof_hash)
    try:
        held = store.get(proof.proof_hash)
    except OSError as exc:
        return Recheck("error", f"cannot read {path}: {exc.strerror or exc}")
    if held is None:
        return Recheck("error", f"the proof {proof.proof_hash.hex()[:16]}… is not in "
                                f"{store.directory} (or its file is damaged)")
    # Imported here: the verifier loads torch, which the rest of the explorer never needs.
    from darwin.verifier.verify_proof import EXIT_CONFIRMED, EXIT_REFUTED, verify_proof_command

    out = io.StringIO()
    status = verify_proof_command(path, model, json_output=True, out=out)
    text = out.getvalue().strip()
    if status not in (EXIT_CONFIRMED, EXIT_REFUTED):
        return Recheck("error", text.removeprefix("error: "))
    report = json.loads(text)
    return Recheck(str(report["outcome"]), str(report["reason"]))
