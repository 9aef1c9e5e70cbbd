"""The client's verification policy: which hops of a finished generation go to a verifier.

Rules (``specs/verification.md`` section 8.1):
- After generation, every hop (node, span) of the trace is sent to a verifier with probability
  ``verification_rate(score)`` (1 for a key on probation: every new key), or a fixed rate
  when the user overrides it. The choice is made after the node has answered every step, so
  the node cannot tell which requests will be checked.
- Verifiers are found in the DHT under ``verifier_key(model_id)``; the node checked is never
  its own verifier. The request carries that node's receipts only (trace plus replays).
- A verdict must be signed by the verifier that answered and be about the node asked for; a
  ``fail`` carries a fraud proof, which the client writes to
  ``<home>/fraud-proofs/<digest>.proof`` (no home: under the temp directory) and re-checks
  itself (``check_fraud_proof``: it has the model) before believing it. A refuted proof is
  evidence against the verifier.
- What was learnt goes to the client's ledger: the verdict (signed by the client, naming the
  verifier), and for a fail the checked proof (``fraud_proof`` confirmed: the node is banned;
  refuted: ``accusation_refuted`` against the verifier).
- Every network wait has a deadline; a verifier that fails is skipped for the next one.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from darwin.gossip.proof_store import ProofStore
from darwin.ledger import (
    AccusationRefuted,
    EntryKind,
    FraudStatus,
    Ledger,
    Score,
    VerdictOutcome,
    unknown_score,
    verification_rate,
)
from darwin.ledger import FraudProof as FraudProofEntry
from darwin.ledger import Verdict as VerdictEntry
from darwin.ledger.entries import RefValue
from darwin.model import Checkpoint
from darwin.net.framing import TransportError
from darwin.net.host import Host
from darwin.net.protocols import VERIFY_PROTOCOL, verifier_key
from darwin.net.request import RequestTimeout, request
from darwin.protocol import (
    CHALLENGE_LIMITS,
    ErrorFrame,
    ModelId,
    PeerId,
    Receipt,
    RemoteProtocolError,
    SignatureError,
)
from darwin.protocol.proof_request import proof_hash
from darwin.protocol.verify_request import (
    VERIFY_REQUEST_LIMITS,
    VerifyAnswer,
    VerifyRequest,
    decode_verify_answer,
)
from darwin.verifier import check_fraud_proof

logger = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite"


@dataclass(frozen=True)
class VerificationConfig:
    """How a client checks the hops of its generations."""

    rate: float | None = None  # fixed probability per hop; None: verification_rate(score)
    timeout: float = 120.0  # seconds for one verifier to challenge, judge and answer
    find_timeout: float = 5.0  # seconds to find verifiers in the DHT


@dataclass(frozen=True)
class HopCheck:
    """One hop sent to a verifier, and what came back."""

    peer_id: str
    start: int
    end: int
    outcome: str  # pass | fail | unresponsive | error (no verdict)
    layer: int | None = None
    step: int | None = None
    verifier: str | None = None
    reason: str = ""
    fraud_proof: Path | None = None  # where a fail's proof was written
    proof_check: str | None = None  # confirmed | refuted (our own re-check of a fail)

    def to_json(self) -> dict[str, object]:
        return {"peer_id": self.peer_id, "start": self.start, "end": self.end,
                "outcome": self.outcome, "layer": self.layer, "step": self.step,
                "verifier": self.verifier, "reason": self.reason,
                "fraud_proof": None if self.fraud_proof is None else str(self.fraud_proof),
                "proof_check": self.proof_check}


class NoVerdict(Exception):
    """A verifier gave no usable verdict."""


def hops_to_check(hops: Iterable[tuple[str, int, int]], scores: Mapping[str, Score],
                  rate: float | None, rng: random.Random) -> list[tuple[str, int, int]]:
    """The hops (peer, start, end) drawn for verification (see the module rules)."""
    chosen = []
    for peer, start, end in hops:
        score = scores.get(peer) or unknown_score(PeerId(peer))
        if rng.random() < (verification_rate(score) if rate is None else rate):
            chosen.append((peer, start, end))
    return chosen


async def ask_verifier(host: Host, verifier: str, addrs: Sequence[str],
                       verify_request: VerifyRequest, timeout: float) -> VerifyAnswer:
    """One verify request; the answer, signature and subject checked (raises NoVerdict)."""
    try:
        reply = await request(host, verifier, VERIFY_PROTOCOL, verify_request.to_wire(),
                              decode_verify_answer,
                              max_request=VERIFY_REQUEST_LIMITS.max_message_bytes,
                              max_answer=CHALLENGE_LIMITS.max_message_bytes, timeout=timeout,
                              addrs=addrs)
        answer = reply.answer
        if isinstance(answer, ErrorFrame):
            raise NoVerdict(f"{verifier} refused: {answer.code.value}: {answer.message}")
        answer.verdict.verify()
    except RequestTimeout:
        raise NoVerdict(f"{verifier} gave no verdict within {timeout} s") from None
    except (TransportError, ValueError, RemoteProtocolError, SignatureError) as exc:
        raise NoVerdict(f"{verifier}: {exc}") from exc
    body = answer.verdict.body
    if body.verifier != verifier or body.subject != verify_request.subject:
        raise NoVerdict(f"{verifier} answered a verdict by {body.verifier} about {body.subject}")
    return answer


class HopVerifier:
    """Sends hops of one generation to verifiers and records what they say."""

    def __init__(self, host: Host, model_id: ModelId, checkpoint: Checkpoint,
                 home: Path | None, config: VerificationConfig) -> None:
        self.host, self.model_id, self.checkpoint = host, model_id, checkpoint
        self.home, self.config = home, config

    async def check(self, hops: Sequence[tuple[str, int, int]], receipts: Sequence[Receipt],
                    addrs: Mapping[str, tuple[str, ...]]) -> list[HopCheck]:
        """Verify each hop with the first verifier that gives a verdict."""
        if not hops:
            return []
        verifiers = await self.host.find_providers(verifier_key(self.model_id),
                                                   self.config.find_timeout)
        checks = []
        for peer, start, end in hops:
            mine = tuple(r for r in receipts if str(r.body.node_id) == peer)
            request = VerifyRequest(self.model_id, PeerId(peer), addrs.get(peer, ())[:8], mine)
            check = HopCheck(peer, start, end, "error",
                             reason="no verifier found (other than the node itself)")
            for verifier in verifiers:
                if verifier.peer_id == peer:
                    continue
                try:
                    answer = await ask_verifier(self.host, verifier.peer_id, verifier.addrs,
                                                request, self.config.timeout)
                except NoVerdict as exc:
                    logger.info("verification of %s: %s", peer, exc)
                    check = HopCheck(peer, start, end, "error", reason=str(exc))
                    continue
                check = await trio.to_thread.run_sync(self._settle, peer, start, end, answer)
                break
            checks.append(check)
        return checks

    def _settle(self, peer: str, start: int, end: int, answer: VerifyAnswer) -> HopCheck:
        """Write and re-check a fail's proof, record the verdict (worker thread)."""
        body = answer.verdict.body
        path = status = None
        if answer.fraud_proof is not None:
            path = self._write_proof(answer.fraud_proof)
            try:
                proof = answer.proof()
                assert proof is not None
                checked = check_fraud_proof(proof, self.checkpoint)
                status = "confirmed" if checked.confirmed else "refuted"
            except Exception as exc:  # a malformed or uncheckable proof proves nothing
                logger.info("fraud proof from %s cannot be checked: %s", body.verifier, exc)
                status = "refuted"
        self._record(answer, status)
        return HopCheck(peer, start, end, body.outcome.value, body.layer, body.step,
                        str(body.verifier), body.reason, path, status)

    def _write_proof(self, proof: bytes) -> Path:
        home = self.home if self.home is not None else Path(tempfile.gettempdir()) / "darwin"
        store = ProofStore.in_home(home)
        return store.path(store.put(proof))

    def _record(self, answer: VerifyAnswer, status: str | None) -> None:
        if self.home is None:
            return
        from darwin.home import load_or_create_identity

        body = answer.verdict.body
        identity = load_or_create_identity(self.home)
        subject, verifier = str(body.subject), str(body.verifier)
        with Ledger.open(self.home / LEDGER_FILE, identity) as ledger:
            if status != "refuted":
                refs: dict[str, RefValue] = {"verifier": verifier,
                                             "challenge": body.challenge_digest,
                                             "layer": body.layer, "step": body.step}
                ledger.append(EntryKind.VERDICT, subject,
                              VerdictEntry(VerdictOutcome(body.outcome.value), refs))
            if answer.fraud_proof is None:
                return
            digest = proof_hash(answer.fraud_proof)
            if status == "confirmed":
                ledger.append(EntryKind.FRAUD_PROOF, subject, FraudProofEntry(
                    FraudStatus.CONFIRMED, digest, verifier))
            else:
                ledger.append(EntryKind.ACCUSATION_REFUTED, subject,
                              AccusationRefuted(verifier, digest))

