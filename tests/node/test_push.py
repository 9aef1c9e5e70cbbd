"""Pushed activations (``/darwin/push/1``): a node takes its inputs from the previous hop's
pushes, or pushes its results to the next hop, and refuses every push it should not take.

The test's client host plays the other hop itself: it runs blocks [0, 2) of the same model
under its own key, so its pushes are real signed step results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import torch
import trio
from node_support import (
    QUICK_HOST,
    client_frames,
    expect_end,
    expect_error,
    hidden_states,
    node_and_client,
    node_config,
    open_forward,
    receive,
    send,
)
from transport_support import seed

from darwin.ledger import EntryKind
from darwin.model import Checkpoint, SpanRunner
from darwin.model.torch_wire import digest, from_wire, to_wire
from darwin.net.framing import FramedStream, StreamClosed
from darwin.net.host import Host, HostConfig, Stream, open_host
from darwin.net.protocols import PUSH_PROTOCOL
from darwin.node.server import Node
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan
from darwin.protocol import (
    CloseSession,
    ErrorCode,
    Identity,
    OpenSession,
    PeerId,
    PushedStepRequest,
    SessionId,
    SessionOpened,
    StepReceipt,
    StepRequest,
    StepResult,
    check_receipt,
    new_session_id,
)

SESSION = SessionId(new_session_id())
CLIENT_SEED = 99  # node_and_client's client host


class PreviousHop:
    """Blocks [0, 2) run here and signed with `identity`: the pushes a real hop would send."""

    def __init__(self, node: Node, identity: Identity) -> None:
        runner = SpanRunner.load(Checkpoint.open(node.config.model_path), 0, 2)
        self.span = CommittedSpan(runner, identity, CommitConfig(node.model_id, retention_s=60))
        self.state = runner.new_session(16)
        self.step = 0

    def result(self, hidden: torch.Tensor) -> StepResult:
        done = self.span.step(self.state, SESSION, self.step, hidden)
        self.step += 1
        return StepResult(done.receipt.body.step, to_wire(done.output), done.receipt)


async def _open_pushed(client: Host, node: Node) -> FramedStream:
    """A session on blocks [2, 4) whose inputs the client's host pushes."""
    stream = await open_forward(client, node)
    await send(stream, OpenSession(SESSION, node.model_id, None, 2, 4, 16,
                                   push_from=PeerId(client.peer_id)))
    assert isinstance(await receive(stream), SessionOpened)
    return stream


async def _push_stream(host: Host, node: Node) -> FramedStream:
    return client_frames(await host.open_stream(node.peer_id, PUSH_PROTOCOL,
                                                addrs=[node.listen_addr]))


async def test_a_pushed_session_runs_on_the_previous_hops_output_and_commits_to_it(
        tiny_llama: Path, tmp_path: Path) -> None:
    async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
        previous = PreviousHop(node, Identity.from_seed(seed(CLIENT_SEED)))
        stream = await _open_pushed(client, node)
        push = await _push_stream(client, node)
        reference = SpanRunner.load(Checkpoint.open(tiny_llama), 2, 4)
        reference_state = reference.new_session(16)
        position = 0
        for step, seq in enumerate([5, 1, 1]):
            pushed = previous.result(hidden_states(seq, step))
            await send(stream, PushedStepRequest(SESSION, step, position, seq))
            await send(push, pushed)
            result = await receive(stream)
            assert isinstance(result, StepResult), result
            output = from_wire(result.hidden)
            expected = reference.forward(reference_state, from_wire(pushed.hidden)).hidden
            assert torch.equal(output, expected)
            check_receipt(result.receipt, expected_node=node.identity.peer_id,
                          model_id=node.model_id, session_id=SESSION, step=step, span=(2, 4),
                          input_hash=pushed.receipt.body.output_hash,
                          output_hash=digest(output), positions=(position, seq))
            position += seq
        await push.close()  # the previous hop ends its push stream with its session
        await send(stream, CloseSession(SESSION))
        await expect_end(stream)
        assert node.sessions is not None and node.sessions.active == 0


async def test_a_node_pushes_each_result_to_the_next_hop_and_answers_with_its_receipt(
        tiny_llama: Path, tmp_path: Path) -> None:
    async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
        pushed_frames, received = trio.open_memory_channel[bytes | None](8)

        async def next_hop(push: Stream) -> None:  # the client's host plays the next hop
            framed = client_frames(push)
            try:
                while True:
                    pushed_frames.send_nowait(await framed.read())
            except StreamClosed:
                pushed_frames.send_nowait(None)

        client.set_stream_handler(PUSH_PROTOCOL, next_hop)
        stream = await open_forward(client, node)
        await send(stream, OpenSession(SESSION, node.model_id, None, 0, 2, 16,
                                       push_to=PeerId(client.peer_id),
                                       push_addrs=tuple(client.listen_addrs)))
        assert isinstance(await receive(stream), SessionOpened)
        for step, (position, seq) in enumerate([(0, 5), (5, 1)]):
            request = StepRequest.create(SESSION, step, position,
                                         to_wire(hidden_states(seq, step)))
            await send(stream, request)
            answer = await receive(stream)
            assert isinstance(answer, StepReceipt), answer
            with trio.fail_after(10):
                pushed = StepResult.from_wire(await received.receive())
            assert pushed.receipt == answer.receipt and pushed.step == step
            assert answer.receipt.body.input_hash == request.input_hash
        await send(stream, CloseSession(SESSION))
        await expect_end(stream)
        with trio.fail_after(10):
            assert await received.receive() is None


async def test_a_next_hop_that_cannot_be_reached_refuses_the_open(
        tiny_llama: Path, tmp_path: Path) -> None:
    async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
        stream = await open_forward(client, node)
        nobody = Identity.from_seed(seed(96)).peer_id
        await send(stream, OpenSession(SESSION, node.model_id, None, 0, 2, 16, push_to=nobody,
                                       push_addrs=("/ip4/127.0.0.1/tcp/1",)))
        await expect_error(stream, ErrorCode.PUSH_FAILED)
        await expect_end(stream)
        assert node.sessions is not None and node.sessions.active == 0


# -- pushes the node refuses ------------------------------------------------------------------

Push = Callable[[Host, Node, FramedStream], Awaitable[None]]


async def signed_by_another_key(client: Host, node: Node, push: FramedStream) -> None:
    await send(push, PreviousHop(node, Identity.from_seed(seed(98))).result(hidden_states(5, 0)))


async def with_a_forged_signature(client: Host, node: Node, push: FramedStream) -> None:
    pushed = PreviousHop(node, Identity.from_seed(seed(CLIENT_SEED))).result(hidden_states(5, 0))
    forged = dataclasses.replace(pushed.receipt, signature=bytes(64))
    await send(push, dataclasses.replace(pushed, receipt=forged))


async def of_another_step(client: Host, node: Node, push: FramedStream) -> None:
    previous = PreviousHop(node, Identity.from_seed(seed(CLIENT_SEED)))
    previous.step = 1
    await send(push, previous.result(hidden_states(5, 0)))


async def not_a_step_result(client: Host, node: Node, push: FramedStream) -> None:
    await send(push, CloseSession(SESSION))


async def garbage(client: Host, node: Node, push: FramedStream) -> None:
    await push.write(b"\xde\xad\xbe\xef" * 16)


# The pusher's certain protocol violations: it is the named push_from (the stream is
# authenticated), and what it pushed is not a receipt of its own that verifies.
VIOLATIONS = (signed_by_another_key, with_a_forged_signature)


@pytest.mark.parametrize("bad_push", [signed_by_another_key, with_a_forged_signature,
                                      of_another_step, not_a_step_result, garbage])
async def test_a_bad_push_fails_the_waiting_step_with_push_failed(
        tiny_llama: Path, tmp_path: Path, bad_push: Push) -> None:
    async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
        stream = await _open_pushed(client, node)
        push = await _push_stream(client, node)
        await send(stream, PushedStepRequest(SESSION, 0, 0, 5))
        await bad_push(client, node, push)
        with trio.fail_after(10):  # at once, not at the 100 s push timeout
            await expect_error(stream, ErrorCode.PUSH_FAILED)
        await expect_end(stream)
        assert node.sessions is not None and node.sessions.active == 0
        # ...and a certain violation is in the node's ledger before the step fails, once.
        assert node.ledger is not None
        recorded = [e.record.subject
                    for e in node.ledger.entries(kinds=[EntryKind.PROTOCOL_VIOLATION])]
        assert recorded == ([client.peer_id] if bad_push in VIOLATIONS else [])


async def test_pushes_from_a_peer_the_client_did_not_name_are_refused_and_change_nothing(
        tiny_llama: Path, tmp_path: Path) -> None:
    async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
        stream = await _open_pushed(client, node)
        await send(stream, PushedStepRequest(SESSION, 0, 0, 5))
        intruder_config = HostConfig(bootstrap=(node.listen_addr,), dht_server=False,
                                     **QUICK_HOST)  # type: ignore[arg-type]
        async with open_host(seed(97), intruder_config) as intruder:
            push = await _push_stream(intruder, node)
            await send(push, PreviousHop(node, Identity.from_seed(seed(97))).result(
                hidden_states(5, 0)))
            await expect_error(push, ErrorCode.BAD_REQUEST)
            await expect_end(push)
        honest = PreviousHop(node, Identity.from_seed(seed(CLIENT_SEED)))
        await send(await _push_stream(client, node), honest.result(hidden_states(5, 0)))
        assert isinstance(await receive(stream), StepResult)


async def test_a_client_that_closes_during_a_pushed_step_frees_the_session_at_once(
        tiny_llama: Path, tmp_path: Path) -> None:
    async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
        stream = await _open_pushed(client, node)
        await send(stream, PushedStepRequest(SESSION, 0, 0, 5))  # no push will come
        await send(stream, CloseSession(SESSION))
        await expect_end(stream)  # well before the 100 s push timeout
        assert node.sessions is not None and node.sessions.active == 0
