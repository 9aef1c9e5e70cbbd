"""The swarm end to end: real `darwin-node join` processes, the real client, transformers' answer.

Two local swarms of three node processes each (module fixtures, started once):
- ``chain``: blocks 0:2 (bootstrap), 2:4 and 1:3; the client routes 0:2 + 2:4.
- ``replicated``: blocks 0:2 (bootstrap) and three replicas of 2:4, for killing nodes (one
  per kill test: pushed, relayed, then every one left).
Greedy output must equal ``transformers`` ``generate(do_sample=False)`` in every case, also
when a node is SIGKILLed mid-generation (the kill happens in the token callback, so it is
deterministic: after token K, before step K+1 is sent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from swarm_support import local_swarm, reference_generation

from darwin.client.cli import main
from darwin.client.client_ledger import standing
from darwin.client.local_swarm import LocalSwarm
from darwin.client.route import NoRoute
from darwin.client.sampling import SamplingConfig
from darwin.client.submit import Submission, SubmitConfig, SubmitResult
from darwin.client.swarm import SwarmConfig
from darwin.home import IDENTITY_FILE, load_identity
from darwin.ledger import verify_ledger
from darwin.model import make_tiny
from darwin.protocol import verify_trace

pytestmark = pytest.mark.slow

NEW_TOKENS = 12
KILL_AFTER = 4  # tokens generated before the node dies


@pytest.fixture(scope="module")
def chain(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSwarm]:
    with local_swarm(tiny_llama, tmp_path_factory.mktemp("chain"), ["0:2", "2:4", "1:3"]) as swarm:
        yield swarm


@pytest.fixture(scope="module")
def replicated(tiny_llama: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSwarm]:
    with local_swarm(tiny_llama, tmp_path_factory.mktemp("replicated"),
                     ["0:2", "2:4", "2:4", "2:4"]) as swarm:
        yield swarm


def _submission(model: Path, swarm: LocalSwarm, prompt: str, push: bool = True) -> Submission:
    return Submission(SubmitConfig(model=model, prompt=prompt, bootstrap=swarm.bootstrap,
                                   sampling=SamplingConfig(max_new_tokens=NEW_TOKENS),
                                   swarm=SwarmConfig(push=push)))


def _expected(model: Path, submission: Submission) -> list[int]:
    return reference_generation(model, tuple(submission.prompt_ids), NEW_TOKENS)


def _kill_serving(submission: Submission, swarm: LocalSwarm, block: int) -> list[str]:
    """SIGKILL every live node that serves `block` to the running session; their peer ids."""
    assert submission.session is not None
    killed = []
    for hop in submission.session.hops:
        if hop.span[0] <= block < hop.span[1]:
            swarm.node(str(hop.peer_id)).kill()
            killed.append(str(hop.peer_id))
    return killed


def test_submit_json_through_three_nodes_matches_transformers(
        tiny_llama: Path, chain: LocalSwarm) -> None:
    prompt = "The network of many small machines"
    result = subprocess.run(
        [sys.executable, "-m", "darwin", "submit", prompt, "--model", str(tiny_llama),
         "--bootstrap", *chain.bootstrap, "--max-new-tokens", str(NEW_TOKENS), "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = result.stdout.splitlines()  # exactly one JSON object
    out = json.loads(line)

    expected = reference_generation(tiny_llama, tuple(out["prompt_ids"]), NEW_TOKENS)
    assert out["token_ids"] == expected
    assert out["trace"]["verified"] is True
    assert out["trace"]["steps"] == len(expected)
    assert [(h["start"], h["end"]) for h in out["route"]] == [(0, 2), (2, 4)]
    assert {h["peer_id"] for h in out["route"]} <= {node.peer_id for node in chain.nodes}
    assert out["trace"]["receipts"] == 2 * len(expected) and out["failovers"] == []
    # The client's ledger (its default home) recorded every node that served, and verifies.
    home = Path(os.environ["DARWIN_HOME"])
    assert verify_ledger(home / "ledger.sqlite").ok
    scores = standing(home, load_identity(home / IDENTITY_FILE))
    assert all(scores[h["peer_id"]].successes > 0 for h in out["route"])


async def test_two_clients_generate_concurrently_through_the_same_nodes(
        tiny_llama: Path, chain: LocalSwarm) -> None:
    submissions = [_submission(tiny_llama, chain, prompt)
                   for prompt in ("Two clients at once", "share the same nodes")]
    results: list[SubmitResult] = []

    async def run(submission: Submission) -> None:
        results.append(await submission.run())

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for submission in submissions:
                nursery.start_soon(run, submission)

    for result in results:
        submission = next(s for s in submissions if s.prompt_ids == result.prompt_ids)
        assert result.token_ids == _expected(tiny_llama, submission)
    assert results[0].route == results[1].route  # the same nodes served both sessions
    sessions = {result.trace.receipts[0].body.session_id for result in results}
    assert len(sessions) == 2


@pytest.mark.parametrize("push", [True, False], ids=["pushed", "relayed"])
async def test_a_node_killed_mid_generation_is_replaced_with_identical_output(
        tiny_llama: Path, replicated: LocalSwarm, push: bool) -> None:
    submission = _submission(tiny_llama, replicated, "A node dies in the middle", push)
    killed: list[str] = []

    def on_token(_token: int) -> None:
        if len(killed) == 0 and submission.session and submission.session.next_step == KILL_AFTER:
            killed.extend(_kill_serving(submission, replicated, block=2))

    with trio.fail_after(120):
        result = await submission.run(on_token)

    assert result.token_ids == _expected(tiny_llama, submission)
    [event] = result.failovers
    assert [event.peer_id] == killed and event.span == (2, 4)
    assert event.step == KILL_AFTER and event.replayed_steps == KILL_AFTER
    # Relayed, only the dead node's blocks are replaced; pushed, the route is opened again
    # without it (its neighbours' sessions were linked to it) and relays from then on.
    *kept, (replacement, start, end) = event.replacement
    assert replacement != killed[0] and (start, end) == (2, 4)
    assert [(a, b) for _, a, b in kept] == ([(0, 2)] if push else [])
    verify_trace(result.trace.receipts, model_id=submission.model_id, n_layers=4,
                 session_id=result.trace.receipts[0].body.session_id)
    assert len(result.trace.receipts) == 2 * len(result.token_ids)  # replays left out


async def test_without_a_replica_the_client_names_the_missing_blocks_in_bounded_time(
        tiny_llama: Path, replicated: LocalSwarm) -> None:
    submission = _submission(tiny_llama, replicated, "Nobody is left")
    killed_at: list[float] = []

    def on_token(_token: int) -> None:
        if not killed_at and submission.session and submission.session.next_step == 2:
            for node in replicated.nodes:  # every provider of 2:4 that is still alive
                if node.blocks == "2:4" and node.alive:
                    node.kill()
            killed_at.append(trio.current_time())

    with pytest.raises(NoRoute, match=r"^no available provider serves blocks \[2, 4\)$"):
        with trio.fail_after(120):
            await submission.run(on_token)
    assert killed_at and trio.current_time() - killed_at[0] < 30.0


def test_submit_for_a_model_nobody_serves_is_one_error_line(
        tmp_path: Path, chain: LocalSwarm, capsys: pytest.CaptureFixture[str]) -> None:
    other = make_tiny("llama", tmp_path / "other", layers=3, hidden=32, seed=1)
    code = main(["submit", "hello", "--model", str(other), "--bootstrap", *chain.bootstrap,
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err == "error: no available provider serves blocks [0, 3)\n"
