"""``ask_verifier`` against scripted verifiers on real hosts: a refusal or silence is no verdict."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from darwin.client.verification import NoVerdict, ask_verifier
from darwin.net.framing import FramedStream
from darwin.net.host import Host, HostConfig, Stream, open_host
from darwin.net.protocols import VERIFY_PROTOCOL
from darwin.protocol import (
    ErrorCode,
    ErrorFrame,
    Identity,
    ModelId,
    PeerId,
    ReceiptBody,
    layer_root_for,
    new_session_id,
)
from darwin.protocol.verify_request import VerifyRequest

MODEL = ModelId(b"\x05" * 32)
NODE = Identity.from_seed(bytes([41]) * 32)


def _request() -> VerifyRequest:
    digest = b"\x07" * 32
    body = ReceiptBody(model_id=MODEL, adapter_id=None, session_id=new_session_id(), step=0,
                       span_start=0, span_end=1, input_hash=digest, output_hash=digest,
                       layer_root=layer_root_for([digest], digest), position_start=0,
                       position_count=1, node_id=NODE.peer_id, time_ms=0, retention_s=60)
    return VerifyRequest(MODEL, PeerId(NODE.peer_id), (), (body.sign(NODE),))


@asynccontextmanager
async def _verifier_and_client() -> AsyncIterator[tuple[Host, Host]]:
    config = HostConfig(dial_timeout=3.0, dht_timeout=3.0)
    async with open_host(bytes([43]) * 32, config) as verifier:
        client_config = HostConfig(bootstrap=(verifier.listen_addrs[0],), dht_server=False,
                                   dial_timeout=3.0, dht_timeout=3.0)
        async with open_host(bytes([42]) * 32, client_config) as client:
            yield verifier, client


async def test_a_refusing_verifier_gives_no_verdict() -> None:
    async def refuse(stream: Stream) -> None:
        framed = FramedStream(stream)
        VerifyRequest.from_wire(await framed.read())
        await framed.write(ErrorFrame(ErrorCode.BAD_REQUEST, "another model").to_wire())

    with trio.fail_after(20):
        async with _verifier_and_client() as (verifier, client):
            verifier.set_stream_handler(VERIFY_PROTOCOL, refuse)
            with pytest.raises(NoVerdict, match="refused: bad_request: another model"):
                await ask_verifier(client, verifier.peer_id, verifier.listen_addrs, _request(),
                                   5.0)


async def test_a_silent_verifier_gives_no_verdict_within_the_timeout() -> None:
    async def silent(stream: Stream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(20):
        async with _verifier_and_client() as (verifier, client):
            verifier.set_stream_handler(VERIFY_PROTOCOL, silent)
            with pytest.raises(NoVerdict, match=r"gave no verdict within 0\.5 s"):
                await ask_verifier(client, verifier.peer_id, verifier.listen_addrs, _request(),
                                   0.5)
