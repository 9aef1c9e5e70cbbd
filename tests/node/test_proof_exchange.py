"""``/darwin/proof/1`` between two real hosts: a proof by hash, and holders that lie."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from transport_support import swarm

from darwin.gossip.proof_exchange import (
    ProofExchangeConfig,
    ProofFetchError,
    ProofHandler,
    fetch_proof,
)
from darwin.gossip.proof_store import ProofStore
from darwin.net.framing import FrameConfig, FramedStream, FrameTooLarge
from darwin.net.host import Host, Stream
from darwin.net.protocols import PROOF_PROTOCOL
from darwin.protocol import ErrorCode, ErrorFrame
from darwin.protocol.proof_request import ProofAnswer, ProofRequest, decode_proof_answer, proof_hash

QUICK = {"dial_timeout": 3.0, "dht_timeout": 3.0}
CONFIG = ProofExchangeConfig(max_proof_bytes=4096, timeout=5.0)
PROOF = b"a proof's bytes" * 10


@asynccontextmanager
async def holder_and_asker(tmp_path: Path,
                           config: ProofExchangeConfig = CONFIG,
                           ) -> AsyncIterator[tuple[Host, ProofStore, Host]]:
    async with swarm(2, **QUICK) as (holder, asker):
        store = ProofStore(tmp_path)
        holder.set_stream_handler(PROOF_PROTOCOL, ProofHandler(store, config))
        yield holder, store, asker


async def ask_raw(asker: Host, holder: Host, frame: bytes) -> ProofAnswer | ErrorFrame:
    stream = await asker.open_stream(holder.peer_id, PROOF_PROTOCOL)
    framed = FramedStream(stream, FrameConfig(max_frame_size=1 << 20, frame_timeout=5))
    await framed.write(frame)
    return decode_proof_answer(await framed.read(), 4096)


async def test_a_held_proof_is_fetched_by_its_hash(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with holder_and_asker(tmp_path) as (holder, store, asker):
            digest = store.put(PROOF)
            assert await fetch_proof(asker, holder.peer_id, digest, CONFIG) == PROOF
            with pytest.raises(ProofFetchError, match="not_found"):
                await fetch_proof(asker, holder.peer_id, proof_hash(b"unknown"), CONFIG)
            big = store.put(b"x" * 5000)  # held, but over what the holder serves
            with pytest.raises(ProofFetchError, match="not_found"):
                await fetch_proof(asker, holder.peer_id, big, CONFIG)


async def test_the_holder_refuses_malformed_requests_and_floods(tmp_path: Path) -> None:
    config = ProofExchangeConfig(max_proof_bytes=4096, timeout=5.0, serve_rate=1e-8,
                                 serve_burst=1)
    with trio.fail_after(30):
        async with holder_and_asker(tmp_path, config) as (holder, store, asker):
            digest = store.put(PROOF)
            short = b"\x83\xa1v\x01\xa4kind\xadproof_request\xaaproof_hash\xc4\x04abcd"
            for bad in (short, b"\xc1", b"\x00" * 129):  # a 4-byte hash, junk, oversized
                answer = await ask_raw(asker, holder, bad)
                assert isinstance(answer, ErrorFrame) and answer.code is ErrorCode.BAD_REQUEST
            assert await fetch_proof(asker, holder.peer_id, digest, config) == PROOF
            with pytest.raises(ProofFetchError, match="busy"):
                await fetch_proof(asker, holder.peer_id, digest, config)


async def test_an_answer_that_is_not_the_proof_asked_for_is_refused(tmp_path: Path) -> None:
    answers: list[bytes] = []

    async def liar(stream: Stream) -> None:
        framed = FramedStream(stream, FrameConfig(max_frame_size=128, max_write_size=1 << 20))
        ProofRequest.from_wire(await framed.read())
        frame = answers.pop(0)
        if frame:
            await framed.write(frame)
        else:
            await trio.sleep_forever()  # never answers

    digest = proof_hash(PROOF)
    cases = [
        (ProofAnswer(PROOF + b"!").to_wire(), ProofFetchError, "do not hash"),
        (ProofAnswer(b"x" * 5000).to_wire(), FrameTooLarge, "exceeds the limit"),
        (b"\x92\x01\x02", ProofFetchError, "bad answer to proof fetch"),
        (b"", ProofFetchError, "timed out"),
    ]
    quick = ProofExchangeConfig(max_proof_bytes=4096, timeout=1.0)
    with trio.fail_after(30):
        async with holder_and_asker(tmp_path) as (holder, _, asker):
            holder.set_stream_handler(PROOF_PROTOCOL, liar)
            for frame, error, match in cases:
                answers.append(frame)
                with pytest.raises(error, match=match):
                    await fetch_proof(asker, holder.peer_id, digest, quick)
