"""The client side of a forward stream: open, then one step at a time, every answer checked.

Each test plays the node's answers as messages (honest ones are signed by the node's real
key over real tensors) and checks what the client's state machine makes of them: the next
request to send, a checked result, or the typed error that names whose fault it is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from darwin.protocol import (
    CloseSession,
    DType,
    ErrorCode,
    ErrorFrame,
    Identity,
    InfoRequest,
    LocalProtocolError,
    Message,
    ModelId,
    OpenSession,
    PeerId,
    PushedStepRequest,
    Receipt,
    ReceiptBody,
    ReceiptError,
    RemoteProtocolError,
    SessionId,
    SessionOpened,
    SignatureError,
    StepReceipt,
    StepRequest,
    StepResult,
    WireTensor,
    layer_root_for,
)
from darwin.protocol.forward_client import (
    Aborted,
    Answered,
    BrokenLink,
    ClientSession,
    ClientState,
    Opened,
    Refused,
    check_link,
)

MODEL = ModelId(b"m" * 32)
SESSION = SessionId(b"s" * 16)
NODE = Identity.from_seed(bytes([11]) * 32)
NEIGHBOUR = Identity.from_seed(bytes([12]) * 32)
SPAN = (2, 5)
WIDTH = 4


def _hidden(seq: int, fill: float = 1.0, dtype: type[np.floating] = np.float32,
            width: int = WIDTH) -> WireTensor:
    return WireTensor.from_numpy(np.full((1, seq, width), fill, dtype=dtype))


def _open(**changes: object) -> OpenSession:
    fields: dict[str, object] = dict(session_id=SESSION, model_id=MODEL, adapter_id=None,
                                     span_start=SPAN[0], span_end=SPAN[1], max_length=16)
    fields.update(changes)
    return OpenSession(**fields)  # type: ignore[arg-type]


def _granted(request: OpenSession, **changes: object) -> SessionOpened:
    reply = SessionOpened(request.session_id, request.span_start, request.span_end,
                          request.max_length, retention_s=60)
    return dataclasses.replace(reply, **changes)  # type: ignore[arg-type]


def _receipt(step: int, position: int, seq: int, input_hash: bytes, output_hash: bytes,
             signer: Identity = NODE, **changes: object) -> Receipt:
    """A receipt for one step signed by `signer` (a forgery unless it is the body's node);
    `changes` override fields of its body."""
    body = ReceiptBody(model_id=MODEL, adapter_id=None, session_id=SESSION, step=step,
                       span_start=SPAN[0], span_end=SPAN[1], input_hash=input_hash,
                       output_hash=output_hash,
                       layer_root=layer_root_for([input_hash] * (SPAN[1] - SPAN[0]),
                                                 output_hash),
                       position_start=position, position_count=seq, node_id=NODE.peer_id,
                       time_ms=1_700_000_000_000, retention_s=60)
    body = dataclasses.replace(body, **changes)
    return Receipt(body, signer.sign(body.signing_bytes()))


def _result(request: StepRequest | PushedStepRequest, output: WireTensor | None = None,
            signer: Identity = NODE, **changes: object) -> StepResult:
    """The node's honest `StepResult` for `request` (output: the input doubled)."""
    seq = request.position_count
    if output is None:
        output = _hidden(seq, 2.0)
    hashes: dict[str, Any] = dict(
        input_hash=request.input_hash if isinstance(request, StepRequest)
        else _hidden(seq, 0.5).digest(),  # what the previous hop pushed
        output_hash=output.digest())
    hashes.update(changes)
    receipt = _receipt(request.step, request.position_start, seq, signer=signer, **hashes)
    return StepResult(request.step, output, receipt)


def _receipt_only(request: StepRequest | PushedStepRequest, **changes: object) -> StepReceipt:
    """The node's honest `StepReceipt` for `request`: its output went on to the next hop."""
    result = _result(request, **changes)
    return StepReceipt(result.step, result.receipt)


def _opened(**changes: object) -> ClientSession:
    machine = ClientSession(NODE.peer_id)
    request = machine.open(_open(**changes))
    assert isinstance(machine.receive(_granted(request)), Opened)
    return machine


def _stepping() -> tuple[ClientSession, StepRequest]:
    machine = _opened()
    return machine, machine.step(0, _hidden(3))


# --- Opening --------------------------------------------------------------------------------


def test_open_sends_the_request_and_a_matching_grant_opens_the_session() -> None:
    machine = ClientSession(NODE.peer_id)
    request = machine.open(_open())
    assert request == _open() and machine.state is ClientState.OPENING
    event = machine.receive(_granted(request, max_length=32))  # more than asked is fine
    assert isinstance(event, Opened) and event.reply.retention_s == 60
    assert machine.state is ClientState.OPEN and (machine.next_step, machine.position) == (0, 0)


@pytest.mark.parametrize("code", [ErrorCode.BUSY, ErrorCode.SPAN_UNAVAILABLE,
                                  ErrorCode.PUSH_FAILED, ErrorCode.BAD_REQUEST])
def test_an_error_frame_to_open_means_the_node_refused_the_session(code: ErrorCode) -> None:
    machine = ClientSession(NODE.peer_id)
    machine.open(_open())
    with pytest.raises(Aborted, match=f"refused the session \\({code.value}: no"
                       ) as caught:
        machine.receive(ErrorFrame(code, "no"))
    assert caught.value.code is code and machine.state is ClientState.FAILED


@pytest.mark.parametrize("answer,reason", [
    (InfoRequest(), "unexpected info_request"),
    (SessionOpened(SessionId(b"o" * 16), *SPAN, 16, 60), "unexpected session_opened"),
    (SessionOpened(SESSION, 2, 6, 16, 60), "unexpected session_opened"),
    (SessionOpened(SESSION, *SPAN, 15, 60), "granted max_length 15, 16 needed"),
])
def test_a_grant_for_another_session_span_or_length_is_the_nodes_violation(
        answer: Message, reason: str) -> None:
    machine = ClientSession(NODE.peer_id)
    machine.open(_open())
    with pytest.raises(RemoteProtocolError, match=reason):
        machine.receive(answer)
    assert machine.state is ClientState.FAILED
    with pytest.raises(LocalProtocolError):
        machine.step(0, _hidden(1))
    assert machine.close() == CloseSession(SESSION)


# --- Relayed steps --------------------------------------------------------------------------


def test_steps_are_numbered_in_order_and_each_starts_where_the_previous_ended() -> None:
    machine = _opened()
    for step, (position, seq) in enumerate([(0, 5), (5, 1), (6, 1)]):
        request = machine.step(step, _hidden(seq, float(step)))
        assert (request.session_id, request.step, request.position_start) == (
            SESSION, step, position)
        assert machine.state is ClientState.STEPPING
        event = machine.receive(_result(request))
        assert isinstance(event, Answered) and event.request is request
        assert event.hidden == _hidden(seq, 2.0) and event.receipt.body.step == step
    assert (machine.next_step, machine.position) == (3, 7)
    assert machine.close() == CloseSession(SESSION) and machine.state is ClientState.CLOSED


@pytest.mark.parametrize("code", [ErrorCode.BAD_REQUEST, ErrorCode.LENGTH_EXCEEDED,
                                  ErrorCode.UNKNOWN_SESSION])
def test_a_refused_step_is_our_fault_changes_nothing_and_may_be_sent_again(
        code: ErrorCode) -> None:
    machine, _ = _stepping()
    with pytest.raises(Refused, match=f"refused step 0 \\({code.value}: out of order\\)"
                       ) as caught:
        machine.receive(ErrorFrame(code, "out of order"))
    assert isinstance(caught.value, LocalProtocolError) and caught.value.code is code
    assert machine.state is ClientState.OPEN and (machine.next_step, machine.position) == (0, 0)
    retry = machine.step(0, _hidden(3))
    assert isinstance(machine.receive(_result(retry)), Answered)


@pytest.mark.parametrize("code", [ErrorCode.INTERNAL, ErrorCode.BUSY, ErrorCode.PUSH_FAILED])
def test_any_other_error_frame_ends_the_session(code: ErrorCode) -> None:
    machine, _ = _stepping()
    with pytest.raises(Aborted, match=f"failed step 0 \\({code.value}: oops\\)") as caught:
        machine.receive(ErrorFrame(code, "oops"))
    assert caught.value.code is code and machine.state is ClientState.FAILED
    with pytest.raises(LocalProtocolError):
        machine.step(0, _hidden(3))


def test_an_answer_of_another_kind_or_step_is_the_nodes_violation() -> None:
    for answer in (InfoRequest(), "receipt_only", "other_step"):
        machine, request = _stepping()
        if answer == "receipt_only":
            answer = _receipt_only(request)  # a relaying hop owes us its output
        elif answer == "other_step":
            answer = _result(dataclasses.replace(request, step=1))
        assert isinstance(answer, Message)
        with pytest.raises(RemoteProtocolError, match="answered step 0 with an unexpected"):
            machine.receive(answer)
        assert machine.state is ClientState.FAILED


@pytest.mark.parametrize("output,reason", [
    (_hidden(3, width=WIDTH + 1), r"returned float32 \[1, 3, 5\] for float32 \[1, 3, 4\]"),
    (_hidden(3, dtype=np.float16), r"returned float16 \[1, 3, 4\] for float32"),
])
def test_an_output_not_shaped_like_the_input_is_the_nodes_violation(output: WireTensor,
                                                                     reason: str) -> None:
    machine, request = _stepping()
    with pytest.raises(RemoteProtocolError, match=reason):
        machine.receive(_result(request, output))


@pytest.mark.parametrize("changes,wrong", [
    (dict(node_id=NEIGHBOUR.peer_id), "node_id"),
    (dict(model_id=ModelId(b"x" * 32)), "model_id"),
    (dict(session_id=SessionId(b"o" * 16)), "session_id"),
    (dict(span_start=3), "span_start"),
    (dict(position_start=1), "position_start"),
    (dict(input_hash=b"\x01" * 32), "input_hash"),
])
def test_a_receipt_that_does_not_match_the_exchange_is_a_receipt_error(
        changes: dict[str, object], wrong: str) -> None:
    machine, request = _stepping()
    with pytest.raises(ReceiptError, match=wrong):
        machine.receive(_result(request, **changes))
    assert machine.state is ClientState.FAILED
    assert machine.close() == CloseSession(SESSION)  # the stream itself still works


def test_a_receipt_signed_by_another_key_is_a_signature_error() -> None:
    machine, request = _stepping()
    with pytest.raises(SignatureError):
        machine.receive(_result(request, signer=NEIGHBOUR))


# --- Our own misuse -------------------------------------------------------------------------


def test_a_step_before_the_grant_out_of_order_or_while_one_is_due_is_our_bug() -> None:
    machine = ClientSession(NODE.peer_id)
    with pytest.raises(LocalProtocolError, match="in state start"):
        machine.step(0, _hidden(1))
    machine.open(_open())
    with pytest.raises(LocalProtocolError, match="in state opening"):
        machine.step(0, _hidden(1))
    with pytest.raises(LocalProtocolError, match="open a session"):
        machine.open(_open())
    machine.receive(_granted(_open()))
    with pytest.raises(LocalProtocolError, match="step 1 out of order, expected 0"):
        machine.step(1, _hidden(1))
    machine.step(0, _hidden(1))
    with pytest.raises(LocalProtocolError, match="in state stepping"):
        machine.step(1, _hidden(1))


def test_nothing_can_be_closed_twice_or_before_it_was_opened() -> None:
    with pytest.raises(LocalProtocolError, match="no session"):
        ClientSession(NODE.peer_id).close()
    machine = _opened()
    machine.close()
    with pytest.raises(LocalProtocolError, match="already closed"):
        machine.close()


def test_an_answer_when_none_is_due_is_the_nodes_violation() -> None:
    machine = _opened()
    with pytest.raises(RemoteProtocolError, match="no answer was due"):
        machine.receive(ErrorFrame(ErrorCode.INTERNAL, "unasked"))
    closed = _opened()
    closed.close()
    with pytest.raises(RemoteProtocolError, match="no answer was due"):
        closed.receive(ErrorFrame(ErrorCode.INTERNAL, "late"))


# --- Pushed activations ---------------------------------------------------------------------


PREVIOUS = PeerId(NEIGHBOUR.peer_id)
NEXT = PeerId(Identity.from_seed(bytes([13]) * 32).peer_id)


def test_the_first_hop_of_a_pushing_route_answers_with_its_receipt_on_our_input() -> None:
    machine = _opened(push_to=NEXT, push_addrs=("/ip4/127.0.0.1/tcp/1",))
    assert machine.pushes and not machine.pushed
    request = machine.step(0, _hidden(5))
    event = machine.receive(_receipt_only(request))
    assert isinstance(event, Answered) and event.hidden is None
    assert event.receipt.body.input_hash == request.input_hash
    other = machine.step(1, _hidden(1))
    with pytest.raises(ReceiptError, match="input_hash"):
        machine.receive(_receipt_only(other, input_hash=b"\x02" * 32))


def test_a_pushing_hop_that_answers_with_its_output_is_the_nodes_violation() -> None:
    machine = _opened(push_to=NEXT)
    request = machine.step(0, _hidden(5))
    with pytest.raises(RemoteProtocolError, match="answered step 0 with an unexpected step_result"):
        machine.receive(_result(request))


def test_an_inner_hop_is_asked_for_pushed_steps_in_order_and_answers_with_receipts() -> None:
    machine = _opened(push_from=PREVIOUS, push_to=NEXT)
    assert machine.pushes and machine.pushed
    with pytest.raises(LocalProtocolError, match="previous hop's push"):
        machine.step(0, _hidden(5))
    for step, (position, seq) in enumerate([(0, 5), (5, 1)]):
        request = machine.pushed_step(step, (1, seq, WIDTH), DType.FLOAT32)
        assert request == PushedStepRequest(SESSION, step, position, seq)
        event = machine.receive(_receipt_only(request))
        assert isinstance(event, Answered) and event.hidden is None
    assert (machine.next_step, machine.position) == (2, 6)


def test_the_last_hop_of_a_pushing_route_returns_an_output_shaped_like_the_route_input() -> None:
    machine = _opened(push_from=PREVIOUS)
    request = machine.pushed_step(0, (1, 3, WIDTH), DType.FLOAT32)
    event = machine.receive(_result(request))
    assert isinstance(event, Answered) and event.hidden == _hidden(3, 2.0)
    request = machine.pushed_step(1, (1, 1, WIDTH), DType.FLOAT32)
    with pytest.raises(RemoteProtocolError, match=r"returned float32 \[1, 1, 5\]"):
        machine.receive(_result(request, _hidden(1, width=WIDTH + 1)))


def test_a_session_fed_by_the_client_is_never_sent_a_pushed_step() -> None:
    with pytest.raises(LocalProtocolError, match="from the client"):
        _opened().pushed_step(0, (1, 1, WIDTH), DType.FLOAT32)


def test_a_pushed_input_must_be_the_output_the_previous_receipt_names() -> None:
    first = _receipt(0, 0, 5, b"\x01" * 32, b"\x02" * 32)
    check_link(first, _receipt(0, 0, 5, b"\x02" * 32, b"\x03" * 32))
    with pytest.raises(BrokenLink, match=f"step 0: its input is not the output of {NODE.peer_id}"):
        check_link(first, _receipt(0, 0, 5, b"\x09" * 32, b"\x03" * 32))
