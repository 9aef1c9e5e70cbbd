"""The client's side of the forward and info protocols against scripted, misbehaving peers.

Two in-process hosts on 127.0.0.1: a "node" whose handlers follow a script (refuse, lie, send
garbage, stall, hang up) and a client. Every way a node can break the protocol must end in
`HopFailed` (route around it) or `StepRefused` (the node blames our step), never a hang or a
stray exception; discovery drops nodes whose info is wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import torch
import trio

from darwin.client.discovery import DiscoveryConfig, InfoError, ask_info, discover
from darwin.client.remote_hop import HopConfig, HopTarget, RemoteHop, SessionTerms
from darwin.client.session import HopFailed, StepRefused
from darwin.model.torch_wire import to_wire
from darwin.net.framing import FramedStream
from darwin.net.host import Host, HostConfig, open_host
from darwin.net.protocols import FORWARD_PROTOCOL, INFO_PROTOCOL, block_provider_key
from darwin.protocol import (
    CloseSession,
    DType,
    ErrorCode,
    ErrorFrame,
    Identity,
    InfoRequest,
    ModelId,
    NodeInfo,
    OpenSession,
    ReceiptBody,
    SessionOpened,
    StepRequest,
    StepResult,
    decode,
    layer_root_for,
    new_session_id,
)
from darwin.protocol.messages import Message

MODEL = ModelId(b"\x05" * 32)
QUICK = HopConfig(open_timeout=3.0, step_timeout=1.0, close_timeout=1.0)
NODE_SEED = bytes([41]) * 32

Script = Callable[[trio.abc.Stream, Message], Awaitable[None]]


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Host, Host]]:
    config = HostConfig(dial_timeout=3.0, dht_timeout=3.0)
    async with open_host(NODE_SEED, config) as node:
        client_config = HostConfig(bootstrap=(node.listen_addrs[0],), dht_server=False,
                                   dial_timeout=3.0, dht_timeout=3.0)
        async with open_host(bytes([42]) * 32, client_config) as client:
            yield node, client


def _serve(node: Host, on_step: Script, opened: Callable[[OpenSession], Message] | None = None
           ) -> None:
    """A forward handler that opens as told, then answers each step with `on_step`."""

    async def handler(stream) -> None:  # type: ignore[no-untyped-def]
        framed = FramedStream(stream)
        request = decode(await framed.read())
        assert isinstance(request, OpenSession)
        reply = opened(request) if opened else SessionOpened(
            request.session_id, request.span_start, request.span_end, request.max_length, 60)
        await framed.write(reply.to_wire())
        while True:
            message = decode(await framed.read())
            if isinstance(message, CloseSession):
                return
            await on_step(framed, message)

    node.set_stream_handler(FORWARD_PROTOCOL, handler)


def _honest_result(request: StepRequest, identity: Identity, output: torch.Tensor) -> bytes:
    wire = to_wire(output)
    body = ReceiptBody(model_id=MODEL, adapter_id=None, session_id=request.session_id,
                       step=request.step, span_start=0, span_end=2,
                       input_hash=request.input_hash, output_hash=wire.digest(),
                       layer_root=layer_root_for([request.input_hash, request.input_hash],
                                                 wire.digest()),
                       position_start=request.position_start,
                       position_count=request.hidden.shape[1], node_id=identity.peer_id,
                       time_ms=0, retention_s=60)
    return StepResult(request.step, wire, body.sign(identity)).to_wire()


async def _open(node: Host, client: Host) -> RemoteHop:
    terms = SessionTerms(session_id=new_session_id(), model_id=MODEL, max_length=16)
    target = HopTarget(node.peer_id, tuple(node.listen_addrs), 0, 2)
    return await RemoteHop.open(client, target, terms, QUICK)


async def test_an_honest_step_returns_the_output_and_advances_positions() -> None:
    identity = Identity.from_seed(NODE_SEED)

    async def echo_doubled(stream, message) -> None:  # type: ignore[no-untyped-def]
        from darwin.model.torch_wire import from_wire

        await stream.write(_honest_result(message, identity, from_wire(message.hidden) * 2))

    with trio.fail_after(20):
        async with _pair() as (node, client):
            _serve(node, echo_doubled)
            hop = await _open(node, client)
            hidden = torch.ones(1, 3, 8)
            output, receipt = await hop.step(0, hidden)
            assert torch.equal(output, hidden * 2) and receipt.body.position_start == 0
            output, receipt = await hop.step(1, torch.ones(1, 1, 8))
            assert receipt.body.position_start == 3 and hop.machine.position == 4
            await hop.aclose()


@pytest.mark.parametrize("answer", ["refuse", "wrong_span", "short_length"])
async def test_a_bad_open_answer_is_a_failed_hop(answer: str) -> None:
    def opened(request: OpenSession) -> Message:
        if answer == "refuse":
            return ErrorFrame(ErrorCode.BUSY, "full")
        length = request.max_length - (answer == "short_length")
        end = request.span_end + (answer == "wrong_span")
        return SessionOpened(request.session_id, request.span_start, end, length, 60)

    async def never(stream, message) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("no step expected")

    with trio.fail_after(20):
        async with _pair() as (node, client):
            _serve(node, never, opened)
            with pytest.raises(HopFailed) as failure:
                await _open(node, client)
            assert failure.value.peer_id == node.peer_id


async def _misbehave(stream, message, how: str) -> None:  # type: ignore[no-untyped-def]
    if how == "garbage":
        await stream.write(b"\xc1 not msgpack")
    elif how == "internal":
        await stream.write(ErrorFrame(ErrorCode.INTERNAL, "oops").to_wire())
    elif how == "refuse_step":
        await stream.write(ErrorFrame(ErrorCode.BAD_REQUEST, "out of order").to_wire())
    elif how == "wrong_kind":
        await stream.write(InfoRequest().to_wire())
    elif how == "hang_up":
        await stream.reset()
    elif how == "stall":
        await trio.sleep_forever()
    elif how == "other_shape":
        identity = Identity.from_seed(NODE_SEED)
        await stream.write(_honest_result(message, identity, torch.ones(1, 2, 4)))


@pytest.mark.parametrize(("how", "reason"), [
    ("garbage", "malformed"), ("internal", "internal: oops"), ("wrong_kind", "unexpected"),
    ("hang_up", "stream failed"), ("stall", "no answer to step 0 within 1.0 s"),
    ("other_shape", r"returned float32 \[1, 2, 4\] for float32 \[1, 2, 8\]")])
async def test_a_step_the_node_breaks_is_a_failed_hop(how: str, reason: str) -> None:
    async def on_step(stream, message) -> None:  # type: ignore[no-untyped-def]
        await _misbehave(stream, message, how)

    with trio.fail_after(20):
        async with _pair() as (node, client):
            _serve(node, on_step)
            hop = await _open(node, client)
            with pytest.raises(HopFailed, match=reason):
                await hop.step(0, torch.ones(1, 2, 8))
            await hop.aclose()


async def test_a_refused_step_is_not_the_nodes_fault() -> None:
    async def on_step(stream, message) -> None:  # type: ignore[no-untyped-def]
        await _misbehave(stream, message, "refuse_step")

    with trio.fail_after(20):
        async with _pair() as (node, client):
            _serve(node, on_step)
            hop = await _open(node, client)
            with pytest.raises(StepRefused, match="out of order"):
                await hop.step(0, torch.ones(1, 2, 8))
            await hop.aclose()


@pytest.mark.parametrize("lie", ["honest", "other_model", "other_peer", "other_dtype"])
async def test_discovery_keeps_only_nodes_whose_info_fits(lie: str) -> None:
    identity = Identity.from_seed(NODE_SEED)

    async def info(stream) -> None:  # type: ignore[no-untyped-def]
        framed = FramedStream(stream)
        InfoRequest.from_wire(await framed.read())
        peer = Identity.from_seed(bytes([7]) * 32).peer_id if lie == "other_peer" else (
            identity.peer_id)
        model = ModelId(b"\x06" * 32) if lie == "other_model" else MODEL
        dtype = DType.BFLOAT16 if lie == "other_dtype" else DType.FLOAT32
        await framed.write(NodeInfo(peer, model, 0, 2, dtype, 0.5, 4, "t").to_wire())

    with trio.fail_after(20):
        async with _pair() as (node, client):
            node.set_stream_handler(INFO_PROTOCOL, info)
            for block in range(2):
                await node.provide(block_provider_key(MODEL.hex(), block))
            offers = await discover(client, MODEL, 2, DType.FLOAT32,
                                    DiscoveryConfig(find_timeout=3.0, info_timeout=3.0))
            if lie == "honest":
                [offer] = offers
                assert offer.provider().span_end == 2 and offer.provider().load == 0.5
                assert offer.rtt_ms > 0
            else:
                assert offers == []


async def test_a_silent_info_peer_is_dropped_within_the_timeout() -> None:
    async def silent(stream) -> None:  # type: ignore[no-untyped-def]
        await trio.sleep_forever()

    with trio.fail_after(20):
        async with _pair() as (node, client):
            node.set_stream_handler(INFO_PROTOCOL, silent)
            started = trio.current_time()
            with pytest.raises(InfoError, match=r"gave no info within 0\.5 s"):
                await ask_info(client, node.peer_id, node.listen_addrs, timeout=0.5)
            assert trio.current_time() - started < 3.0
