"""Judging one challenge: from the receipts and the node's reveal to a signed verdict.

Rules (``specs/verification.md``, "Judging"):

* Before judging, the challenge must hold up on the verifier's side: every receipt signed by
  the node, the model the verifier holds, no adapter (``check_challengeable``; a failure is a
  ``VerifierError`` and no verdict).
* No reveal, or one that is not the node's signed answer to this challenge: ``unresponsive``.
* A signed reveal that contradicts the receipts, tensors the model cannot run, or an output
  outside the dtype's tolerance of the recomputation: ``fail``, with a ``FraudProof`` (the
  receipts, the reveal, the model id and the signed verdict) that anyone can re-check.
* Otherwise ``pass``. The same ``evaluate`` serves the fraud-proof checker, so the verifier
  and every later checker apply exactly the same rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from darwin.model import Checkpoint
from darwin.model import model_id as checkpoint_model_id
from darwin.model.torch_wire import from_wire
from darwin.protocol import (
    Challenge,
    FraudProof,
    Identity,
    ModelId,
    Outcome,
    Reveal,
    RevealError,
    SignatureError,
    UnattributableReveal,
    Verdict,
    VerdictBody,
    check_reveal,
)

from .errors import (
    InvalidChallenge,
    Unrecomputable,
    UnsupportedChallenge,
    VerifierError,
    WrongModel,
)
from .recompute import LayerRecomputer, RecomputeConfig
from .tolerance import Comparison, compare

__all__ = [
    "Finding",
    "Judgement",
    "Verifier",
    "VerifierConfig",
    "check_challengeable",
    "check_supported",
    "evaluate",
    "judge",
]


@dataclass(frozen=True)
class Finding:
    """What checking one reveal found, before anyone signs it."""

    outcome: Outcome
    reason: str
    comparison: Comparison | None = None  # set when the layer was recomputed


def check_challengeable(challenge: Challenge, model_id: ModelId) -> None:
    """Whether this verifier can judge ``challenge`` at all.

    Raises:
        InvalidChallenge: a receipt's signature does not verify.
        WrongModel: the receipts name another model than ``model_id``.
        UnsupportedChallenge: the receipts name an adapter.
    """
    try:
        challenge.verify()
    except SignatureError as exc:
        raise InvalidChallenge(f"receipts do not verify: {exc.reason}") from exc
    check_supported(challenge, model_id)


def check_supported(challenge: Challenge, model_id: ModelId) -> None:
    """Whether ``challenge`` is about ``model_id`` without an adapter.

    Raises:
        WrongModel: the receipts name another model than ``model_id``.
        UnsupportedChallenge: the receipts name an adapter.
    """
    if challenge.model_id != model_id:
        raise WrongModel(f"receipts name model {challenge.model_id.hex()}, the checkpoint is "
                         f"{model_id.hex()}")
    if challenge.adapter_id is not None:
        raise UnsupportedChallenge("recomputing with an adapter is not supported yet")


def evaluate(challenge: Challenge, reveal: Reveal | None, recomputer: LayerRecomputer) -> Finding:
    """Check the reveal against the receipts and recompute the layer (see module rules).

    The caller has checked the challenge (``check_challengeable``).
    """
    if reveal is None:
        return Finding(Outcome.UNRESPONSIVE, "no reveal within the promised retention")
    try:
        revealed = check_reveal(challenge, reveal)
    except UnattributableReveal as exc:
        return Finding(Outcome.UNRESPONSIVE, exc.reason)
    except RevealError as exc:
        return Finding(Outcome.FAIL, f"reveal contradicts the receipts: {exc.reason}")
    try:
        recomputed = recomputer.recompute(revealed)
    except Unrecomputable as exc:
        return Finding(Outcome.FAIL, exc.reason)
    comparison = compare(from_wire(revealed.output), recomputed, revealed.dtype)
    outcome = Outcome.PASS if comparison.passed else Outcome.FAIL
    return Finding(outcome, f"layer {challenge.layer} step {challenge.step}: "
                   f"{comparison.describe()}", comparison)


@dataclass(frozen=True)
class VerifierConfig:
    """How a verifier recomputes."""

    recompute: RecomputeConfig = field(default_factory=RecomputeConfig)


@dataclass(frozen=True)
class Judgement:
    """A signed verdict, its fraud proof when it is a fail, and the measured error."""

    verdict: Verdict
    fraud_proof: FraudProof | None
    finding: Finding

    @property
    def outcome(self) -> Outcome:
        return self.verdict.body.outcome


class Verifier:
    """Judges challenges about one model and signs the verdicts."""

    def __init__(
        self,
        identity: Identity,
        checkpoint: Checkpoint,
        *,
        model_id: ModelId | None = None,
        config: VerifierConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        identity: the verifier's key; signs verdicts.
        checkpoint: the model whose layers it recomputes.
        model_id: the checkpoint's id if already known (else computed: reads every weight
            once, then the digest cache answers).
        config: recomputation settings.
        clock: Unix seconds, for the verdicts' ``time_ms``.
        """
        self.identity = identity
        self.checkpoint = checkpoint
        self.model_id = model_id if model_id is not None else ModelId(
            checkpoint_model_id(checkpoint))
        self.config = config if config is not None else VerifierConfig()
        self.recomputer = LayerRecomputer(checkpoint, self.config.recompute)
        self._clock = clock

    def check_challengeable(self, challenge: Challenge) -> None:
        """``check_challengeable`` against this verifier's model (raises ``VerifierError``)."""
        check_challengeable(challenge, self.model_id)

    def judge(self, challenge: Challenge, reveal: Reveal | None, *,
              asked_ms: int | None = None) -> Judgement:
        """Judge one challenge and sign the verdict.

        Args:
            reveal: the node's answer, or None when it gave none in time (refused, timed
                out, or sent bytes that did not decode).
            asked_ms: when the challenge was sent (Unix ms); with no reveal, a challenge
                asked after the promise ended gets no verdict.

        Raises:
            VerifierError: the challenge cannot be judged here (see ``check_challengeable``),
                or a missing reveal was asked for after the node's promise ended.
        """
        self.check_challengeable(challenge)
        if reveal is None and asked_ms is not None and asked_ms > challenge.deadline_ms:
            raise VerifierError("asked after the node's retention ended; no verdict")
        finding = evaluate(challenge, reveal, self.recomputer)
        verdict = self.sign(challenge, finding.outcome, finding.reason)
        proof = None
        if finding.outcome is Outcome.FAIL:
            assert reveal is not None
            proof = FraudProof(challenge, reveal, challenge.model_id, verdict)
        return Judgement(verdict, proof, finding)

    def sign(self, challenge: Challenge, outcome: Outcome, reason: str) -> Verdict:
        """A verdict about ``challenge`` signed by this verifier."""
        body = VerdictBody.for_challenge(challenge, verifier=self.identity.peer_id,
                                         outcome=outcome, reason=reason,
                                         time_ms=int(self._clock() * 1000))
        return body.sign(self.identity)


def judge(
    challenge: Challenge,
    reveal: Reveal | None,
    checkpoint: Checkpoint,
    identity: Identity,
    *,
    model_id: ModelId | None = None,
) -> Judgement:
    """One-shot ``Verifier(identity, checkpoint).judge(challenge, reveal)``.

    Raises:
        VerifierError: see ``Verifier.judge``.
    """
    return Verifier(identity, checkpoint, model_id=model_id).judge(challenge, reveal)
