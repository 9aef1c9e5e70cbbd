"""Honest forward sessions on a real node: outputs equal a local span's, receipts verify."""

from __future__ import annotations

from pathlib import Path

import trio
from node_support import (
    HonestSession,
    expect_end,
    hidden_states,
    node_and_client,
    node_config,
)


async def test_prefill_and_decode_match_a_local_span_and_receipts_verify(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            session = await HonestSession.open(client, node)
            assert node.sessions.active == 1
            await session.run(steps=4)
            await session.close()
            assert (node.sessions.active, node.sessions.reserved_bytes) == (0, 0)


async def test_a_sub_span_session_computes_that_part_of_the_span(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            head = await HonestSession.open(client, node, span=(0, 2))
            tail = await HonestSession.open(client, node, span=(2, 4))
            for i, seq in enumerate([4, 1, 1]):
                middle = await head.step(hidden_states(seq, 10 + i))
                await tail.step(middle)
            await head.close()
            await tail.close()
            assert node.sessions.active == 0


async def test_concurrent_sessions_keep_their_own_caches(tiny_llama: Path, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            async with trio.open_nursery() as nursery:
                for seed in (0, 100, 200):

                    async def one(seed: int = seed) -> None:
                        session = await HonestSession.open(client, node)
                        await session.run(steps=4, seed_=seed)
                        await session.close()

                    nursery.start_soon(one)
            assert node.sessions.active == 0


async def test_a_client_that_drops_the_stream_frees_its_session(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            session = await HonestSession.open(client, node)
            await session.run(steps=2)
            await session.stream.close()  # end of stream instead of close_session
            await expect_end(session.stream)
            assert (node.sessions.active, node.sessions.reserved_bytes) == (0, 0)
