"""TEST ONLY: deliberate misbehaviours of a node, for the adversarial suite and ``darwin demo``.

``darwin-node join --cheat MODE`` (hidden from ``--help``; ``specs/verification.md`` section 10)
makes the node break the protocol in one precise way, so that tests can show each break is
caught. Nothing here runs unless that flag is given. Rules:

- The cheating layer is the *last* layer of the served span (with a 1-block span, the only one),
  so one challenge of that span is certain to hit it.
- Compute cheats (``noise``, ``skip``, ``bf16``) wrap the span's runner (`CheatingSpan`); they
  commit and sign what they computed, as a real cheater would. ``weights`` perturbs the loaded
  weights of that layer by 1% (the announced model id stays the honest one).
- Answer cheats (``mismatch``, ``replay``) change what a step returns after it was committed.
- Challenge cheats (``refuse``, ``inconsistent``) change the answer to a challenge; the
  verifier cheat ``false-fail`` signs a fail whatever the recomputation found.
"""

from __future__ import annotations

import torch

from darwin.model import SpanOutput, SpanRunner, SpanSession
from darwin.model.torch_wire import from_wire, to_wire
from darwin.node.serving.committed_span import CommittedStep
from darwin.protocol import Challenge, Identity, Receipt, Reveal, StepResult

__all__ = ["COMPUTE_CHEATS", "CheatingSpan", "perturb_layer", "tamper_reveal", "tamper_step"]

COMPUTE_CHEATS = frozenset({"noise", "skip", "bf16"})
NOISE_SCALE = 0.01  # relative L2 size of the noise the ``noise`` and ``mismatch`` cheats add


def _noised(tensor: torch.Tensor, seed: int) -> torch.Tensor:
    """``tensor`` plus Gaussian noise of NOISE_SCALE times its norm (same dtype)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(tensor.shape, generator=generator)
    noise *= NOISE_SCALE * float(tensor.float().norm()) / max(float(noise.norm()), 1e-30)
    return (tensor.float() + noise).to(tensor.dtype)


class CheatingSpan:
    """A runner that cheats at its last layer; it looks like a `SpanRunner` to the node.

    Args:
        inner: the runner that computes (for ``bf16``: loaded in bfloat16).
        mode: ``noise`` (1% noise on the last layer's output), ``skip`` (the last layer's
            output is its input), ``bf16`` (computed in bfloat16, committed in ``dtype``).
        dtype: the dtype it commits in and announces.
    """

    def __init__(self, inner: SpanRunner, mode: str, dtype: torch.dtype) -> None:
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
        if self.mode == "noise":
            output = _noised(output, seed=position)
        elif self.mode == "skip":
            output = inputs[-1]
        return SpanOutput(hidden=output, layer_inputs=inputs)


def perturb_layer(runner: SpanRunner, layer: int, scale: float = 0.01, seed: int = 0) -> None:
    """Multiply every weight of ``layer`` by ``1 + scale * N(0, 1)``, in place (resident)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in runner.blocks.get(layer).parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.mul_(1 + scale * noise.to(parameter.dtype))


def tamper_step(mode: str, done: CommittedStep, previous: Receipt | None) -> bytes:
    """The encoded result a ``mismatch`` or ``replay`` node returns for a committed step.

    Built without `StepResult`'s own checks, which would refuse to send either cheat.
    """
    step, output, receipt = done.receipt.body.step, done.output, done.receipt
    if mode == "mismatch":
        output = _noised(output, seed=step)
    elif mode == "replay" and previous is not None:
        receipt = previous
    result = object.__new__(StepResult)
    for name, value in (("step", step), ("hidden", to_wire(output)), ("receipt", receipt)):
        object.__setattr__(result, name, value)
    return bytes(result.to_wire())


def tamper_reveal(challenge: Challenge, reveal: Reveal, identity: Identity) -> Reveal:
    """An ``inconsistent`` node's reveal: the output changed after the fact, signed anyway."""
    output = to_wire(_noised(from_wire(reveal.output), seed=1))
    return Reveal.create(challenge, identity, reveal.inputs, reveal.input_proofs, output,
                         reveal.output_proof)
