"""Retention and challenges on a real (in-process) node, and the verifier role over libp2p.

A session runs on a node; its receipts are then challenged over ``/darwin/challenge/1``: the
signed reveal checks against the receipts and an honest judge passes it. A second in-process
node with ``verify`` set and no blocks answers ``/darwin/verify/1`` for the same receipts with
a signed pass verdict, and appends it to its ledger.
"""

from __future__ import annotations

import dataclasses
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from node_support import (
    QUICK_HOST,
    HonestSession,
    client_frames,
    expect_end,
    expect_error,
    hidden_states,
    node_and_client,
    node_config,
    receive,
    send,
)

from darwin.ledger import EntryKind, Ledger
from darwin.model import Checkpoint
from darwin.net.framing import FrameConfig, FramedStream
from darwin.net.host import HostConfig
from darwin.net.protocols import CHALLENGE_PROTOCOL, VERIFY_PROTOCOL, verifier_key
from darwin.node.config import Cheat, VerifyConfig
from darwin.node.server import start_node
from darwin.protocol import (
    CHALLENGE_LIMITS,
    Challenge,
    ErrorCode,
    Outcome,
    Receipt,
    Reveal,
    StepResult,
    check_reveal,
    decode_answer,
)
from darwin.protocol.verify_request import VerifyAnswer, VerifyRequest
from darwin.verifier import Verifier

# Challenges, reveals and verify answers: up to CHALLENGE_LIMITS, each read within 30 s.
CHALLENGE_FRAMES = FrameConfig(max_frame_size=CHALLENGE_LIMITS.max_message_bytes,
                               frame_timeout=30)


async def _served_receipts(session: HonestSession, steps: int = 3) -> list[Receipt]:
    receipts = []
    for i in range(steps):
        hidden = hidden_states(5 if i == 0 else 1, i)
        await send(session.stream, session.request(hidden))
        result = await receive(session.stream)
        assert isinstance(result, StepResult), result
        receipts.append(result.receipt)
        session.step_index += 1
        session.position += hidden.shape[1]
    return receipts


async def _challenge(client, node, challenge: Challenge) -> Reveal:  # type: ignore[no-untyped-def]
    stream = await client.open_stream(node.peer_id, CHALLENGE_PROTOCOL, addrs=[node.listen_addr])
    framed = FramedStream(stream, CHALLENGE_FRAMES)
    await framed.write(challenge.to_wire())
    answer = decode_answer(await framed.read())
    assert isinstance(answer, Reveal), answer
    return answer


async def test_a_served_session_is_retained_and_its_reveal_passes(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            session = await HonestSession.open(client, node, span=(1, 3))
            receipts = await _served_receipts(session)
            verifier = Verifier(node.identity, Checkpoint.open(tiny_llama),
                                model_id=node.model_id)
            for step, layer in ((2, 1), (1, 2), (0, 1)):
                challenge = Challenge(tuple(receipts[:step + 1]), layer, step)
                reveal = await _challenge(client, node, challenge)
                check_reveal(challenge, reveal)
                judgement = await trio.to_thread.run_sync(verifier.judge, challenge, reveal)
                assert judgement.outcome is Outcome.PASS, judgement.verdict.body.reason
            assert node.served is not None and node.served.store.stats.steps == 3
            await session.close()


async def test_challenges_the_node_cannot_answer_get_error_frames(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            session = await HonestSession.open(client, node)
            receipts = await _served_receipts(session, steps=2)
            await session.close()
            node.served.store.close()  # type: ignore[union-attr]  # as if evicted
            stream = client_frames(await client.open_stream(node.peer_id, CHALLENGE_PROTOCOL))
            await stream.write(Challenge((receipts[0],), 0, 0).to_wire())
            await expect_error(stream, ErrorCode.UNKNOWN_SESSION)
            stream = client_frames(await client.open_stream(node.peer_id, CHALLENGE_PROTOCOL))
            await stream.write(b"\x93\x01\x02\x03")
            await expect_error(stream, ErrorCode.BAD_REQUEST)
            await expect_end(stream)


async def test_a_verifier_node_challenges_judges_and_records(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(90):
        async with node_and_client(node_config(tiny_llama, tmp_path / "node")) as (node, client):
            session = await HonestSession.open(client, node)
            receipts = await _served_receipts(session)
            host = HostConfig(bootstrap=(node.listen_addr,), **QUICK_HOST)  # type: ignore[arg-type]
            config = dataclasses.replace(
                node_config(tiny_llama, tmp_path / "verifier"), serve_blocks=False, blocks=None,
                host=host, verify=VerifyConfig(challenge_timeout=10))
            async with AsyncExitStack() as stack:
                verifier = await stack.enter_async_context(start_node(config))
                found = await client.find_providers(verifier_key(node.model_id), timeout=3)
                assert [p.peer_id for p in found] == [verifier.peer_id]
                stream = await client.open_stream(verifier.peer_id, VERIFY_PROTOCOL,
                                                  addrs=[verifier.listen_addr])
                framed = FramedStream(stream, CHALLENGE_FRAMES)
                request = VerifyRequest(node.model_id, node.identity.peer_id,
                                        (node.listen_addr,), tuple(receipts))
                await framed.write(request.to_wire())
                answer = VerifyAnswer.from_wire(await framed.read())
                body = answer.verdict.body
                answer.verdict.verify()
                assert body.outcome is Outcome.PASS, body.reason
                assert (body.subject, body.verifier) == (node.peer_id, verifier.peer_id)
                assert 0 <= body.layer < 4 and answer.fraud_proof is None
                assert verifier.identity is not None
                with Ledger.open(tmp_path / "verifier" / "ledger.sqlite",
                                 verifier.identity) as ledger:
                    kinds = [e.record.kind for e in ledger.entries()]
                assert kinds.count(EntryKind.VERDICT) == 1
            await session.close()


def test_the_cheat_flag_is_hidden_and_blocks_are_optional_only_for_verifiers(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from darwin.node.cli import _config, build_parser, main

    assert "--cheat" not in build_parser().format_help().split("join")[0]
    join = build_parser()._subparsers._group_actions[0].choices["join"]  # type: ignore[union-attr]
    assert "--cheat" not in join.format_help() and "--verify" in join.format_help()
    base = ["join", "--model", str(tiny_llama), "--home", str(tmp_path)]
    assert main(base) == 2
    assert "--blocks is required" in capsys.readouterr().err
    config = _config(build_parser().parse_args([*base, "--verify", "--cheat", "refuse"]))
    assert not config.serve_blocks and config.verify is not None and config.cheat is Cheat.REFUSE
    config = _config(build_parser().parse_args([*base, "--blocks", "0:2"]))
    assert config.serve_blocks and config.verify is None
    assert config.retention.directory == tmp_path / "retention"
