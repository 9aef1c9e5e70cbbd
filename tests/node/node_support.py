"""Shared helpers of the serving-node tests: an in-process node, a raw client, an honest session.

The client speaks the forward protocol by hand (open_host + framing + messages), so the tests
check the node against the spec, not against the client package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import torch
from transport_support import seed

from darwin.model import Checkpoint, SpanRunner
from darwin.model.torch_wire import digest, from_wire, to_wire
from darwin.net.framing import FrameConfig, FramedStream, StreamClosed
from darwin.net.host import Host, HostConfig, Stream, open_host
from darwin.net.protocols import FORWARD_PROTOCOL
from darwin.node.config import ForwardLimits, NodeConfig
from darwin.node.server import Node, start_node
from darwin.protocol import (
    CloseSession,
    ErrorCode,
    ErrorFrame,
    Message,
    OpenSession,
    SessionId,
    SessionOpened,
    StepRequest,
    StepResult,
    check_receipt,
    decode,
    new_session_id,
)

HIDDEN = 64  # width of the tiny models (conftest's tiny_llama)
QUICK_HOST = {"dial_timeout": 3.0, "dht_timeout": 3.0, "shutdown_timeout": 3.0}
# Short frame deadline, so half-open attacks resolve fast; the idle timeout stays long.
QUICK_FORWARD = ForwardLimits(
    max_frame_size=1 << 20, frame_timeout=0.5, idle_timeout=60.0, write_timeout=5.0
)
# The raw client's frames: up to 4 MiB, each read within 10 s of its first byte.
CLIENT_FRAMES = FrameConfig(max_frame_size=1 << 22, frame_timeout=10)


def node_config(model: Path, home: Path, **changes: object) -> NodeConfig:
    """A test node: the whole 4-block model, 4 sessions of up to 32 tokens, quick limits."""
    config = NodeConfig(
        model_path=model,
        home=home,
        blocks=(0, 4),
        host=HostConfig(**QUICK_HOST),
        max_sessions=4,
        max_length=32,
        forward=QUICK_FORWARD,
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


@asynccontextmanager
async def node_and_client(config: NodeConfig) -> AsyncIterator[tuple[Node, Host]]:
    """A running node and a client host (a DHT client) that joined through it."""
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(start_node(config))
        joined = HostConfig(bootstrap=(node.listen_addr,), dht_server=False, **QUICK_HOST)  # type: ignore[arg-type]
        client = await stack.enter_async_context(open_host(seed(99), joined))
        yield node, client


def client_frames(stream: Stream) -> FramedStream:
    """The raw client's side of ``stream``, read and written only through this from now on."""
    return FramedStream(stream, CLIENT_FRAMES)


async def open_forward(client: Host, node: Node) -> FramedStream:
    stream = await client.open_stream(node.peer_id, FORWARD_PROTOCOL, addrs=[node.listen_addr])
    return client_frames(stream)


async def send(framed: FramedStream, message: Message) -> None:
    await framed.write(message.to_wire())


async def receive(framed: FramedStream) -> Message:
    return decode(await framed.read())


async def expect_error(framed: FramedStream, code: ErrorCode) -> ErrorFrame:
    answer = await receive(framed)
    assert isinstance(answer, ErrorFrame), answer
    assert answer.code is code, answer
    return answer


async def expect_end(framed: FramedStream) -> None:
    """The node ended the stream (closed or reset) instead of sending another frame."""
    with pytest.raises(StreamClosed):
        await framed.read()


def hidden_states(seq: int, seed_: int, batch: int = 1) -> torch.Tensor:
    """(batch, seq, HIDDEN) deterministic inputs."""
    return torch.randn(batch, seq, HIDDEN, generator=torch.Generator().manual_seed(seed_))


class HonestSession:
    """A well-behaved client session on one node, checked step by step against a local runner."""

    def __init__(self, stream: FramedStream, node: Node, span: tuple[int, int],
                 max_length: int) -> None:
        self.stream = stream
        self.node = node
        self.span = span
        self.session_id = SessionId(new_session_id())
        runner = SpanRunner.load(Checkpoint.open(node.config.model_path), *span)
        self.reference = runner
        self.reference_session = runner.new_session(max_length)
        self.step_index = 0
        self.position = 0

    @classmethod
    async def open(
        cls, client: Host, node: Node, span: tuple[int, int] | None = None, max_length: int = 16
    ) -> HonestSession:
        span = span or node.span
        session = cls(await open_forward(client, node), node, span, max_length)
        await send(
            session.stream, OpenSession(session.session_id, node.model_id, None, *span, max_length)
        )
        reply = await receive(session.stream)
        assert isinstance(reply, SessionOpened), reply
        assert (reply.span_start, reply.span_end, reply.max_length) == (*span, max_length)
        return session

    def request(self, hidden: torch.Tensor) -> StepRequest:
        return StepRequest.create(self.session_id, self.step_index, self.position, to_wire(hidden))

    async def step(self, hidden: torch.Tensor) -> torch.Tensor:
        """Send one step; check the output equals the local runner's and the receipt."""
        await send(self.stream, self.request(hidden))
        result = await receive(self.stream)
        assert isinstance(result, StepResult), result
        output = from_wire(result.hidden)
        expected = self.reference.forward(self.reference_session, hidden).hidden
        assert torch.equal(output, expected)
        check_receipt(
            result.receipt,
            expected_node=self.node.identity.peer_id,
            model_id=self.node.model_id,
            session_id=self.session_id,
            step=self.step_index,
            span=self.span,
            input_hash=digest(hidden),
            output_hash=digest(output),
            positions=(self.position, hidden.shape[1]),
        )
        self.step_index += 1
        self.position += hidden.shape[1]
        return output

    async def run(self, steps: int = 3, seed_: int = 0) -> None:
        """A prefill of 5 tokens, then ``steps - 1`` one-token decode steps."""
        for i in range(steps):
            await self.step(hidden_states(5 if self.position == 0 else 1, seed_ + i))

    async def close(self) -> None:
        """Close the session and wait until the node has ended the stream (and freed it)."""
        await send(self.stream, CloseSession(self.session_id))
        await expect_end(self.stream)
