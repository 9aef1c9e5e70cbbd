"""The verifier role: ``/darwin/verify/1``, one request, one challenge, one signed verdict.

Rules (normative text: ``specs/verification.md`` section 8.1):
- A client sends a `VerifyRequest` (the subject node, its addresses, the receipts it holds).
  The verifier checks the model is its own, draws hop step and layer at random among the
  subject's challengeable steps (`choose_challenge`, a system RNG the node cannot predict),
  and checks every receipt signature (`Verifier.check_challengeable`) before anything else.
- It challenges the subject over ``/darwin/challenge/1`` within ``challenge_timeout``: no
  answer in time, an error frame, a transport failure or bytes that do not decode as a reveal
  are "no reveal" (``unresponsive``).
- Judging (recomputing one layer, streamed from the checkpoint) runs in a worker thread, one
  at a time. The verdict is appended to the verifier's own ledger (the node's one `Ledger`,
  ``<home>/ledger.sqlite``, a ``verdict`` entry about the subject), its record is published on
  the model's verdict gossip topic (when a ``publish`` hook is set; a failure to publish is
  logged, the answer still goes out), and it is returned with the fraud proof of a ``fail``.
- A ``fail``'s proof is also kept in the node's proof store (served over ``/darwin/proof/1``)
  and stated in the ledger as our own ``fraud_proof`` entry, confirmed (we re-ran the layer),
  whose record is published after the verdict: the notice that lets every other node fetch
  the proof, re-check it and ban the subject (``specs/gossip.md`` §4.2).
- A request that cannot be judged (another model, no challengeable step, a bad signature) is
  answered with ``ErrorFrame(bad_request)``; the verifier's failures with ``internal``.
- The verifier announces itself in the DHT under ``verifier_key(model_id)``.
- The handler judges with any `Judge` (a `Verifier`; node/adversaries.py wraps one for the
  test-only ``false-fail`` cheat).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Protocol

import trio

from darwin.gossip.proof_store import ProofStore, ProofTooLarge
from darwin.gossip.verdicts import Publish, publish_or_log
from darwin.ledger import EntryKind, FraudStatus, Ledger, Record, VerdictOutcome
from darwin.ledger import FraudProof as FraudProofEntry
from darwin.ledger import Verdict as VerdictEntry
from darwin.ledger.entries import RefValue
from darwin.net.framing import FrameConfig, FramedStream, FrameTooLarge, TransportError
from darwin.net.host import Host, Stream, stream_peer_id
from darwin.net.protocols import CHALLENGE_PROTOCOL
from darwin.net.request import RequestTimeout, request
from darwin.node.config import VerifyConfig
from darwin.protocol import (
    CHALLENGE_LIMITS,
    Challenge,
    ErrorCode,
    ErrorFrame,
    ModelId,
    RemoteProtocolError,
    Reveal,
    decode_answer,
)
from darwin.protocol.verify_request import VERIFY_REQUEST_LIMITS, VerifyAnswer, VerifyRequest
from darwin.verifier import Judgement, VerifierError, choose_challenge

__all__ = ["Judge", "VerifyHandler"]

logger = logging.getLogger(__name__)


class Judge(Protocol):
    """What the handler asks of its `Verifier`."""

    @property
    def model_id(self) -> ModelId:
        """The model it checks."""
        ...

    def check_challengeable(self, challenge: Challenge) -> None:
        """Raises VerifierError: ``challenge`` cannot be judged against this model."""
        ...

    def judge(self, challenge: Challenge, reveal: Reveal | None, *,
              asked_ms: int | None = None) -> Judgement:
        """Judge one challenge and sign the verdict."""
        ...


async def challenge_node(host: Host, challenge: Challenge, addrs: tuple[str, ...],
                         timeout: float) -> Reveal | None:
    """Send ``challenge`` to its node; its reveal, or None for no usable answer in time."""
    node = str(challenge.node_id)
    try:
        reply = await request(host, node, CHALLENGE_PROTOCOL, challenge.to_wire(), decode_answer,
                              max_request=CHALLENGE_LIMITS.max_message_bytes,
                              max_answer=CHALLENGE_LIMITS.max_message_bytes, timeout=timeout,
                              dial_timeout=timeout, addrs=addrs)
    except RequestTimeout:
        logger.info("challenge to %s: no answer within %g s", node, timeout)
        return None
    except (TransportError, ValueError, RemoteProtocolError) as exc:
        logger.info("challenge to %s: no usable answer: %s", node, exc)
        return None
    answer = reply.answer
    if isinstance(answer, ErrorFrame):
        logger.info("challenge to %s: refused: %s %s", node, answer.code.value, answer.message)
        return None
    return answer


class VerifyHandler:
    """Serves ``/darwin/verify/1`` streams with one `Verifier`."""

    def __init__(self, host: Host, verifier: Judge, ledger: Ledger, config: VerifyConfig, *,
                 publish: Publish | None = None,
                 proofs: ProofStore | None = None) -> None:
        self.host = host
        self.verifier = verifier
        self.ledger = ledger  # the node's ledger, owned (and closed) by the node
        self.publish = publish  # broadcasts our verdicts and notices (VerdictGossip.publish)
        self.proofs = proofs  # where fail proofs are kept and served from; None: not kept
        self.config = config
        self.rng = random.SystemRandom()
        self.judging = trio.CapacityLimiter(1)
        self.frames = FrameConfig.bounded(config.max_request_bytes, config.request_timeout)

    async def __call__(self, stream: Stream) -> None:
        """Answer one verify request (raises TransportError when the peer breaks the stream)."""
        framed = FramedStream(stream, self.frames)
        client = stream_peer_id(stream)
        try:
            payload = await framed.read()
            request = await trio.to_thread.run_sync(
                VerifyRequest.from_wire, payload, VERIFY_REQUEST_LIMITS)
            challenge = await trio.to_thread.run_sync(self._choose, request)
        except (FrameTooLarge, RemoteProtocolError, VerifierError) as exc:
            reason = getattr(exc, "reason", str(exc))
            await self._refuse(framed, client, ErrorCode.BAD_REQUEST, reason)
            return
        asked_ms = time.time_ns() // 1_000_000
        reveal = await challenge_node(self.host, challenge, request.addrs,
                                      self.config.challenge_timeout)
        try:
            judgement, proof, records = await trio.to_thread.run_sync(
                self._judge, challenge, reveal, asked_ms, limiter=self.judging)
        except VerifierError as exc:
            await self._refuse(framed, client, ErrorCode.BAD_REQUEST, exc.reason)
            return
        except Exception:
            logger.exception("verify request from %s: judging failed", client)
            await self._refuse(framed, client, ErrorCode.INTERNAL, "the verifier failed")
            return
        logger.info("verify request from %s: %s %s at layer %d step %d: %s", client,
                    judgement.outcome.value, challenge.node_id, challenge.layer,
                    challenge.step, judgement.verdict.body.reason)
        for record in records:
            await publish_or_log(self.publish, record)
        await framed.write(VerifyAnswer(judgement.verdict, proof).to_wire())

    def _choose(self, request: VerifyRequest) -> Challenge:
        """The random challenge for ``request`` (worker thread; raises VerifierError)."""
        if request.model_id != self.verifier.model_id:
            raise VerifierError(f"this verifier checks model {self.verifier.model_id.hex()}, "
                                f"not {request.model_id.hex()}")
        challenge = choose_challenge(request.receipts, self.rng, subject=request.subject,
                                     now_ms=time.time_ns() // 1_000_000)
        if challenge is None:
            raise VerifierError(f"no challengeable step of {request.subject} in the receipts")
        self.verifier.check_challengeable(challenge)
        return challenge

    def _judge(self, challenge: Challenge, reveal: Reveal | None,
               asked_ms: int) -> tuple[Judgement, bytes | None, list[Record]]:
        """Judge, sign, append to our ledger (worker thread).

        Returns:
            The judgement, its encoded fraud proof (a fail) and the records to publish: the
            verdict's, then the fraud_proof notice's (a fail whose proof could be kept).
        """
        judgement = self.verifier.judge(challenge, reveal, asked_ms=asked_ms)
        body = judgement.verdict.body
        refs: dict[str, RefValue] = {
            "challenge": body.challenge_digest, "session": body.session_id,
            "step": body.step, "layer": body.layer}
        entry = self.ledger.append(EntryKind.VERDICT, str(body.subject),
                                   VerdictEntry(VerdictOutcome(body.outcome.value), refs))
        if judgement.fraud_proof is None:
            return judgement, None, [entry.record]
        proof = judgement.fraud_proof.to_wire()
        notice = self._keep_proof(str(body.subject), proof)
        return judgement, proof, [entry.record, *([] if notice is None else [notice])]

    def _keep_proof(self, subject: str, proof: bytes) -> Record | None:
        """Store a fail's proof and state it as our confirmed fraud_proof; the entry's record.

        A proof the store refuses (too large) or cannot write is logged and not stated: a
        notice must name bytes we can serve.
        """
        if self.proofs is None:
            return None
        try:
            digest = self.proofs.put(proof)
        except (ProofTooLarge, OSError) as exc:
            logger.warning("fraud proof about %s not kept: %s", subject, exc)
            return None
        entry = self.ledger.append(EntryKind.FRAUD_PROOF, subject, FraudProofEntry(
            FraudStatus.CONFIRMED, digest, str(self.ledger.owner)))
        return entry.record

    async def _refuse(self, framed: FramedStream, client: str, code: ErrorCode,
                      reason: str) -> None:
        logger.info("verify request from %s refused: %s: %s", client, code.value, reason)
        await framed.write(ErrorFrame.refusal(code, reason).to_wire())
