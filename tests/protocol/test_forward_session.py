"""The server side of a forward stream: open first, steps in order, nothing after close."""

from __future__ import annotations

import numpy as np
import pytest

from darwin.protocol import (
    CloseSession,
    ErrorCode,
    InfoRequest,
    ModelId,
    OpenSession,
    PeerId,
    PushedStepRequest,
    SessionId,
    StepRequest,
    WireTensor,
)
from darwin.protocol.forward_session import (
    Closed,
    Opened,
    Refusal,
    RunStep,
    ServePolicy,
    ServerSession,
    SessionState,
)

MODEL = ModelId(b"m" * 32)
SESSION = SessionId(b"s" * 16)
POLICY = ServePolicy(model_id=MODEL, span_start=2, span_end=6, max_length=64, retention_s=30)


def _open(**changes: object) -> OpenSession:
    fields: dict[str, object] = dict(session_id=SESSION, model_id=MODEL, adapter_id=None,
                                     span_start=2, span_end=5, max_length=16)
    fields.update(changes)
    return OpenSession(**fields)  # type: ignore[arg-type]


def _step(step: int, position: int, seq: int = 1, session: SessionId = SESSION) -> StepRequest:
    hidden = WireTensor.from_numpy(np.zeros((1, seq, 4), dtype=np.float32))
    return StepRequest.create(session, step, position, hidden)


def _opened() -> ServerSession:
    machine = ServerSession(POLICY)
    machine.receive(_open())
    return machine


def test_open_inside_the_served_span_is_admitted_with_the_retention_promise() -> None:
    machine = ServerSession(POLICY)
    event = machine.receive(_open())
    assert isinstance(event, Opened)
    assert (event.reply.span_start, event.reply.span_end, event.reply.retention_s) == (2, 5, 30)
    assert machine.state is SessionState.OPEN


@pytest.mark.parametrize("changes,code", [
    (dict(model_id=ModelId(b"x" * 32)), ErrorCode.UNKNOWN_MODEL),
    (dict(span_start=1), ErrorCode.SPAN_UNAVAILABLE),
    (dict(span_end=7), ErrorCode.SPAN_UNAVAILABLE),
    (dict(max_length=65), ErrorCode.LENGTH_EXCEEDED),
    (dict(adapter_id=b"a" * 32), ErrorCode.ADAPTER_UNAVAILABLE),
])
def test_an_open_the_node_cannot_serve_is_refused(changes: dict[str, object],
                                                  code: ErrorCode) -> None:
    with pytest.raises(Refusal) as caught:
        ServerSession(POLICY).receive(_open(**changes))
    assert caught.value.code is code


def test_anything_before_open_is_refused() -> None:
    with pytest.raises(Refusal):
        ServerSession(POLICY).receive(_step(0, 0))
    with pytest.raises(Refusal):
        ServerSession(POLICY).receive(InfoRequest())


def test_steps_run_in_order_and_advance_the_position() -> None:
    machine = _opened()
    for step, (position, seq) in enumerate([(0, 5), (5, 1), (6, 1)]):
        event = machine.receive(_step(step, position, seq))
        assert isinstance(event, RunStep)
        machine.step_done(event.request)
    assert (machine.next_step, machine.position) == (3, 7)


@pytest.mark.parametrize("request_", [_step(1, 0), _step(0, 3), _step(0, 0, seq=17),
                                      _step(0, 0, session=SessionId(b"o" * 16))])
def test_an_out_of_order_overlong_or_foreign_step_is_refused_and_changes_nothing(
    request_: StepRequest,
) -> None:
    machine = _opened()
    with pytest.raises(Refusal):
        machine.receive(request_)
    assert isinstance(machine.receive(_step(0, 0)), RunStep)


def test_a_second_step_while_one_runs_is_refused() -> None:
    machine = _opened()
    machine.receive(_step(0, 0))
    with pytest.raises(Refusal, match="already running"):
        machine.receive(_step(1, 1))


def test_a_step_that_failed_to_run_can_be_retried_and_changes_nothing() -> None:
    machine = _opened()
    event = machine.receive(_step(0, 0, seq=3))
    assert isinstance(event, RunStep)
    machine.step_failed(event.request)
    assert (machine.next_step, machine.position) == (0, 0)
    retry = machine.receive(_step(0, 0, seq=3))
    assert isinstance(retry, RunStep)
    machine.step_done(retry.request)
    assert (machine.next_step, machine.position) == (1, 3)


def test_close_ends_the_session_and_nothing_follows() -> None:
    machine = _opened()
    assert isinstance(machine.receive(CloseSession(SESSION)), Closed)
    with pytest.raises(Refusal):
        machine.receive(_step(0, 0))


PREVIOUS_HOP = PeerId("12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB")


def test_a_session_fed_by_pushes_takes_pushed_steps_in_order_and_refuses_client_input() -> None:
    machine = ServerSession(POLICY)
    machine.receive(_open(push_from=PREVIOUS_HOP))
    with pytest.raises(Refusal, match="previous hop"):
        machine.receive(_step(0, 0))
    for step, (position, seq) in enumerate([(0, 5), (5, 1)]):
        event = machine.receive(PushedStepRequest(SESSION, step, position, seq))
        assert isinstance(event, RunStep)
        machine.step_done(event.request)
    assert (machine.next_step, machine.position) == (2, 6)
    with pytest.raises(Refusal, match="max_length"):
        machine.receive(PushedStepRequest(SESSION, 2, 6, 11))


def test_a_session_fed_by_the_client_refuses_pushed_steps() -> None:
    machine = _opened()
    with pytest.raises(Refusal, match="from the client"):
        machine.receive(PushedStepRequest(SESSION, 0, 0, 1))
