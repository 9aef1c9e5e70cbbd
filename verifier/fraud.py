"""Re-checking a fraud proof with nothing but the proof and the layer's weights.

Rules (``specs/verification.md``, "Fraud proofs"):

* The checker trusts nobody: the verdict must be signed by its verifier and be about exactly
  the proof's challenge; the receipts must be signed by the accused node; the reveal must be
  the node's signed answer to that challenge. Any of these failing makes the proof
  worthless: ``refuted`` (with ``false_accusation`` unset, since nobody can be blamed).
* Then the layer is judged exactly as the verifier judges it (``verdict.evaluate``):
  a ``fail`` confirms the proof; a ``pass`` refutes it and is a false accusation by the
  verifier who signed the verdict (``false_accusation``: its signed verdict is the evidence).
* ``recheck_fraud_proof`` is the same check for a node told of a proof by a peer: it returns
  None instead of raising when the checkpoint cannot re-run the proof (another model, an
  adapter), and only when the proof's signed parts hold, so "cannot check here" is never
  said of material nobody signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from darwin.model import Checkpoint
from darwin.model import model_id as checkpoint_model_id
from darwin.protocol import FraudProof, ModelId, Outcome, SignatureError

from .errors import UnsupportedChallenge, WrongModel
from .recompute import LayerRecomputer
from .tolerance import Comparison
from .verdict import check_supported, evaluate

__all__ = ["FraudCheck", "FraudOutcome", "check_fraud_proof", "recheck_fraud_proof"]


class FraudOutcome(Enum):
    """What re-checking a fraud proof found; the value is the display name."""

    CONFIRMED = "confirmed"  # the node's signed data shows a fault
    REFUTED = "refuted"  # the proof does not show a fault


@dataclass(frozen=True)
class FraudCheck:
    """The result of ``check_fraud_proof``."""

    outcome: FraudOutcome
    reason: str
    # Refuted although the evidence is genuine and the verdict validly signed: the verifier
    # named in the verdict accused an honest computation.
    false_accusation: bool = False
    comparison: Comparison | None = None

    @property
    def confirmed(self) -> bool:
        return self.outcome is FraudOutcome.CONFIRMED


def _refuted(reason: str) -> FraudCheck:
    return FraudCheck(FraudOutcome.REFUTED, reason)


def _check_verdict(proof: FraudProof) -> FraudCheck | None:
    """A refutation unless the verdict is its verifier's and about the proof's challenge."""
    try:
        proof.verdict.verify()
    except SignatureError as exc:
        return _refuted(f"the verdict is not signed by its verifier: {exc.reason}")
    if not proof.verdict.body.about(proof.challenge):
        return _refuted("the verdict is about another challenge than the proof's")
    return None


def _check_receipts(proof: FraudProof) -> FraudCheck | None:
    """A refutation unless every receipt is signed by the accused node."""
    try:
        proof.challenge.verify()
    except SignatureError as exc:
        return _refuted(f"the receipts are not the node's: {exc.reason}")
    return None


def check_fraud_proof(
    proof: FraudProof,
    checkpoint: Checkpoint,
    *,
    model_id: ModelId | None = None,
    recomputer: LayerRecomputer | None = None,
) -> FraudCheck:
    """Re-run the accused layer and say whether the proof holds.

    Args:
        checkpoint: the model the proof's receipts name.
        model_id: the checkpoint's id if known (else computed from its weights).
        recomputer: a loaded-layer cache to reuse (else one for this call).

    Raises:
        WrongModel: the checkpoint is not the model the proof names.
        UnsupportedChallenge: the receipts name an adapter.
    """
    verdict, challenge = proof.verdict, proof.challenge
    refuted = _check_verdict(proof)
    if refuted is not None:
        return refuted
    known = model_id if model_id is not None else ModelId(checkpoint_model_id(checkpoint))
    check_supported(challenge, known)
    refuted = _check_receipts(proof)
    if refuted is not None:
        return refuted
    finding = evaluate(challenge, proof.reveal,
                       recomputer if recomputer is not None else LayerRecomputer(checkpoint))
    if finding.outcome is Outcome.FAIL:
        return FraudCheck(FraudOutcome.CONFIRMED, finding.reason, comparison=finding.comparison)
    if finding.outcome is Outcome.UNRESPONSIVE:
        return _refuted(f"the reveal is not the node's: {finding.reason}")
    return FraudCheck(FraudOutcome.REFUTED, f"false accusation by {verdict.body.verifier}: "
                      f"{finding.reason}", false_accusation=True, comparison=finding.comparison)


def recheck_fraud_proof(
    proof: FraudProof,
    checkpoint: Checkpoint,
    *,
    model_id: ModelId | None = None,
    recomputer: LayerRecomputer | None = None,
) -> FraudCheck | None:
    """``check_fraud_proof``, or None when ``checkpoint`` cannot re-run the proof.

    A node told of a proof by a peer must tell "the proof does not hold" (recorded against
    the accuser) from "it cannot be re-run here" (recorded as unconfirmed). None means the
    latter, and is returned only when the verdict and the receipts are genuinely signed.
    """
    try:
        return check_fraud_proof(proof, checkpoint, model_id=model_id, recomputer=recomputer)
    except (WrongModel, UnsupportedChallenge):
        pass
    return _check_verdict(proof) or _check_receipts(proof)
