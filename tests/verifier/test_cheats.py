"""Every cheat is caught: a failing verdict with a fraud proof that anyone can confirm, or an
unresponsive verdict, or a refusal before any verdict; a false accusation is refuted."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from verifier_harness import (
    CheatingRunner,
    ServingNode,
    embedded_steps,
    noise_tamper,
)

from darwin.model import Checkpoint, SpanRunner, make_tiny
from darwin.model.torch_wire import to_wire
from darwin.node.adversaries import perturb_layer
from darwin.protocol import (
    Challenge,
    FraudProof,
    Identity,
    LocalProtocolError,
    ModelId,
    Outcome,
    Receipt,
    SessionId,
    Verdict,
    VerdictBody,
)
from darwin.verifier import (
    FraudOutcome,
    InvalidChallenge,
    LayerRecomputer,
    UnsupportedChallenge,
    Verifier,
    VerifierError,
    WrongModel,
    check_fraud_proof,
    recheck_fraud_proof,
    verify_proof_command,
)

SIZES = (5, 1, 1, 1)
SESSION = SessionId(b"\x42" * 16)
FLOAT32_NODE_SEED = 3


def serve(runner: SpanRunner | CheatingRunner, identity: Identity, model_id: ModelId,
          checkpoint: Checkpoint) -> ServingNode:
    node = ServingNode.create(runner, identity, model_id)
    node.serve(SESSION, embedded_steps(checkpoint, SIZES, seed=FLOAT32_NODE_SEED))
    return node


def challenge_of(node: ServingNode, layer: int, step: int) -> Challenge:
    return Challenge(tuple(node.sessions[SESSION][: step + 1]), layer, step)


def assert_caught(verifier: Verifier, node: ServingNode, layer: int, checkpoint: Checkpoint,
                  tiny_model_id: ModelId) -> FraudProof:
    """Layer ``layer`` fails at every step, with proofs that re-check as confirmed."""
    proof = None
    for step in range(len(SIZES)):
        challenge = challenge_of(node, layer, step)
        judgement = verifier.judge(challenge, node.answer(challenge))
        assert judgement.outcome is Outcome.FAIL, judgement.verdict.body.reason
        proof = judgement.fraud_proof
        assert proof is not None and proof.verdict == judgement.verdict
        check = check_fraud_proof(FraudProof.from_wire(proof.to_wire()), checkpoint,
                                  model_id=tiny_model_id)
        assert check.outcome is FraudOutcome.CONFIRMED, check.reason
    assert proof is not None
    return proof


def assert_passes(verifier: Verifier, node: ServingNode, layers: list[int]) -> None:
    for layer in layers:
        for step in range(len(SIZES)):
            challenge = challenge_of(node, layer, step)
            judgement = verifier.judge(challenge, node.answer(challenge))
            assert judgement.outcome is Outcome.PASS, judgement.verdict.body.reason


def test_noise_on_one_layers_output_fails_that_layer_only(
    checkpoint: Checkpoint, tiny_model_id: ModelId, node_identity: Identity, verifier: Verifier,
) -> None:
    runner = CheatingRunner(SpanRunner.load(checkpoint, 0, 4), tamper=noise_tamper(2))
    node = serve(runner, node_identity, tiny_model_id, checkpoint)
    proof = assert_caught(verifier, node, 2, checkpoint, tiny_model_id)
    assert_passes(verifier, node, [0, 1, 3])
    assert "relative L2 error" in proof.verdict.body.reason


def test_a_skipped_layer_fails(checkpoint: Checkpoint, tiny_model_id: ModelId,
                               node_identity: Identity, verifier: Verifier) -> None:
    runner = CheatingRunner(SpanRunner.load(checkpoint, 1, 4), skip=frozenset({2}))
    node = serve(runner, node_identity, tiny_model_id, checkpoint)
    assert_caught(verifier, node, 2, checkpoint, tiny_model_id)
    assert_passes(verifier, node, [1, 3])


def test_perturbed_weights_under_the_honest_model_id_fail(
    checkpoint: Checkpoint, tiny_model_id: ModelId, node_identity: Identity, verifier: Verifier,
) -> None:
    runner = SpanRunner.load(checkpoint, 0, 4)
    perturb_layer(runner, 3, scale=0.01)
    node = serve(runner, node_identity, tiny_model_id, checkpoint)
    assert_caught(verifier, node, 3, checkpoint, tiny_model_id)
    assert_passes(verifier, node, [0, 1, 2])


def test_bfloat16_compute_announced_as_float32_fails_every_layer(
    checkpoint: Checkpoint, tiny_model_id: ModelId, node_identity: Identity, verifier: Verifier,
) -> None:
    runner = CheatingRunner(SpanRunner.load(checkpoint, 0, 4, dtype=torch.bfloat16),
                            commit_dtype=torch.float32)
    node = serve(runner, node_identity, tiny_model_id, checkpoint)
    assert node.sessions[SESSION][0].body.output_hash  # commits float32 tensors
    for layer in range(4):
        assert_caught(verifier, node, layer, checkpoint, tiny_model_id)


@pytest.fixture(scope="module")
def honest(checkpoint: Checkpoint, tiny_model_id: ModelId, node_identity: Identity
           ) -> ServingNode:
    return serve(SpanRunner.load(checkpoint, 0, 4), node_identity, tiny_model_id, checkpoint)


def test_a_signed_reveal_inconsistent_with_the_commitments_fails_with_a_proof(
    honest: ServingNode, verifier: Verifier, checkpoint: Checkpoint, tiny_model_id: ModelId,
    node_identity: Identity,
) -> None:
    challenge = challenge_of(honest, 1, 2)
    reveal = honest.answer(challenge)
    assert reveal is not None
    other = to_wire(torch.zeros(1, 5, 64))
    lying = replace(reveal, inputs=(other, *reveal.inputs[1:]))
    lying = replace(lying, signature=node_identity.sign(lying.signing_bytes()))
    judgement = verifier.judge(challenge, lying)
    assert judgement.outcome is Outcome.FAIL
    assert "contradicts the receipts" in judgement.verdict.body.reason
    assert judgement.fraud_proof is not None
    check = check_fraud_proof(judgement.fraud_proof, checkpoint, model_id=tiny_model_id)
    assert check.confirmed and "layer_root" in check.reason


def test_a_reveal_not_signed_by_the_node_or_none_at_all_is_unresponsive(
    honest: ServingNode, verifier: Verifier, verifier_identity: Identity,
) -> None:
    challenge = challenge_of(honest, 1, 2)
    reveal = honest.answer(challenge)
    assert reveal is not None
    forged = replace(reveal, signature=verifier_identity.sign(reveal.signing_bytes()))
    for answer in (forged, honest.answer(challenge_of(honest, 2, 2)), None):
        judgement = verifier.judge(challenge, answer)
        assert judgement.outcome is Outcome.UNRESPONSIVE and judgement.fraud_proof is None


def test_a_missing_reveal_asked_for_after_the_promise_gets_no_verdict(
    honest: ServingNode, verifier: Verifier,
) -> None:
    challenge = challenge_of(honest, 0, 1)
    with pytest.raises(VerifierError, match="retention ended"):
        verifier.judge(challenge, None, asked_ms=challenge.deadline_ms + 1)
    assert verifier.judge(challenge, None, asked_ms=challenge.deadline_ms).outcome is (
        Outcome.UNRESPONSIVE)


def test_replayed_or_forged_receipts_never_reach_a_verdict(
    honest: ServingNode, verifier: Verifier, checkpoint: Checkpoint, tiny_model_id: ModelId,
    node_identity: Identity,
) -> None:
    receipts = honest.sessions[SESSION]
    old = serve(SpanRunner.load(checkpoint, 0, 4), node_identity, tiny_model_id, checkpoint)
    old_session = SessionId(b"\x01" * 16)
    old.serve(old_session, embedded_steps(checkpoint, SIZES, seed=8))
    with pytest.raises(LocalProtocolError):  # a receipt of another session spliced in
        Challenge((receipts[0], old.sessions[old_session][1]), 0, 1)
    with pytest.raises(LocalProtocolError):  # an old receipt replayed as a later step
        Challenge((receipts[0], receipts[0]), 0, 1)
    # The same step of the same session, re-signed with other content: the node refuses.
    resigned = replace(receipts[1].body, time_ms=receipts[1].body.time_ms + 1)
    spliced = Challenge((receipts[0], resigned.sign(node_identity)), 0, 1)
    assert honest.answer(spliced) is None
    forged = Receipt(receipts[1].body, b"\x00" * 64)
    with pytest.raises(InvalidChallenge):
        verifier.judge(Challenge((receipts[0], forged), 0, 1), None)


def test_receipts_of_another_model_or_an_adapter_are_not_judged(
    honest: ServingNode, verifier: Verifier, node_identity: Identity,
) -> None:
    receipts = honest.sessions[SESSION]
    other = Challenge((replace(receipts[0].body, model_id=ModelId(b"\x00" * 32))
                       .sign(node_identity),), 0, 0)
    with pytest.raises(WrongModel):
        verifier.judge(other, None)
    adapted = Challenge((replace(receipts[0].body, adapter_id=b"\x01" * 32)
                         .sign(node_identity),), 0, 0)
    with pytest.raises(UnsupportedChallenge):
        verifier.judge(adapted, None)


def _false_proof(honest: ServingNode, verifier: Verifier) -> FraudProof:
    challenge = challenge_of(honest, 2, 3)
    reveal = honest.answer(challenge)
    assert reveal is not None
    verdict = verifier.sign(challenge, Outcome.FAIL, "made up")
    return FraudProof(challenge, reveal, challenge.model_id, verdict)


def test_a_false_fail_verdict_is_refuted_as_a_false_accusation(
    honest: ServingNode, verifier: Verifier, checkpoint: Checkpoint, tiny_model_id: ModelId,
    verifier_identity: Identity,
) -> None:
    proof = _false_proof(honest, verifier)
    check = check_fraud_proof(proof, checkpoint, model_id=tiny_model_id,
                              recomputer=LayerRecomputer(checkpoint))
    assert check.outcome is FraudOutcome.REFUTED and check.false_accusation
    assert str(verifier_identity.peer_id) in check.reason
    assert check.comparison is not None and check.comparison.passed


def test_a_tampered_proof_is_refuted_without_blaming_anyone(
    honest: ServingNode, verifier: Verifier, checkpoint: Checkpoint, tiny_model_id: ModelId,
    node_identity: Identity,
) -> None:
    proof = _false_proof(honest, verifier)
    unsigned = replace(proof, verdict=Verdict(proof.verdict.body, b"\x00" * 64))
    elsewhere = replace(proof, verdict=verifier.sign(challenge_of(honest, 1, 3), Outcome.FAIL,
                                                     "x"))
    lying_reveal = replace(proof, reveal=replace(
        proof.reveal, signature=node_identity.sign(b"something else")))
    for bad in (unsigned, elsewhere, lying_reveal):
        check = check_fraud_proof(bad, checkpoint, model_id=tiny_model_id)
        assert check.outcome is FraudOutcome.REFUTED and not check.false_accusation


def test_a_proof_that_cannot_be_rerun_here_is_none_only_if_its_signatures_hold(
    honest: ServingNode, verifier: Verifier, checkpoint: Checkpoint, tiny_model_id: ModelId,
) -> None:
    proof = _false_proof(honest, verifier)
    elsewhere = ModelId(b"\x00" * 32)  # a node holding another model
    assert recheck_fraud_proof(proof, checkpoint, model_id=elsewhere) is None
    unsigned = replace(proof, verdict=Verdict(proof.verdict.body, b"\x00" * 64))
    forged = replace(proof, challenge=replace(proof.challenge, receipts=tuple(
        replace(receipt, signature=b"\x00" * 64) for receipt in proof.challenge.receipts)))
    for bad in (unsigned, forged):
        check = recheck_fraud_proof(bad, checkpoint, model_id=elsewhere)
        assert check is not None and check.outcome is FraudOutcome.REFUTED
        assert not check.false_accusation
    here = recheck_fraud_proof(proof, checkpoint, model_id=tiny_model_id)
    assert here is not None and here.false_accusation


def test_verify_proof_command_exit_codes(
    honest: ServingNode, verifier: Verifier, checkpoint: Checkpoint, tiny_model_id: ModelId,
    node_identity: Identity, tmp_path: Path,
) -> None:
    runner = CheatingRunner(SpanRunner.load(checkpoint, 0, 4), tamper=noise_tamper(1))
    cheater = serve(runner, node_identity, tiny_model_id, checkpoint)
    challenge = challenge_of(cheater, 1, 3)
    confirmed = verifier.judge(challenge, cheater.answer(challenge)).fraud_proof
    assert confirmed is not None
    files = {"confirmed": confirmed, "refuted": _false_proof(honest, verifier)}
    for name, proof in files.items():
        (tmp_path / name).write_bytes(proof.to_wire())
    (tmp_path / "garbage").write_bytes(b"\x93\x01\x02")
    model = checkpoint.path
    out = io.StringIO()
    assert verify_proof_command(tmp_path / "confirmed", model, out=out) == 0
    assert out.getvalue().startswith("confirmed: ")
    out = io.StringIO()
    assert verify_proof_command(tmp_path / "refuted", model, json_output=True, out=out) == 1
    report = json.loads(out.getvalue())
    assert report["outcome"] == "refuted" and report["false_accusation"] is True
    assert verify_proof_command(tmp_path / "garbage", model, out=io.StringIO()) == 2
    assert verify_proof_command(tmp_path / "missing", model, out=io.StringIO()) == 2
    other = make_tiny("llama", tmp_path / "other", layers=4, hidden=64, seed=1)
    out = io.StringIO()
    assert verify_proof_command(tmp_path / "confirmed", other, out=out) == 2
    assert "receipts name model" in out.getvalue()


def test_a_verdict_body_is_about_exactly_its_challenge(honest: ServingNode,
                                                       verifier: Verifier) -> None:
    challenge = challenge_of(honest, 1, 1)
    body: VerdictBody = verifier.judge(challenge, honest.answer(challenge)).verdict.body
    assert body.about(challenge) and body.outcome is Outcome.PASS
    assert body.subject == challenge.node_id and body.time_ms == 1_700_000_000_000
