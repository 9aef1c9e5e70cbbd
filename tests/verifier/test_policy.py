"""Choosing challenges, and the measured detection rate against the >= 1/span bound."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

import pytest
from verifier_harness import CheatingRunner, ServingNode, embedded_steps, noise_tamper

from darwin.model import Checkpoint, SpanRunner
from darwin.protocol import Identity, ModelId, Outcome, Receipt, SessionId
from darwin.verifier import (
    Verifier,
    challenges_for_confidence,
    choose_challenge,
    detection_probability,
    hop_histories,
)

SIZES = (4, 1, 1, 1, 1)


@pytest.fixture(scope="module")
def two_hops(checkpoint: Checkpoint, tiny_model_id: ModelId) -> tuple[list[Receipt], ...]:
    """A session over hops [0, 2) and [2, 4) by two nodes: (trace, first hop, second hop)."""
    session = SessionId(b"\x07" * 16)
    first = ServingNode.create(SpanRunner.load(checkpoint, 0, 2),
                               Identity.from_seed(b"\x01" * 32), tiny_model_id)
    second = ServingNode.create(SpanRunner.load(checkpoint, 2, 4),
                                Identity.from_seed(b"\x02" * 32), tiny_model_id)
    a = first.serve(session, embedded_steps(checkpoint, SIZES, seed=1))
    b = second.serve(session, embedded_steps(checkpoint, SIZES, seed=2))
    trace = [r for pair in zip(a, b, strict=True) for r in pair]
    return trace, a, b


def test_hop_histories_group_receipts_by_node_and_span(two_hops: tuple[list[Receipt], ...]
                                                       ) -> None:
    trace, a, b = two_hops
    histories = {h.span: h for h in hop_histories(trace)}
    assert set(histories) == {(0, 2), (2, 4)}
    assert histories[(0, 2)].receipts == tuple(a) and histories[(2, 4)].receipts == tuple(b)
    assert histories[(2, 4)].node_id == b[0].body.node_id


def test_a_history_keeps_only_its_gapless_prefix(two_hops: tuple[list[Receipt], ...]) -> None:
    _, a, _ = two_hops
    (history,) = hop_histories([a[0], a[1], a[3], a[1]])  # step 2 missing, step 1 twice
    assert history.receipts == (a[0], a[1])
    assert hop_histories(a[1:]) == []  # no step 0: nothing to challenge


def test_choose_challenge_is_reproducible_and_covers_every_hop_step_and_layer(
    two_hops: tuple[list[Receipt], ...],
) -> None:
    trace, _, b = two_hops
    first = choose_challenge(trace, random.Random(5))
    assert first is not None and first == choose_challenge(trace, random.Random(5))
    seen: Counter[tuple[int, int]] = Counter()
    rng = random.Random(0)
    for _ in range(2000):
        challenge = choose_challenge(trace, rng)
        assert challenge is not None
        seen[(challenge.layer, challenge.step)] += 1
    assert set(seen) == {(layer, step) for layer in range(4) for step in range(len(SIZES))}
    assert max(seen.values()) / min(seen.values()) < 2.0  # roughly uniform
    only_b = choose_challenge(trace, rng, subject=b[0].body.node_id)
    assert only_b is not None and only_b.node_id == b[0].body.node_id


def test_steps_whose_promise_ended_are_not_chosen(two_hops: tuple[list[Receipt], ...]) -> None:
    _, a, _ = two_hops
    last = a[-1].body
    end_of_last = last.time_ms + 1000 * last.retention_s
    assert choose_challenge(a, random.Random(0), now_ms=end_of_last + 1) is None
    now = end_of_last - 10
    for seed in range(20):
        challenge = choose_challenge(a, random.Random(seed), now_ms=now, min_time_left_ms=5)
        assert challenge is not None
        body = a[challenge.step].body
        assert body.time_ms + 1000 * body.retention_s >= now + 5


def test_detection_bound_arithmetic() -> None:
    assert detection_probability(4) == 0.25
    assert detection_probability(4, 2) == 0.5
    assert math.isclose(detection_probability(4, checks=3), 1 - 0.75**3)
    assert challenges_for_confidence(4, 0.99) == 17  # 0.75**16 > 0.01 >= 0.75**17
    assert challenges_for_confidence(1, 0.99) == 1
    with pytest.raises(ValueError):
        detection_probability(4, 5)
    with pytest.raises(ValueError):
        challenges_for_confidence(4, 1.0)


def test_measured_detection_over_repeated_random_challenges_matches_one_over_span(
    checkpoint: Checkpoint, tiny_model_id: ModelId, node_identity: Identity,
    verifier: Verifier,
) -> None:
    """One layer of a 4-layer span cheats at every step: a random challenge catches it with
    probability 1/4 (the bound is met with equality for a single cheating layer)."""
    runner = CheatingRunner(SpanRunner.load(checkpoint, 0, 4), tamper=noise_tamper(1))
    node = ServingNode.create(runner, node_identity, tiny_model_id)
    session = SessionId(b"\x0c" * 16)
    receipts = node.serve(session, embedded_steps(checkpoint, SIZES, seed=4))
    rng = random.Random(1234)
    trials, caught, first_catch = 240, 0, []
    since = 0
    for _ in range(trials):
        challenge = choose_challenge(receipts, rng)
        assert challenge is not None
        judgement = verifier.judge(challenge, node.answer(challenge))
        assert judgement.outcome in (Outcome.PASS, Outcome.FAIL)
        since += 1
        if judgement.outcome is Outcome.FAIL:
            assert challenge.layer == 1
            caught += 1
            first_catch.append(since)
            since = 0
    rate = caught / trials
    bound = detection_probability(4)
    sigma = math.sqrt(bound * (1 - bound) / trials)
    mean_wait = sum(first_catch) / len(first_catch)
    print(f"\ndetection: {caught}/{trials} random challenges caught the cheat "
          f"(rate {rate:.3f}, bound 1/span = {bound:.3f} +- {sigma:.3f}); mean challenges "
          f"to a catch {mean_wait:.2f} (expected {1 / bound:.2f}); "
          f"{challenges_for_confidence(4, 0.99)} challenges give 99%")
    assert abs(rate - bound) < 4 * sigma


def test_histories_ignore_receipts_of_other_models_for_the_same_hop(
    two_hops: tuple[list[Receipt], ...], node_identity: Identity,
) -> None:
    _, a, _ = two_hops
    stray = replace(a[0].body, model_id=ModelId(b"\x00" * 32),
                    node_id=node_identity.peer_id).sign(node_identity)
    assert len(hop_histories([*a, stray])) == 2
