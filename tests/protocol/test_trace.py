"""Traces: the receipts of one session, checked as a chain by the client and verifiers."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from darwin.protocol import (
    LocalProtocolError,
    ModelId,
    Receipt,
    ReceiptError,
    RemoteProtocolError,
    SessionId,
    SignatureError,
    Trace,
    TraceError,
    WireLimits,
    check_receipt,
    verify_trace,
)
from darwin.protocol.wire import pack, unpack

if TYPE_CHECKING:
    from conftest import Swarm

OTHER = hashlib.blake2b(b"other", digest_size=32).digest()


def verify(swarm: Swarm, receipts: list[Receipt], **overrides: object) -> None:
    verify_trace(receipts, **{**swarm.verify_kwargs(), **overrides})


def test_a_good_three_hop_four_step_trace_passes(swarm: Swarm) -> None:
    trace = swarm.trace(steps=4)
    assert len(trace) == 12
    verify(swarm, trace)


def test_each_step_may_take_a_different_route(swarm: Swarm) -> None:
    # after a failover the last two hops of step 2 are served by one node over [3, 8)
    trace = swarm.trace(steps=4)
    merged = swarm.receipt(2, 1, span_end=8, output_hash=swarm.hop_body(2, 2).output_hash)
    verify(swarm, [*trace[:7], merged, *trace[9:]])


def test_a_trace_with_an_adapter_names_it_in_every_receipt(swarm: Swarm, adapter_id: bytes) -> None:
    trace = [swarm.receipt(s, k, adapter_id=adapter_id) for s in range(2) for k in range(3)]
    verify(swarm, trace, adapter_id=adapter_id)
    with pytest.raises(TraceError, match="adapter_id"):
        verify(swarm, trace)


def test_trace_round_trips_through_msgpack(swarm: Swarm) -> None:
    trace = Trace(tuple(swarm.trace(steps=2)))
    limits = WireLimits(max_objects=10_000)
    assert Trace.from_obj(unpack(pack(trace.to_obj()), limits)) == trace
    trace.verify(**swarm.verify_kwargs())


# --- each rule broken ---------------------------------------------------------------------


def expect_trace_error(swarm: Swarm, receipts: list[Receipt], match: str, step: int, hop: int,
                       **overrides: object) -> None:
    with pytest.raises(TraceError, match=match) as caught:
        verify(swarm, receipts, **overrides)
    assert (caught.value.step, caught.value.hop) == (step, hop)


def test_a_broken_hash_link_between_hops_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    trace[4] = swarm.receipt(1, 1, input_hash=OTHER)
    expect_trace_error(swarm, trace, "input_hash is not the previous hop's output_hash", 1, 1)


def test_a_gap_between_spans_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    trace[7] = swarm.receipt(2, 1, span_start=4)
    expect_trace_error(swarm, trace, r"\[4, 5\) leaves a gap", 2, 1)


def test_overlapping_spans_fail(swarm: Swarm) -> None:
    trace = swarm.trace()
    trace[7] = swarm.receipt(2, 1, span_start=2)
    expect_trace_error(swarm, trace, r"\[2, 5\) overlaps", 2, 1)


def test_a_step_that_does_not_start_at_layer_zero_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    trace[3] = swarm.receipt(1, 0, span_start=1)
    expect_trace_error(swarm, trace, "starts at layer 1, not 0", 1, 0)


def test_a_step_that_stops_short_of_the_last_layer_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    del trace[5]
    expect_trace_error(swarm, trace, "stops at layer 5 of 8", 1, 2)
    expect_trace_error(swarm, swarm.trace()[:-1], "ends at layer 5 of 8", 3, 2)


def test_a_span_past_the_models_last_layer_fails(swarm: Swarm) -> None:
    expect_trace_error(swarm, swarm.trace(), "ends at layer 8 of a 6-layer model", 0, 2,
                       n_layers=6)


def test_a_wrong_model_id_fails(swarm: Swarm) -> None:
    expect_trace_error(swarm, swarm.trace(), "another model_id", 0, 0, model_id=ModelId(OTHER))
    trace = swarm.trace()
    trace[10] = swarm.receipt(3, 1, model_id=OTHER)
    expect_trace_error(swarm, trace, "another model_id", 3, 1)


def test_a_receipt_from_another_session_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    trace[6] = swarm.receipt(2, 0, session_id=b"\x33" * 16)
    expect_trace_error(swarm, trace, "another session_id", 2, 0)


def test_a_duplicated_step_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    replayed = trace[:6] + trace[3:6] + trace[6:]
    expect_trace_error(swarm, replayed, r"step 1 again \(duplicated or replayed\)", 2, 0)


def test_a_duplicated_receipt_within_a_step_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    expect_trace_error(swarm, [*trace[:2], trace[1], *trace[2:]], "overlaps", 0, 2)


def test_a_missing_step_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    expect_trace_error(swarm, trace[:3] + trace[6:], "receipt of step 2 where step 1 is due",
                       1, 0)


def test_reordered_steps_fail(swarm: Swarm) -> None:
    trace = swarm.trace()
    expect_trace_error(swarm, trace[3:6] + trace[:3] + trace[6:],
                       "receipt of step 1 where step 0 is due", 0, 0)


def test_reordered_hops_fail(swarm: Swarm) -> None:
    trace = swarm.trace()
    expect_trace_error(swarm, [trace[1], trace[0], *trace[2:]], "starts at layer 3, not 0", 0, 0)


def test_a_swapped_signature_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    trace[4] = Receipt(trace[4].body, trace[5].signature)
    expect_trace_error(swarm, trace, "signature does not verify", 1, 1)


def test_a_receipt_signed_by_a_node_other_than_it_names_fails(swarm: Swarm) -> None:
    trace = swarm.trace()
    body = trace[2].body
    trace[2] = Receipt(body, swarm.identities[0].sign(body.signing_bytes()))
    expect_trace_error(swarm, trace, "signature does not verify", 0, 2)


def test_positions_must_agree_within_a_step(swarm: Swarm) -> None:
    trace = swarm.trace()
    trace[5] = swarm.receipt(1, 2, position_count=2)
    expect_trace_error(swarm, trace, "positions differ", 1, 2)


def test_positions_must_continue_from_step_to_step(swarm: Swarm) -> None:
    trace = swarm.trace()
    trace[3:6] = [swarm.receipt(1, hop, position_start=6) for hop in range(3)]
    expect_trace_error(swarm, trace, "starts at position 6, not 5", 1, 0)
    first = [swarm.receipt(0, hop, position_start=1) for hop in range(3)]
    expect_trace_error(swarm, first, "starts at position 1, not 0", 0, 0)


def test_an_empty_trace_fails(swarm: Swarm) -> None:
    with pytest.raises(TraceError, match="empty"):
        verify(swarm, [])


def test_a_trace_error_is_a_remote_protocol_error(swarm: Swarm) -> None:
    with pytest.raises(RemoteProtocolError):
        verify(swarm, swarm.trace(), session_id=SessionId(b"\0" * 16))


def test_n_layers_must_be_sensible(swarm: Swarm) -> None:
    with pytest.raises(LocalProtocolError):
        verify(swarm, swarm.trace(), n_layers=0)


# --- the per-receipt check a client makes -------------------------------------------------


def expected_for(swarm: Swarm, step: int, hop: int) -> dict[str, object]:
    body = swarm.hop_body(step, hop)
    return {
        "expected_node": body.node_id, "model_id": swarm.model_id,
        "session_id": swarm.session_id, "step": step, "span": (body.span_start, body.span_end),
        "input_hash": body.input_hash, "output_hash": body.output_hash,
        "positions": (body.position_start, body.position_count),
    }


def test_check_receipt_accepts_the_receipt_of_what_was_exchanged(swarm: Swarm) -> None:
    check_receipt(swarm.receipt(1, 2), **expected_for(swarm, 1, 2))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("expected_node", "12D3KooWother"),
        ("model_id", OTHER),
        ("session_id", b"\0" * 16),
        ("step", 2),
        ("span", (3, 8)),
        ("input_hash", OTHER),
        ("output_hash", OTHER),
        ("positions", (5, 2)),
        ("adapter_id", OTHER),
    ],
)
def test_check_receipt_names_the_field_that_differs(
    swarm: Swarm, key: str, value: object
) -> None:
    expected = {**expected_for(swarm, 1, 1), key: value}
    with pytest.raises(ReceiptError) as caught:
        check_receipt(swarm.receipt(1, 1), **expected)
    field = {"expected_node": "node_id", "span": "span_end", "positions": "position_count"}
    assert field.get(key, key) in caught.value.reason


def test_check_receipt_rejects_a_bad_signature(swarm: Swarm) -> None:
    receipt = swarm.receipt(0, 0)
    forged = Receipt(receipt.body, swarm.identities[1].sign(receipt.body.signing_bytes()))
    with pytest.raises(SignatureError):
        check_receipt(forged, **expected_for(swarm, 0, 0))
