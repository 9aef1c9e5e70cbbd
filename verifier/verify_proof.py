"""``darwin verify-proof FILE --model PATH``: re-check a fraud proof file on its own.

The file holds one encoded ``FraudProof`` (``FraudProof.to_wire()``). Exit status: 0 when the
proof is confirmed, 1 when it is refuted (a false accusation, or evidence that is not the
node's), 2 when it cannot be checked here (unreadable or malformed file, another model, an
adapter).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from darwin.model import Checkpoint, ModelError
from darwin.protocol import CHALLENGE_LIMITS, FraudProof, RemoteProtocolError

from .errors import VerifierError
from .fraud import FraudCheck, check_fraud_proof

__all__ = ["EXIT_CONFIRMED", "EXIT_ERROR", "EXIT_REFUTED", "verify_proof_command"]

EXIT_CONFIRMED, EXIT_REFUTED, EXIT_ERROR = 0, 1, 2


def _read_proof(path: Path) -> FraudProof:
    """Raises OSError, RemoteProtocolError."""
    with path.open("rb") as handle:
        data = handle.read(CHALLENGE_LIMITS.max_message_bytes + 1)
    return FraudProof.from_wire(data)


def _report(proof: FraudProof, check: FraudCheck) -> dict[str, object]:
    body = proof.verdict.body
    return {
        "outcome": check.outcome.value,
        "reason": check.reason,
        "false_accusation": check.false_accusation,
        "node": str(proof.challenge.node_id),
        "verifier": str(body.verifier),
        "model_id": proof.model_id.hex(),
        "session_id": proof.challenge.session_id.hex(),
        "step": proof.challenge.step,
        "layer": proof.challenge.layer,
        "error": None if check.comparison is None else check.comparison.error,
        "tolerance": None if check.comparison is None else check.comparison.tolerance,
    }


def verify_proof_command(path: str | Path, model: str | Path, *, json_output: bool = False,
                         out: TextIO | None = None) -> int:
    """Check the fraud proof in ``path`` against the checkpoint at ``model``; print the result.

    Returns:
        ``EXIT_CONFIRMED`` (0), ``EXIT_REFUTED`` (1) or ``EXIT_ERROR`` (2).
    """
    stream = out if out is not None else sys.stdout
    try:
        proof = _read_proof(Path(path))
        check = check_fraud_proof(proof, Checkpoint.open(model))
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=stream)
        return EXIT_ERROR
    except RemoteProtocolError as exc:
        print(f"error: {path} is not a valid fraud proof: {exc.reason}", file=stream)
        return EXIT_ERROR
    except (ModelError, VerifierError) as exc:
        print(f"error: cannot check the proof with {model}: {exc}", file=stream)
        return EXIT_ERROR
    if json_output:
        print(json.dumps(_report(proof, check)), file=stream)
    else:
        who = (f"node {proof.challenge.node_id}" if check.confirmed
               else f"verifier {proof.verdict.body.verifier}")
        print(f"{check.outcome.value}: {check.reason} ({who}, layer {proof.challenge.layer}, "
              f"step {proof.challenge.step})", file=stream)
    return EXIT_CONFIRMED if check.confirmed else EXIT_REFUTED
