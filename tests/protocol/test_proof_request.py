"""The ``/darwin/proof/1`` messages: strict decoding, and answers checked against the hash."""

from __future__ import annotations

import pytest
from blake3 import blake3

from darwin.protocol import ErrorCode, ErrorFrame, LocalProtocolError, RemoteProtocolError
from darwin.protocol.proof_request import (
    ProofAnswer,
    ProofRequest,
    decode_proof_answer,
    proof_hash,
)
from darwin.protocol.wire import pack

PROOF = b"proof bytes"
DIGEST = proof_hash(PROOF)


def test_proof_hash_is_blake3_256_of_the_bytes() -> None:
    assert blake3(PROOF).digest() == DIGEST


def test_messages_round_trip() -> None:
    assert ProofRequest.from_wire(ProofRequest(DIGEST).to_wire()) == ProofRequest(DIGEST)
    assert decode_proof_answer(ProofAnswer(PROOF).to_wire(), 1024) == ProofAnswer(PROOF)
    error = ErrorFrame(ErrorCode.NOT_FOUND, "no such proof")
    assert decode_proof_answer(error.to_wire(), 1024) == error


def test_a_request_names_exactly_one_32_byte_hash() -> None:
    with pytest.raises(LocalProtocolError):
        ProofRequest(b"\x00" * 31)
    for bad in (
        pack({"v": 1, "kind": "proof_request", "proof_hash": b"\x00" * 33}),
        pack({"v": 1, "kind": "proof_request", "proof_hash": DIGEST, "more": 1}),
        pack({"v": 2, "kind": "proof_request", "proof_hash": DIGEST}),
        pack({"v": 1, "kind": "proof_request", "proof_hash": DIGEST.hex()}),
        pack({"v": 1, "kind": "proof_request", "proof_hash": DIGEST, "pad": b"\x00" * 100}),
        b"\xc1",
    ):
        with pytest.raises(RemoteProtocolError):
            ProofRequest.from_wire(bad)


def test_an_answer_is_bounded_and_must_hash_to_the_name_asked_for() -> None:
    answer = ProofAnswer(PROOF)
    assert answer.check(DIGEST) == PROOF
    with pytest.raises(RemoteProtocolError, match="do not hash"):
        answer.check(proof_hash(b"another proof"))
    with pytest.raises(RemoteProtocolError):
        decode_proof_answer(ProofAnswer(b"x" * 1025).to_wire(), 1024)
    for bad in (pack({"v": 1, "kind": "proof_answer", "proof": b""}),
                pack({"v": 1, "kind": "proof_answer", "proof": "text"}),
                ProofRequest(DIGEST).to_wire()):
        with pytest.raises(RemoteProtocolError):
            decode_proof_answer(bad, 1024)
