"""TEST ONLY: deliberate misbehaviours of a node, for the adversarial suite and ``darwin demo``.

``darwin-node join --cheat MODE`` (hidden from ``--help``; ``specs/verification.md`` section 10)
makes the node break the protocol in one precise way, so that tests can show each break is
caught. Nothing here runs unless that flag is given. Rules:

- Every adversary is a wrapper of an honest part, composed here and only here: `load_settings`
  says how to load the span, `compose` turns the honest `Parts` into the ones served. The
  serving and verifying handlers know nothing of cheats.
- The cheating layer is the *last* layer of the served span (with a 1-block span, the only one),
  so one challenge of that span is certain to hit it.
- Compute cheats (``noise``, ``skip``, ``bf16``) wrap the span's runner (`CheatingSpan`); they
  commit and sign what they computed, as a real cheater would. ``weights`` perturbs the loaded
  weights of that layer by 1% (the announced model id stays the honest one).
- Answer cheats (``mismatch``, ``replay``) change what a step returns after it was committed
  and retained (`TamperedAnswers`).
- Challenge cheats change the answer to a challenge: ``refuse`` reads it and never answers
  (`RefusingChallenges`), ``inconsistent`` reveals an output that contradicts its commitments,
  signed anyway (`InconsistentReveals`). The verifier cheat ``false-fail`` signs a fail
  whatever the recomputation found (`FalseAccuser`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass

import torch

from darwin.model import Span, SpanOutput, SpanRunner, SpanSession
from darwin.model.torch_wire import from_wire, to_wire
from darwin.net.framing import FrameConfig, FramedStream, TransportError
from darwin.net.host import Stream, StreamHandler, stream_peer_id
from darwin.node.config import Cheat
from darwin.node.serving.challenge_handler import ChallengeHandler, Reveals
from darwin.node.serving.served_span import ServedSpan, SessionCompute
from darwin.node.verifying.verify_handler import Judge
from darwin.protocol import (
    Challenge,
    FraudProof,
    Identity,
    ModelId,
    Outcome,
    Reveal,
    SessionId,
    StepRequest,
    StepResult,
)
from darwin.verifier import Judgement, Verifier

__all__ = ["COMPUTE_CHEATS", "CheatingSpan", "FalseAccuser", "InconsistentReveals", "Parts",
           "RefusingChallenges", "TamperedAnswers", "compose", "load_settings", "perturb_layer"]

logger = logging.getLogger(__name__)

# The refuse cheat waits (an hour at most) for the verifier to give up and reset the stream.
_UNTIL_RESET = FrameConfig(max_frame_size=16, frame_timeout=None, idle_timeout=3600.0)

COMPUTE_CHEATS = frozenset({Cheat.NOISE, Cheat.SKIP, Cheat.BF16})
NOISE_SCALE = 0.01  # relative L2 size of the noise the ``noise`` and ``mismatch`` cheats add


@dataclass(frozen=True)
class Parts:
    """What a node serves with, as `compose` returns them."""

    served: ServedSpan | None  # None: a verifier that serves no blocks
    challenges: StreamHandler | None  # the /darwin/challenge/1 handler (None with no span)
    verifier: Judge | None  # what /darwin/verify/1 judges with; None: not a verifier


def load_settings(cheat: Cheat | None, dtype: torch.dtype,
                  resident_blocks: int | None) -> tuple[torch.dtype, int | None]:
    """The dtype and resident blocks to load the span with: ``bf16`` computes in bfloat16,
    ``weights`` keeps every block resident (its perturbation is made once, in place)."""
    if cheat is Cheat.BF16:
        return torch.bfloat16, resident_blocks
    if cheat is Cheat.WEIGHTS:
        return dtype, None
    return dtype, resident_blocks


def compose(cheat: Cheat | None, served: ServedSpan | None,
            challenges: ChallengeHandler | None, verifier: Verifier | None,
            dtype: torch.dtype) -> Parts:
    """The parts to serve: the honest ones, with the adversary of ``cheat`` around its part.

    Args:
        cheat: the misbehaviour; None serves the honest parts as they are.
        served, challenges, verifier: the honest parts (the span loaded per `load_settings`;
            None: the node has no such part, and a cheat of that part changes nothing).
        dtype: the dtype the node commits in and announces.
    """
    parts = Parts(served, challenges, verifier)
    if cheat is Cheat.FALSE_FAIL and verifier is not None:
        return dataclasses.replace(parts, verifier=FalseAccuser(verifier))
    if cheat is None or served is None or challenges is None:
        return parts
    last = served.span[1] - 1
    if cheat in COMPUTE_CHEATS:
        logger.warning("CHEAT %s at layer %d (test only)", cheat.value, last)
        runner = CheatingSpan(served.runner, cheat, dtype)
        return dataclasses.replace(parts, served=ServedSpan(
            runner, served.identity, served.commit, served.store))
    if cheat is Cheat.WEIGHTS:
        logger.warning("CHEAT weights: layer %d perturbed by 1%% (test only)", last)
        assert isinstance(served.runner, SpanRunner), "weights are perturbed where they live"
        perturb_layer(served.runner, last)
        return parts
    if cheat in (Cheat.MISMATCH, Cheat.REPLAY):
        return dataclasses.replace(parts, served=TamperedAnswers(served, cheat))
    if cheat is Cheat.REFUSE:
        return dataclasses.replace(parts, challenges=RefusingChallenges(challenges))
    if cheat is Cheat.INCONSISTENT:
        reveals = InconsistentReveals(challenges.reveals, served.identity)
        return dataclasses.replace(parts, challenges=ChallengeHandler(reveals, challenges.limits))
    return parts  # false-fail on a node that is no verifier


def _noised(tensor: torch.Tensor, seed: int) -> torch.Tensor:
    """``tensor`` plus Gaussian noise of NOISE_SCALE times its norm (same dtype)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(tensor.shape, generator=generator)
    noise *= NOISE_SCALE * float(tensor.float().norm()) / max(float(noise.norm()), 1e-30)
    return (tensor.float() + noise).to(tensor.dtype)


class CheatingSpan:
    """A runner that cheats at its last layer; it is a `Span` to the node.

    Args:
        inner: the runner that computes (for ``bf16``: loaded in bfloat16).
        mode: ``noise`` (1% noise on the last layer's output), ``skip`` (the last layer's
            output is its input), ``bf16`` (computed in bfloat16, committed in ``dtype``).
        dtype: the dtype it commits in and announces.
    """

    def __init__(self, inner: Span, mode: Cheat, dtype: torch.dtype) -> None:
        assert mode in COMPUTE_CHEATS
        self.inner, self.mode, self.dtype = inner, mode, dtype
        self.checkpoint, self.family = inner.checkpoint, inner.family
        self.start, self.end = inner.start, inner.end

    def sub_span(self, start: int, end: int) -> CheatingSpan:
        return CheatingSpan(self.inner.sub_span(start, end), self.mode, self.dtype)

    def new_session(self, max_length: int) -> SpanSession:
        return self.inner.new_session(max_length)

    def forward(self, session: SpanSession, hidden: torch.Tensor) -> SpanOutput:
        """Run the span, then break its last layer as the mode says."""
        position = session.position
        result = self.inner.forward(session, hidden.to(self.inner.dtype))
        # (batch, seq, hidden) each; the span's input is committed exactly as it was received
        inputs = [hidden, *(t.to(self.dtype) for t in result.layer_inputs[1:])]
        output = result.hidden.to(self.dtype)
        if self.mode is Cheat.NOISE:
            output = _noised(output, seed=position)
        elif self.mode is Cheat.SKIP:
            output = inputs[-1]
        return SpanOutput(hidden=output, layer_inputs=inputs)


def perturb_layer(runner: SpanRunner, layer: int, scale: float = 0.01, seed: int = 0) -> None:
    """Multiply every weight of ``layer`` by ``1 + scale * N(0, 1)``, in place (resident)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in runner.blocks.get(layer).parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.mul_(1 + scale * noise.to(parameter.dtype))


class TamperedAnswers(ServedSpan):
    """The served span of a ``mismatch`` or ``replay`` node: every step is computed, committed
    and retained honestly, then what is returned is tampered."""

    def __init__(self, honest: ServedSpan, cheat: Cheat) -> None:
        assert cheat in (Cheat.MISMATCH, Cheat.REPLAY)
        super().__init__(honest.runner, honest.identity, honest.commit, honest.store)
        self.cheat = cheat

    def open(self, session_id: SessionId, start: int, end: int,
             max_length: int) -> SessionCompute:
        honest = super().open(session_id, start, end, max_length)
        return _TamperedSession(honest.session_id, honest.span, honest.state, honest.store,
                                cheat=self.cheat)


@dataclass
class _TamperedSession(SessionCompute):
    """A session of `TamperedAnswers`."""

    cheat: Cheat = Cheat.MISMATCH

    def run_step(self, request: StepRequest) -> bytes:
        """The step's result built without `StepResult`'s own checks, which would refuse to
        send either cheat: a noised output (``mismatch``), the previous receipt (``replay``)."""
        previous = self.last_receipt
        done = self.commit(request)
        step, output, receipt = done.receipt.body.step, done.output, done.receipt
        if self.cheat is Cheat.MISMATCH:
            output = _noised(output, seed=step)
        elif previous is not None:
            receipt = previous
        result = object.__new__(StepResult)
        for name, value in (("step", step), ("hidden", to_wire(output)), ("receipt", receipt)):
            object.__setattr__(result, name, value)
        return bytes(result.to_wire())


class RefusingChallenges:
    """A ``refuse`` node's challenge handler: it reads the challenge as ``honest`` does (a frame
    that is not one is still refused) and never answers, until the verifier gives up."""

    def __init__(self, honest: ChallengeHandler) -> None:
        self.honest = honest

    async def __call__(self, stream: Stream) -> None:
        peer = stream_peer_id(stream)
        framed = FramedStream(stream, self.honest.frames)
        if await self.honest.receive(framed, peer) is None:
            return
        logger.warning("CHEAT refuse: not answering the challenge from %s", peer)
        framed.config = _UNTIL_RESET
        with contextlib.suppress(TransportError):
            await framed.read()


class InconsistentReveals:
    """An ``inconsistent`` node's reveals: the output changed after the fact, signed anyway."""

    def __init__(self, honest: Reveals, identity: Identity) -> None:
        self.honest, self.identity = honest, identity

    def answer(self, challenge: Challenge) -> Reveal:
        reveal = self.honest.answer(challenge)
        logger.warning("CHEAT inconsistent: revealing a tampered output")
        output = to_wire(_noised(from_wire(reveal.output), seed=1))
        return Reveal.create(challenge, self.identity, reveal.inputs, reveal.input_proofs,
                             output, reveal.output_proof)


class FalseAccuser:
    """A ``false-fail`` verifier: an honest reveal is judged, then a fail (with a "proof") is
    signed instead; no reveal, or a caught cheat, keeps the honest verdict."""

    def __init__(self, honest: Verifier) -> None:
        self.honest = honest

    @property
    def model_id(self) -> ModelId:
        return self.honest.model_id

    def check_challengeable(self, challenge: Challenge) -> None:
        self.honest.check_challengeable(challenge)

    def judge(self, challenge: Challenge, reveal: Reveal | None, *,
              asked_ms: int | None = None) -> Judgement:
        judgement = self.honest.judge(challenge, reveal, asked_ms=asked_ms)
        if reveal is None or judgement.fraud_proof is not None:
            return judgement
        logger.warning("CHEAT false-fail: signing a fail for an honest reveal")
        verdict = self.honest.sign(challenge, Outcome.FAIL, "false accusation (cheat)")
        proof = FraudProof(challenge, reveal, challenge.model_id, verdict)
        return Judgement(verdict, proof, judgement.finding)
