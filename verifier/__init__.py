"""darwin.verifier: random-layer challenges, recompute-and-compare, verdicts and fraud proofs.

Public names:
- `choose_challenge` / `hop_histories` / `detection_probability`: which hop, step and layer
  to challenge (pure, injected RNG), and what one challenge catches.
- `Verifier` judges a challenge and the node's reveal into a signed `Verdict` (and a
  `FraudProof` on fail); `evaluate` is the shared rule; `LayerRecomputer` loads single layers.
- `check_fraud_proof` re-checks a proof from its own content (`recheck_fraud_proof`: or says
  it cannot be re-run here); `verify_proof_command` is
  ``darwin verify-proof FILE --model PATH``.
- `TOLERANCES` / `compare`: the calibrated per-dtype relative L2 tolerances.
- Every deliberate error is a `VerifierError`.

Normative text: ``specs/verification.md``.
"""

from .errors import (
    InvalidChallenge,
    Unrecomputable,
    UnsupportedChallenge,
    VerifierError,
    WrongModel,
)
from .fraud import FraudCheck, FraudOutcome, check_fraud_proof, recheck_fraud_proof
from .policy import (
    HopHistory,
    challenges_for_confidence,
    choose_challenge,
    detection_probability,
    hop_histories,
)
from .recompute import LayerRecomputer, RecomputeConfig
from .tolerance import TOLERANCES, Comparison, compare, relative_error, tolerance_for
from .verdict import (
    Finding,
    Judgement,
    Verifier,
    VerifierConfig,
    check_challengeable,
    check_supported,
    evaluate,
    judge,
)
from .verify_proof import verify_proof_command

__all__ = [
    "TOLERANCES",
    "Comparison",
    "Finding",
    "FraudCheck",
    "FraudOutcome",
    "HopHistory",
    "InvalidChallenge",
    "Judgement",
    "LayerRecomputer",
    "RecomputeConfig",
    "Unrecomputable",
    "UnsupportedChallenge",
    "Verifier",
    "VerifierConfig",
    "VerifierError",
    "WrongModel",
    "challenges_for_confidence",
    "check_challengeable",
    "check_fraud_proof",
    "check_supported",
    "choose_challenge",
    "compare",
    "detection_probability",
    "evaluate",
    "hop_histories",
    "judge",
    "recheck_fraud_proof",
    "relative_error",
    "tolerance_for",
    "verify_proof_command",
]
