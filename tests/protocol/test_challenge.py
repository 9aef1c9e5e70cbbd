"""Challenges, reveals, verdicts and fraud proofs: pure checks and strict decoding."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, replace

import numpy as np
import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from darwin.protocol import (
    CHALLENGE_LIMITS,
    MAX_CHALLENGE_STEPS,
    Challenge,
    FraudProof,
    Identity,
    LocalProtocolError,
    MerkleProof,
    ModelId,
    Outcome,
    Receipt,
    ReceiptBody,
    RemoteProtocolError,
    Reveal,
    RevealError,
    SessionId,
    SignatureError,
    UnattributableReveal,
    Verdict,
    VerdictBody,
    WireTensor,
    check_reveal,
    layer_root_for,
    merkle_proof,
)
from darwin.protocol.challenge import CHALLENGE_DOMAIN, REVEAL_DOMAIN, receipt_digest
from darwin.protocol.verdict import VERDICT_DOMAIN, VERDICT_FIELDS
from darwin.protocol.wire import pack, unpack

NODE = Identity.from_seed(bytes([1]) * 32)
OTHER = Identity.from_seed(bytes([2]) * 32)
VERIFIER = Identity.from_seed(bytes([3]) * 32)
MODEL = ModelId(hashlib.blake2b(b"model", digest_size=32).digest())
SESSION = SessionId(b"\x5a" * 16)
SPAN = (2, 5)
SIZES = (3, 1, 1, 2)  # prompt, two decode steps, a chunk
WIDTH = 4


def tensor(*labels: object, count: int) -> WireTensor:
    seed = int.from_bytes(hashlib.blake2b(repr(labels).encode(), digest_size=4).digest(), "big")
    array = np.random.default_rng(seed).standard_normal((1, count, WIDTH)).astype(np.float32)
    return WireTensor.from_numpy(array)


@dataclass(frozen=True)
class Hop:
    """A hop's committed leaves (layer inputs then output) and signed receipts, per step."""

    leaves: tuple[tuple[WireTensor, ...], ...]
    receipts: tuple[Receipt, ...]

    def challenge(self, layer: int, step: int) -> Challenge:
        return Challenge(self.receipts[: step + 1], layer, step)

    def reveal(self, challenge: Challenge, identity: Identity = NODE, **changes: object
               ) -> Reveal:
        index, step = challenge.leaf_index, challenge.step
        digests = [[t.digest() for t in leaves] for leaves in self.leaves]
        fields: dict[str, object] = {
            "inputs": [self.leaves[j][index] for j in range(step + 1)],
            "input_proofs": [merkle_proof(digests[j], index) for j in range(step + 1)],
            "output": self.leaves[step][index + 1],
            "output_proof": merkle_proof(digests[step], index + 1),
        }
        fields.update(changes)
        return Reveal.create(challenge, identity, **fields)  # type: ignore[arg-type]


def make_hop(identity: Identity = NODE, session: SessionId = SESSION, tag: str = "a") -> Hop:
    layers = SPAN[1] - SPAN[0]
    leaves, receipts, position = [], [], 0
    for step, count in enumerate(SIZES):
        step_leaves = tuple(tensor(tag, step, leaf, count=count) for leaf in range(layers + 1))
        digests = [t.digest() for t in step_leaves]
        body = ReceiptBody(
            model_id=MODEL, adapter_id=None, session_id=session, step=step,
            span_start=SPAN[0], span_end=SPAN[1], input_hash=digests[0],
            output_hash=digests[-1], layer_root=layer_root_for(digests[:-1], digests[-1]),
            position_start=position, position_count=count, node_id=identity.peer_id,
            time_ms=1_700_000_000_000 + step, retention_s=600,
        )
        leaves.append(step_leaves)
        receipts.append(body.sign(identity))
        position += count
    return Hop(tuple(leaves), tuple(receipts))


HOP = make_hop()


def resign(receipt: Receipt, identity: Identity = NODE, **changes: object) -> Receipt:
    return replace(receipt.body, **changes).sign(identity)


def verdict_for(challenge: Challenge, outcome: Outcome = Outcome.FAIL) -> Verdict:
    body = VerdictBody.for_challenge(challenge, verifier=VERIFIER.peer_id, outcome=outcome,
                                     reason="relative L2 error 3e-02 > 1e-04", time_ms=5)
    return body.sign(VERIFIER)


# -- challenges ---------------------------------------------------------------------------


def test_a_challenge_names_the_hop_and_its_leaves() -> None:
    challenge = HOP.challenge(3, 2)
    assert (challenge.node_id, challenge.model_id, challenge.session_id) == (
        NODE.peer_id, MODEL, SESSION)
    assert challenge.span == SPAN and challenge.leaf_index == 1 and challenge.leaf_count == 4
    assert challenge.positions == ((0, 3), (3, 1), (4, 1))
    assert challenge.deadline_ms == 1_700_000_000_002 + 600_000
    challenge.verify()


def test_the_digest_binds_layer_step_and_every_receipt() -> None:
    challenge = HOP.challenge(3, 2)
    names = [receipt_digest(r) for r in HOP.receipts[:3]]
    expected = blake3(CHALLENGE_DOMAIN + pack([3, 2, names])).digest()
    assert challenge.digest() == expected
    others = {HOP.challenge(2, 2).digest(), HOP.challenge(3, 1).digest(),
              Challenge((*HOP.receipts[:2], resign(HOP.receipts[2], time_ms=9)), 3, 2).digest()}
    assert challenge.digest() not in others and len(others) == 3


@pytest.mark.parametrize("problem", [
    "empty", "step_mismatch", "gap", "duplicate", "reordered", "other_session", "other_node",
    "other_span", "other_model", "positions", "not_from_zero", "layer_low", "layer_high",
])
def test_a_challenge_refuses_receipts_that_are_not_one_hops_history(problem: str) -> None:
    r = HOP.receipts
    cases: dict[str, tuple[tuple[Receipt, ...], int, int]] = {
        "empty": ((), 2, 0),
        "step_mismatch": (r[:3], 2, 1),
        "gap": ((r[0], r[2]), 2, 1),
        "duplicate": ((r[0], r[0]), 2, 1),
        "reordered": ((r[1], r[0]), 2, 1),
        "other_session": ((r[0], resign(r[1], session_id=SessionId(b"\x01" * 16))), 2, 1),
        "other_node": ((r[0], resign(r[1], OTHER, node_id=OTHER.peer_id)), 2, 1),
        "other_span": ((r[0], resign(r[1], span_start=1)), 2, 1),
        "other_model": ((r[0], resign(r[1], model_id=ModelId(b"\x01" * 32))), 2, 1),
        "positions": ((r[0], resign(r[1], position_start=4)), 2, 1),
        "not_from_zero": ((resign(r[0], position_start=1),), 2, 0),
        "layer_low": (r[:1], 1, 0),
        "layer_high": (r[:1], 5, 0),
    }
    receipts, layer, step = cases[problem]
    with pytest.raises(LocalProtocolError):
        Challenge(receipts, layer, step)


def test_a_replayed_receipt_of_another_session_is_refused_by_construction() -> None:
    old = make_hop(session=SessionId(b"\x01" * 16), tag="old")
    with pytest.raises(LocalProtocolError, match="session_id"):
        Challenge((HOP.receipts[0], old.receipts[1]), 2, 1)


def test_verify_names_the_step_of_a_forged_receipt() -> None:
    forged = Receipt(HOP.receipts[1].body, OTHER.sign(HOP.receipts[1].body.signing_bytes()))
    with pytest.raises(SignatureError, match="step 1"):
        Challenge((HOP.receipts[0], forged), 2, 1).verify()


def test_a_challenge_round_trips_and_decoding_refuses_broken_histories() -> None:
    challenge = HOP.challenge(4, 3)
    assert Challenge.from_wire(challenge.to_wire()) == challenge
    obj = challenge.to_obj()
    obj["step"] = 2
    with pytest.raises(RemoteProtocolError):
        Challenge.from_obj(obj)
    obj = challenge.to_obj()
    obj["receipts"] = []
    with pytest.raises(RemoteProtocolError):
        Challenge.from_obj(obj)


def test_the_step_count_is_bounded() -> None:
    with pytest.raises(LocalProtocolError):
        Challenge(tuple(HOP.receipts[:1]) * (MAX_CHALLENGE_STEPS + 1), 2, MAX_CHALLENGE_STEPS)
    assert CHALLENGE_LIMITS.max_array_len == MAX_CHALLENGE_STEPS


# -- reveals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("layer", "step"), [(2, 0), (3, 1), (4, 3), (4, 0), (2, 3)])
def test_an_honest_reveal_passes_for_every_layer_including_the_last(layer: int, step: int
                                                                      ) -> None:
    challenge = HOP.challenge(layer, step)
    revealed = check_reveal(challenge, Reveal.from_wire(HOP.reveal(challenge).to_wire()))
    index = layer - SPAN[0]
    assert revealed.layer == layer and revealed.step == step
    assert revealed.inputs == tuple(HOP.leaves[j][index] for j in range(step + 1))
    assert revealed.output == HOP.leaves[step][index + 1]
    assert revealed.positions == challenge.positions


def test_the_reveal_signature_covers_digests_and_proofs() -> None:
    challenge = HOP.challenge(3, 1)
    reveal = HOP.reveal(challenge)
    expected = REVEAL_DOMAIN + pack([
        challenge.digest(), 3, 1, [t.digest() for t in reveal.inputs],
        [p.to_obj() for p in reveal.input_proofs], reveal.output.digest(),
        reveal.output_proof.to_obj()])
    assert reveal.signing_bytes() == expected
    reveal.verify(NODE.peer_id)


def test_a_reveal_for_another_challenge_or_signed_by_another_key_is_unattributable() -> None:
    challenge = HOP.challenge(3, 1)
    with pytest.raises(UnattributableReveal, match="another challenge"):
        check_reveal(challenge, HOP.reveal(HOP.challenge(2, 1)))
    honest = HOP.reveal(challenge)
    forged = replace(honest, signature=OTHER.sign(honest.signing_bytes()))
    with pytest.raises(UnattributableReveal, match="not signed"):
        check_reveal(challenge, forged)
    with pytest.raises(LocalProtocolError):
        HOP.reveal(challenge, OTHER)


def _bad_reveals(challenge: Challenge) -> dict[str, Reveal]:
    """Signed reveals that contradict the receipts, each in one way."""
    index, step = challenge.leaf_index, challenge.step
    digests = [[t.digest() for t in leaves] for leaves in HOP.leaves]
    wrong = tensor("wrong", count=1)
    inputs = [HOP.leaves[j][index] for j in range(step + 1)]
    return {
        "input_tensor": HOP.reveal(challenge, inputs=[inputs[0], wrong, *inputs[2:]]),
        "output_tensor": HOP.reveal(challenge, output=wrong),
        "output_is_input": HOP.reveal(challenge, output=inputs[-1],
                                      output_proof=merkle_proof(digests[step], index)),
        "proof_index": HOP.reveal(challenge, input_proofs=[
            merkle_proof(digests[j], index + 1) for j in range(step + 1)]),
        "shape": HOP.reveal(challenge, inputs=[tensor("s", count=4), *inputs[1:]]),
        "dtype": HOP.reveal(challenge, output=WireTensor.from_numpy(
            HOP.leaves[step][index + 1].to_numpy().astype(np.float16))),
    }


@pytest.mark.parametrize("problem", ["input_tensor", "output_tensor", "output_is_input",
                                     "proof_index", "shape", "dtype"])
def test_a_signed_reveal_that_contradicts_the_receipts_is_a_reveal_error(problem: str) -> None:
    challenge = HOP.challenge(3, 2)
    with pytest.raises(RevealError) as caught:
        check_reveal(challenge, _bad_reveals(challenge)[problem])
    assert isinstance(caught.value, RemoteProtocolError)


def test_a_reveal_error_names_the_step() -> None:
    challenge = HOP.challenge(3, 2)
    with pytest.raises(RevealError, match="step 1") as caught:
        check_reveal(challenge, _bad_reveals(challenge)["input_tensor"])
    assert caught.value.step == 1


def test_a_reveal_needs_one_input_and_proof_per_step() -> None:
    challenge = HOP.challenge(3, 2)
    reveal = HOP.reveal(challenge)
    with pytest.raises(LocalProtocolError):
        replace(reveal, inputs=reveal.inputs[:2])
    obj = reveal.to_obj()
    obj["input_proofs"] = obj["input_proofs"][:2]  # type: ignore[index]
    with pytest.raises(RemoteProtocolError):
        Reveal.from_obj(obj)


# -- verdicts and fraud proofs -----------------------------------------------------------


def test_a_verdict_is_signed_over_its_fields_and_round_trips() -> None:
    challenge = HOP.challenge(3, 2)
    verdict = verdict_for(challenge)
    verdict.verify()
    body = verdict.body
    assert VERDICT_FIELDS == ("verifier", "subject", "outcome", "model_id", "session_id", "step",
                              "layer", "challenge_digest", "reason", "time_ms")
    assert body.signing_bytes() == VERDICT_DOMAIN + pack([
        VERIFIER.peer_id, NODE.peer_id, "fail", MODEL, SESSION, 2, 3, challenge.digest(),
        body.reason, 5])
    assert body.about(challenge) and not body.about(HOP.challenge(2, 2))
    assert Verdict.from_wire(verdict.to_wire()) == verdict
    tampered = Verdict(replace(body, outcome=Outcome.PASS), verdict.signature)
    with pytest.raises(SignatureError):
        tampered.verify()
    with pytest.raises(LocalProtocolError):
        body.sign(NODE)


def test_verdict_reasons_are_cut_and_bounded() -> None:
    body = VerdictBody.for_challenge(HOP.challenge(2, 0), verifier=VERIFIER.peer_id,
                                     outcome=Outcome.PASS, reason="x" * 2000, time_ms=0)
    assert len(body.reason) == 512
    with pytest.raises(LocalProtocolError):
        replace(body, reason="x" * 513)
    obj = body.sign(VERIFIER).to_obj()
    obj["outcome"] = "maybe"
    with pytest.raises(RemoteProtocolError, match="outcome"):
        Verdict.from_obj(obj)


def test_a_fraud_proof_round_trips_and_checks_its_form() -> None:
    challenge = HOP.challenge(4, 3)
    reveal = HOP.reveal(challenge)
    proof = FraudProof(challenge, reveal, MODEL, verdict_for(challenge))
    assert FraudProof.from_wire(proof.to_wire()) == proof
    assert proof.receipts == challenge.receipts and proof.layer == 4
    with pytest.raises(LocalProtocolError, match="failing"):
        FraudProof(challenge, reveal, MODEL, verdict_for(challenge, Outcome.PASS))
    with pytest.raises(LocalProtocolError, match="model"):
        FraudProof(challenge, reveal, ModelId(b"\x00" * 32), verdict_for(challenge))


def test_a_fraud_proof_names_its_hash_and_one_of_another_is_refused_by_name() -> None:
    challenge = HOP.challenge(4, 3)
    proof = FraudProof(challenge, HOP.reveal(challenge), MODEL, verdict_for(challenge))
    assert proof.hash_alg == "blake3-256"
    with pytest.raises(LocalProtocolError, match="hash_alg"):
        replace(proof, hash_alg="blake2b-256")
    obj = proof.to_obj()
    old = {key: value for key, value in obj.items() if key != "hash_alg"}
    with pytest.raises(RemoteProtocolError, match=r"fraud proof: no hash_alg.*BLAKE2b-256"):
        FraudProof.from_obj(old)
    with pytest.raises(RemoteProtocolError, match="'sha-256' is not supported"):
        FraudProof.from_obj({**obj, "hash_alg": "sha-256"})
    challenge_obj = obj["challenge"]
    assert isinstance(challenge_obj, dict)
    old_receipts = [{key: value for key, value in receipt.items() if key != "hash_alg"}
                    for receipt in challenge_obj["receipts"]]
    with pytest.raises(RemoteProtocolError, match=r"receipt: no hash_alg"):
        FraudProof.from_obj({**obj, "challenge": {**challenge_obj, "receipts": old_receipts}})


# -- hostile bytes ------------------------------------------------------------------------

DECODERS = {
    "challenge": lambda data: Challenge.from_wire(data),
    "reveal": lambda data: Reveal.from_wire(data),
    "verdict": lambda data: Verdict.from_wire(data),
    "fraud_proof": lambda data: FraudProof.from_wire(data),
}
_CHALLENGE = HOP.challenge(3, 1)
ENCODED = {
    "challenge": _CHALLENGE.to_wire(),
    "reveal": HOP.reveal(_CHALLENGE).to_wire(),
    "verdict": verdict_for(_CHALLENGE).to_wire(),
    "fraud_proof": FraudProof(_CHALLENGE, HOP.reveal(_CHALLENGE), MODEL,
                              verdict_for(_CHALLENGE)).to_wire(),
}


def _decodes_or_refuses(kind: str, data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        DECODERS[kind](data)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(DECODERS)), data=st.binary(max_size=600))
def test_random_bytes_raise_only_remote_protocol_errors(kind: str, data: bytes) -> None:
    _decodes_or_refuses(kind, data)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(DECODERS)), data=st.data())
def test_corrupted_encodings_raise_only_remote_protocol_errors(kind: str, data: st.DataObject
                                                               ) -> None:
    encoded = bytearray(ENCODED[kind])
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    _decodes_or_refuses(kind, bytes(encoded[:cut]) if data.draw(st.booleans()) else
                        bytes(encoded))


HOSTILE_VALUES = [None, True, -1, 2**64 - 1, 1.5, "x", b"", b"\x00" * 65, [], [1], {}, {"a": 1}]


def _paths(obj: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every key path into nested maps and lists (the first element of each list)."""
    paths = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            paths += [(*prefix, key), *_paths(value, (*prefix, key))]
    elif isinstance(obj, list) and obj:
        paths += [(*prefix, 0), *_paths(obj[0], (*prefix, 0))]
    return paths


def _replaced(obj: object, path: tuple[object, ...], value: object) -> object:
    if not path:
        return value
    if isinstance(obj, dict):
        return {k: _replaced(v, path[1:], value) if k == path[0] else v for k, v in obj.items()}
    assert isinstance(obj, list)
    return [_replaced(v, path[1:], value) if i == path[0] else v for i, v in enumerate(obj)]


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_every_field_replaced_by_garbage_raises_only_remote_protocol_errors(kind: str) -> None:
    obj = unpack(ENCODED[kind], CHALLENGE_LIMITS)
    for path in _paths(obj):
        for value in HOSTILE_VALUES:
            _decodes_or_refuses(kind, pack(_replaced(obj, path, value)))
        dropped = _replaced(obj, path[:-1], None) if len(path) > 1 else None
        _decodes_or_refuses(kind, pack(dropped))


def test_merkle_proofs_of_the_wrong_size_are_refused_on_decoding() -> None:
    reveal = HOP.reveal(_CHALLENGE)
    obj = reveal.to_obj()
    proof = MerkleProof.from_obj(obj["output_proof"])
    obj["output_proof"] = {**proof.to_obj(), "siblings": [b"\x00" * 32] * 9}
    with pytest.raises(RemoteProtocolError):
        Reveal.from_obj(obj)


def test_the_answer_to_a_challenge_is_a_reveal_or_an_error_frame() -> None:
    from darwin.protocol import ErrorCode, ErrorFrame, decode_answer

    reveal = HOP.reveal(_CHALLENGE)
    assert decode_answer(reveal.to_wire()) == reveal
    refusal = ErrorFrame(ErrorCode.UNKNOWN_SESSION, "expired")
    assert decode_answer(refusal.to_wire()) == refusal
    for other in (_CHALLENGE.to_wire(), pack([1, 2]), b"\xc1"):
        with pytest.raises(RemoteProtocolError):
            decode_answer(other)
