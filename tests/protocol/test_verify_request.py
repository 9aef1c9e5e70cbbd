"""The ``/darwin/verify/1`` messages: round trips, form checks, hostile bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_challenge import HOP, MODEL, NODE, verdict_for

from darwin.protocol import (
    ErrorCode,
    ErrorFrame,
    FraudProof,
    LocalProtocolError,
    Outcome,
    PeerId,
    RemoteProtocolError,
)
from darwin.protocol.verify_request import VerifyAnswer, VerifyRequest, decode_verify_answer


def _request() -> VerifyRequest:
    return VerifyRequest(MODEL, PeerId(NODE.peer_id), ("/ip4/127.0.0.1/tcp/1",), HOP.receipts)


def test_a_request_round_trips_and_checks_its_form() -> None:
    request = _request()
    assert VerifyRequest.from_wire(request.to_wire()) == request
    with pytest.raises(LocalProtocolError):
        VerifyRequest(MODEL, PeerId(NODE.peer_id), (), ())  # no receipts
    with pytest.raises(LocalProtocolError):
        VerifyRequest(MODEL, PeerId(NODE.peer_id), ("a",) * 9, HOP.receipts)  # too many addrs


def test_an_answer_carries_a_proof_exactly_when_it_fails() -> None:
    challenge = HOP.challenge(2, 3)
    fail = verdict_for(challenge)
    proof = FraudProof(challenge, HOP.reveal(challenge), MODEL, fail).to_wire()
    answer = VerifyAnswer(fail, proof)
    decoded = VerifyAnswer.from_wire(answer.to_wire())
    assert decoded == answer and decoded.proof() == FraudProof.from_wire(proof)
    passed = VerifyAnswer(verdict_for(challenge, Outcome.PASS), None)
    assert VerifyAnswer.from_wire(passed.to_wire()) == passed and passed.proof() is None
    with pytest.raises(LocalProtocolError):
        VerifyAnswer(fail, None)
    with pytest.raises(LocalProtocolError):
        VerifyAnswer(verdict_for(challenge, Outcome.PASS), proof)


def test_the_answer_to_a_request_is_a_verdict_or_an_error_frame() -> None:
    passed = VerifyAnswer(verdict_for(HOP.challenge(2, 3), Outcome.PASS), None)
    assert decode_verify_answer(passed.to_wire()) == passed
    refusal = ErrorFrame(ErrorCode.BAD_REQUEST, "another model")
    assert decode_verify_answer(refusal.to_wire()) == refusal
    for other in (_request().to_wire(), b"\xc1"):
        with pytest.raises(RemoteProtocolError):
            decode_verify_answer(other)


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=256), st.integers(min_value=0), st.integers(0, 255))
def test_random_or_corrupted_bytes_raise_only_remote_protocol_errors(
        data: bytes, index: int, value: int) -> None:
    valid = _request().to_wire()
    corrupted = bytearray(valid)
    corrupted[index % len(valid)] = value
    for decode in (VerifyRequest.from_wire, VerifyAnswer.from_wire, decode_verify_answer):
        for candidate in (data, bytes(corrupted)):
            with contextlib.suppress(RemoteProtocolError):
                decode(candidate)
