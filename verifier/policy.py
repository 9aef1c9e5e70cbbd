"""Which hop, step and layer to challenge, and how likely one challenge is to catch a cheat.

Rules (``specs/verification.md``, "Choosing a challenge"):

* Pure: receipts in, a ``Challenge`` out; randomness comes from an injected
  ``random.Random`` so simulations and tests replay exactly.
* A hop is one node serving one span of one session. A step ``k`` of a hop can be challenged
  when the verifier holds that node's receipts of steps ``0 .. k`` on that span (the trace has
  them, plus the replay receipts a client keeps after a failover) and, if a clock is given,
  the node's promise for step ``k`` has not ended.
* The hop is drawn uniformly among the eligible hops, the step uniformly among its eligible
  steps, the layer uniformly in its span: the node cannot tell which of its layers or steps
  will be checked.
* A node that cheats anywhere in its span breaks the input→output relation of at least one
  committed layer at the cheated step, so one challenge of that step catches it with
  probability at least ``1 / span``; ``n`` independent challenges with
  ``1 - (1 - 1/span) ** n``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from darwin.protocol import Challenge, PeerId, Receipt, SessionId

__all__ = [
    "HopHistory",
    "challenges_for_confidence",
    "choose_challenge",
    "detection_probability",
    "hop_histories",
]


@dataclass(frozen=True)
class HopHistory:
    """One node's receipts for one span of one session: steps ``0 .. len - 1``, in order."""

    node_id: PeerId
    session_id: SessionId
    span: tuple[int, int]
    receipts: tuple[Receipt, ...]

    def challenge(self, step: int, layer: int) -> Challenge:
        """The challenge of ``layer`` at ``step`` (``LocalProtocolError`` if out of range)."""
        return Challenge(self.receipts[: step + 1], layer, step)

    def open_steps(self, now_ms: int | None, min_time_left_ms: int = 0) -> list[int]:
        """Steps whose promise lasts at least ``min_time_left_ms`` past ``now_ms``."""
        if now_ms is None:
            return list(range(len(self.receipts)))
        return [step for step, receipt in enumerate(self.receipts)
                if receipt.body.time_ms + 1000 * receipt.body.retention_s
                >= now_ms + min_time_left_ms]


def _consecutive_prefix(by_step: dict[int, Receipt]) -> tuple[Receipt, ...]:
    """Receipts of steps 0, 1, ... as long as they chain in positions."""
    prefix: list[Receipt] = []
    position = 0
    while len(prefix) in by_step:
        body = by_step[len(prefix)].body
        if body.position_start != position:
            break
        prefix.append(by_step[len(prefix)])
        position = body.position_start + body.position_count
    return tuple(prefix)


def hop_histories(receipts: Iterable[Receipt]) -> list[HopHistory]:
    """Group receipts into hop histories that can be challenged.

    Receipts are grouped by (node, session, span, model, adapter); within a group the first
    receipt of each step is kept. A group contributes the steps ``0, 1, ...`` it holds without
    a gap; a group without step 0 contributes nothing. Signatures are not checked here.
    """
    groups: dict[tuple[object, ...], dict[int, Receipt]] = {}
    for receipt in receipts:
        body = receipt.body
        key = (body.node_id, body.session_id, body.span_start, body.span_end, body.model_id,
               body.adapter_id)
        groups.setdefault(key, {}).setdefault(body.step, receipt)
    histories = []
    for by_step in groups.values():
        prefix = _consecutive_prefix(by_step)
        if prefix:
            first = prefix[0].body
            histories.append(HopHistory(first.node_id, first.session_id,
                                        (first.span_start, first.span_end), prefix))
    return histories


def choose_challenge(
    receipts: Iterable[Receipt],
    rng: random.Random,
    *,
    subject: PeerId | None = None,
    now_ms: int | None = None,
    min_time_left_ms: int = 0,
) -> Challenge | None:
    """Draw a random challenge from the receipts a verifier holds.

    Args:
        receipts: a trace, plus any replay receipts.
        rng: the source of randomness.
        subject: only challenge this node.
        now_ms: with it, only steps whose promise lasts ``min_time_left_ms`` more.

    Returns:
        The challenge, or None when no hop has an eligible step.
    """
    eligible = []
    for history in hop_histories(receipts):
        if subject is not None and history.node_id != subject:
            continue
        steps = history.open_steps(now_ms, min_time_left_ms)
        if steps:
            eligible.append((history, steps))
    if not eligible:
        return None
    history, steps = eligible[rng.randrange(len(eligible))]
    step = steps[rng.randrange(len(steps))]
    layer = rng.randrange(*history.span)
    return history.challenge(step, layer)


def detection_probability(span_layers: int, cheating_layers: int = 1, checks: int = 1) -> float:
    """Chance that ``checks`` independent challenges of a cheated step catch it.

    One challenge picks one of ``span_layers`` layers; it catches the cheat when it picks one
    of the ``cheating_layers`` whose committed input→output relation is broken.

    Raises:
        ValueError: unless ``0 <= cheating_layers <= span_layers`` and both counts are valid.
    """
    if span_layers < 1 or not 0 <= cheating_layers <= span_layers or checks < 0:
        raise ValueError("need span_layers >= 1, 0 <= cheating_layers <= span_layers, checks >= 0")
    return 1.0 - (1.0 - cheating_layers / span_layers) ** checks


def challenges_for_confidence(span_layers: int, confidence: float,
                              cheating_layers: int = 1) -> int:
    """Fewest independent challenges of a cheated step that catch it with ``confidence``.

    Raises:
        ValueError: unless ``0 <= confidence < 1`` and the counts are valid.
    """
    if not 0.0 <= confidence < 1.0:
        raise ValueError("confidence must be in [0, 1)")
    per_check = detection_probability(span_layers, cheating_layers)
    if per_check >= 1.0:
        return 1 if confidence > 0 else 0
    if per_check <= 0.0:
        raise ValueError("no cheating layer: no number of challenges catches it")
    return max(0, math.ceil(math.log1p(-confidence) / math.log1p(-per_check)))
