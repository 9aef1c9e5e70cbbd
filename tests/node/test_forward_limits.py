"""The node's limits on a real stream: session slots, the KV-cache budget, idle sessions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
from darwin.protocol import (
    ErrorCode,
    OpenSession,
    SessionId,
    SessionOpened,
    StepRequest,
    StepResult,
    new_session_id,
)

ROW_BYTES = 2 * 4 * 8 * 32 * 4  # 2 · layers · max_length 8 · kv_width 32 · float32


async def _open(client, node, max_length: int = 8):  # type: ignore[no-untyped-def]
    session_id = SessionId(new_session_id())
    stream = await open_forward(client, node)
    await send(stream, OpenSession(session_id, node.model_id, None, 0, 4, max_length))
    return stream, session_id


async def test_a_full_session_table_answers_busy_until_a_session_ends(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        config = node_config(tiny_llama, tmp_path, max_sessions=1)
        async with node_and_client(config) as (node, client):
            honest = await HonestSession.open(client, node)
            stream, _ = await _open(client, node)
            await expect_error(stream, ErrorCode.BUSY)
            await expect_end(stream)
            await honest.run(steps=2)
            await honest.close()
            again = await HonestSession.open(client, node)
            await again.run(steps=1)
            await again.close()


async def test_an_open_past_the_memory_budget_is_busy(tiny_llama: Path, tmp_path: Path) -> None:
    with trio.fail_after(30):
        config = node_config(tiny_llama, tmp_path, kv_budget_bytes=ROW_BYTES)
        async with node_and_client(config) as (node, client):
            first, _ = await _open(client, node, max_length=8)
            assert isinstance(await receive(first), SessionOpened)
            assert node.sessions.reserved_bytes == ROW_BYTES
            second, _ = await _open(client, node, max_length=1)
            await expect_error(second, ErrorCode.BUSY)
            await expect_end(second)
            await first.close()
            await expect_end(first)
            assert (node.sessions.active, node.sessions.reserved_bytes) == (0, 0)


async def test_a_batch_past_the_memory_budget_is_busy_and_a_smaller_one_runs(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        config = node_config(tiny_llama, tmp_path, kv_budget_bytes=ROW_BYTES * 3 // 2)
        async with node_and_client(config) as (node, client):
            stream, session_id = await _open(client, node, max_length=8)
            assert isinstance(await receive(stream), SessionOpened)
            wide = hidden_states(2, 0, batch=2)
            await send(stream, StepRequest.create(session_id, 0, 0, to_wire(wide)))
            await expect_error(stream, ErrorCode.BUSY)
            assert node.sessions.reserved_bytes == ROW_BYTES
            await send(stream, StepRequest.create(session_id, 0, 0, to_wire(wide[:1])))
            assert isinstance(await receive(stream), StepResult)
            await stream.close()
            await expect_end(stream)
            assert (node.sessions.active, node.sessions.reserved_bytes) == (0, 0)


async def test_an_idle_session_is_closed(tiny_llama: Path, tmp_path: Path) -> None:
    with trio.fail_after(30):
        forward = dataclasses.replace(QUICK_FORWARD, idle_timeout=0.5)
        async with node_and_client(node_config(tiny_llama, tmp_path, forward=forward)) as (
            node,
            client,
        ):
            stream, _ = await _open(client, node)
            assert isinstance(await receive(stream), SessionOpened)
            assert node.sessions.active == 1
            await expect_end(stream)  # after 0.5 s without a frame
            assert node.sessions.active == 0
