"""Every check of the forward protocol, broken by a peer, beside a concurrent honest session.

Each attack runs on its own stream of the same node while an honest session is between its
prefill and its decode steps; the attacker gets an error frame or a closed stream, the honest
session then completes with exact outputs and valid receipts, and in the end the node holds no
session and no reserved memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import torch
import trio
from node_support import (
    QUICK_FORWARD,
    HonestSession,
    expect_end,
    expect_error,
    hidden_states,
    node_and_client,
    node_config,
    open_forward,
    receive,
    send,
)

from darwin.model.torch_wire import to_wire
from darwin.net.framing import FramedStream, encode_header
from darwin.net.host import Host
from darwin.node.server import Node
from darwin.node.serving.served_span import SessionCompute
from darwin.protocol import (
    CloseSession,
    ErrorCode,
    InfoRequest,
    ModelId,
    OpenSession,
    SessionId,
    StepRequest,
    StepResult,
    new_session_id,
)

Attack = Callable[[Host, Node], Awaitable[None]]
SESSION = SessionId(new_session_id())


async def _open(client: Host, node: Node, **changes: object) -> FramedStream:
    """A stream on which an open with ``changes`` was sent (not yet answered)."""
    fields: dict[str, object] = dict(
        session_id=SESSION,
        model_id=node.model_id,
        adapter_id=None,
        span_start=0,
        span_end=4,
        max_length=8,
    )
    fields.update(changes)
    stream = await open_forward(client, node)
    await send(stream, OpenSession(**fields))  # type: ignore[arg-type]
    return stream


async def _opened(client: Host, node: Node, **changes: object) -> FramedStream:
    stream = await _open(client, node, **changes)
    await receive(stream)  # session_opened
    return stream


def _step(
    step: int, position: int, hidden: torch.Tensor, session: SessionId = SESSION
) -> StepRequest:
    return StepRequest.create(session, step, position, to_wire(hidden))


async def _refused_open(client: Host, node: Node, code: ErrorCode, **changes: object) -> None:
    stream = await _open(client, node, **changes)
    await expect_error(stream, code)
    await expect_end(stream)


async def _refused_step(
    client: Host, node: Node, bad: StepRequest, code: ErrorCode, **changes: object
) -> None:
    """A refused step changes nothing: the right step 0 then runs on the same stream."""
    stream = await _opened(client, node, **changes)
    await send(stream, bad)
    await expect_error(stream, code)
    await send(stream, _step(0, 0, hidden_states(2, 7)))
    assert isinstance(await receive(stream), StepResult)
    await send(stream, CloseSession(SESSION))
    await expect_end(stream)


# -- opens the node cannot serve -------------------------------------------------------------


async def wrong_model(client: Host, node: Node) -> None:
    await _refused_open(client, node, ErrorCode.UNKNOWN_MODEL, model_id=ModelId(b"x" * 32))


async def span_outside(client: Host, node: Node) -> None:
    await _refused_open(client, node, ErrorCode.SPAN_UNAVAILABLE, span_start=2, span_end=5)


async def adapter(client: Host, node: Node) -> None:
    await _refused_open(client, node, ErrorCode.ADAPTER_UNAVAILABLE, adapter_id=b"a" * 32)


async def longer_than_the_node_admits(client: Host, node: Node) -> None:
    await _refused_open(client, node, ErrorCode.LENGTH_EXCEEDED, max_length=33)


async def step_before_open(client: Host, node: Node) -> None:
    stream = await open_forward(client, node)
    await send(stream, _step(0, 0, hidden_states(2, 7)))
    await expect_error(stream, ErrorCode.BAD_REQUEST)
    await expect_end(stream)


# -- steps the node refuses, keeping the session --------------------------------------------


async def out_of_order_step(client: Host, node: Node) -> None:
    await _refused_step(client, node, _step(1, 0, hidden_states(2, 7)), ErrorCode.BAD_REQUEST)


async def wrong_position(client: Host, node: Node) -> None:
    await _refused_step(client, node, _step(0, 3, hidden_states(2, 7)), ErrorCode.BAD_REQUEST)


async def past_max_length(client: Host, node: Node) -> None:
    await _refused_step(client, node, _step(0, 0, hidden_states(9, 7)), ErrorCode.LENGTH_EXCEEDED)


async def wrong_width(client: Host, node: Node) -> None:
    await _refused_step(client, node, _step(0, 0, torch.zeros(1, 2, 32)), ErrorCode.BAD_REQUEST)


async def wrong_dtype(client: Host, node: Node) -> None:
    bad = _step(0, 0, hidden_states(2, 7).to(torch.float16))
    await _refused_step(client, node, bad, ErrorCode.BAD_REQUEST)


async def foreign_session(client: Host, node: Node) -> None:
    bad = _step(0, 0, hidden_states(2, 7), session=SessionId(b"o" * 16))
    await _refused_step(client, node, bad, ErrorCode.UNKNOWN_SESSION)


async def message_of_the_other_side(client: Host, node: Node) -> None:
    await _refused_step(client, node, InfoRequest(), ErrorCode.BAD_REQUEST)  # type: ignore[arg-type]


async def batch_change(client: Host, node: Node) -> None:
    stream = await _opened(client, node)
    await send(stream, _step(0, 0, hidden_states(2, 7)))
    assert isinstance(await receive(stream), StepResult)
    await send(stream, _step(1, 2, hidden_states(1, 8, batch=2)))
    await expect_error(stream, ErrorCode.BAD_REQUEST)
    await send(stream, CloseSession(SESSION))
    await expect_end(stream)


# -- bytes that are not messages ------------------------------------------------------------


async def garbage_frame(client: Host, node: Node) -> None:
    stream = await _opened(client, node)
    await stream.write(b"\xde\xad\xbe\xef" * 16)
    await expect_error(stream, ErrorCode.BAD_REQUEST)
    await expect_end(stream)


async def garbage_bytes(client: Host, node: Node) -> None:
    framed = await open_forward(client, node)
    await framed.stream.write(b"\xde\xad\xbe\xef" * 64)  # the "header" announces 3.7 GB
    await expect_error(framed, ErrorCode.BAD_REQUEST)
    await expect_end(framed)


async def oversized_frame(client: Host, node: Node) -> None:
    framed = await _opened(client, node)
    await framed.stream.write(encode_header(QUICK_FORWARD.max_frame_size + 1) + b"x" * 1000)
    await expect_error(framed, ErrorCode.BAD_REQUEST)
    await expect_end(framed)


async def half_open(client: Host, node: Node) -> None:
    framed = await _opened(client, node)
    await framed.stream.write(encode_header(100) + b"0123456789")
    await framed.close()  # end of stream inside the frame
    await expect_end(framed)


async def stalled_frame(client: Host, node: Node) -> None:
    framed = await _opened(client, node)
    await framed.stream.write(encode_header(100) + b"0123456789")  # ...and nothing more
    await expect_end(framed)  # after the frame deadline


async def reset_mid_session(client: Host, node: Node) -> None:
    stream = await _opened(client, node)
    await send(stream, _step(0, 0, hidden_states(2, 7)))
    assert isinstance(await receive(stream), StepResult)
    await stream.reset()


ATTACKS = [
    wrong_model,
    span_outside,
    adapter,
    longer_than_the_node_admits,
    step_before_open,
    out_of_order_step,
    wrong_position,
    past_max_length,
    wrong_width,
    wrong_dtype,
    foreign_session,
    message_of_the_other_side,
    batch_change,
    garbage_frame,
    garbage_bytes,
    oversized_frame,
    half_open,
    stalled_frame,
    reset_mid_session,
]


async def _until_idle(node: Node) -> None:
    """Wait (bounded by the caller) until every handler has released its session."""
    while node.sessions.active or node.sessions.reserved_bytes:
        await trio.sleep(0.01)


async def _beside_an_honest_session(node: Node, client: Host, attack: Attack) -> None:
    honest = await HonestSession.open(client, node)
    await honest.step(hidden_states(5, 0))
    await attack(client, node)
    await honest.step(hidden_states(1, 1))
    await honest.step(hidden_states(1, 2))
    await honest.close()
    with trio.fail_after(5):
        await _until_idle(node)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.__name__ for a in ATTACKS])
async def test_attack_is_refused_and_the_honest_session_completes(
    attack: Attack, tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            await _beside_an_honest_session(node, client, attack)


async def test_a_failing_step_ends_only_its_own_session(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_step = SessionCompute.run_step

    def failing(self: SessionCompute, request: StepRequest) -> bytes:
        if request.hidden.shape[1] == 7:
            raise RuntimeError("simulated failure inside torch")
        return run_step(self, request)

    monkeypatch.setattr(SessionCompute, "run_step", failing)

    async def attack(client: Host, node: Node) -> None:
        stream = await _opened(client, node)
        await send(stream, _step(0, 0, hidden_states(7, 7)))
        await expect_error(stream, ErrorCode.INTERNAL)
        await expect_end(stream)

    with trio.fail_after(30):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            await _beside_an_honest_session(node, client, attack)
