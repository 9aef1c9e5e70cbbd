"""The adversarial suite with real processes: every cheat of specs/verification.md §10 is caught.

One local swarm of ``darwin-node join`` processes for the module: the bootstrap node serves
blocks 0:2 and is the verifier (``--verify``, 3 s challenge timeout); an honest node serves 3:4.
Each case starts one cheater (``--cheat MODE``, hidden and test-only) on the 1-block span 2:3,
the only provider of block 2, so every generation goes through it and one challenge of its
span is certain to hit the cheating layer. The client (`Submission`, verify rate 1) then:

- noise, skip, weights, bf16, inconsistent: gets a ``fail`` verdict whose fraud proof it
  writes under ``<home>/fraud-proofs`` and that ``darwin verify-proof`` confirms (exit 0);
- mismatch, replay: rejects the step result at once (its receipt does not match the output,
  or names another step), excludes the node and records a protocol violation (not a failure)
  in its ledger, which lowers the node's score below a stranger's (no other node serves
  block 2: the generation then fails with NoRoute);
- refuse: gets ``unresponsive``;
- a verifier that signs a false ``fail`` (``--cheat false-fail``): its proof is refuted
  (exit 1, ``false_accusation``).
The honest node's hop is verified in every run and always passes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from darwin.client.cli import main
from darwin.client.client_ledger import standing
from darwin.client.discovery import DiscoveryConfig
from darwin.client.local_swarm import LocalNode, LocalSwarm, LocalSwarmConfig
from darwin.client.route import NoRoute
from darwin.client.sampling import SamplingConfig
from darwin.client.submit import Submission, SubmitConfig, SubmitResult
from darwin.client.swarm import SwarmConfig
from darwin.client.verification import VerificationConfig, ask_verifier
from darwin.home import LEDGER_FILE, load_or_create_identity
from darwin.ledger import EntryKind, Ledger, ProtocolViolation
from darwin.ledger.reputation import DEFAULT_PARAMS, unknown_score
from darwin.net.host import HostConfig, open_host
from darwin.protocol import Identity, Outcome, PeerId
from darwin.protocol.verify_request import VerifyRequest
from darwin.verifier import verify_proof_command

pytestmark = pytest.mark.slow

NEW_TOKENS = 3
CHEAT_SPAN = "2:3"
QUICK = SwarmConfig(discovery=DiscoveryConfig(find_timeout=3.0, info_timeout=3.0))


@pytest.fixture(scope="module")
def swarm(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSwarm]:
    config = LocalSwarmConfig(start_timeout=120.0, max_length=64)
    with LocalSwarm(tiny_llama, tmp_path_factory.mktemp("cheats"), config) as swarm:
        swarm.start(["0:2"], ["verifier"], ("--verify", "--challenge-timeout", "3"))
        swarm.start(["3:4"], ["honest"])
        yield swarm


def _cheater(swarm: LocalSwarm, mode: str, blocks: str = CHEAT_SPAN) -> LocalNode:
    return swarm.start([blocks], [f"cheat-{mode}"], ("--cheat", mode))[0]


def _submit(model: Path, swarm: LocalSwarm, home: Path, rate: float = 1.0) -> SubmitResult:
    config = SubmitConfig(model=model, prompt="the cheater", bootstrap=swarm.bootstrap,
                          home=home, sampling=SamplingConfig(max_new_tokens=NEW_TOKENS),
                          swarm=QUICK, verification=VerificationConfig(rate=rate, timeout=60))
    return trio.run(Submission(config).run)


def _check_of(result: SubmitResult, peer: str):  # type: ignore[no-untyped-def]
    [check] = [c for c in result.verification if c.peer_id == peer]
    return check


def _honest_passed(result: SubmitResult, swarm: LocalSwarm) -> None:
    honest = swarm.nodes[1]
    assert _check_of(result, honest.peer_id).outcome == "pass"


def _submit_json(model: Path, swarm: LocalSwarm, home: Path,
                 capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``darwin submit --json --verify-rate 1`` in this process; its JSON object."""
    capsys.readouterr()
    assert main(["submit", "the cheater", "--model", str(model), "--bootstrap",
                 *swarm.bootstrap, "--home", str(home), "--json", "--verify-rate", "1",
                 "--max-new-tokens", str(NEW_TOKENS)]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


@pytest.mark.parametrize("mode", ["noise", "skip", "weights", "bf16", "inconsistent"])
def test_a_cheating_layer_fails_with_a_fraud_proof_that_verify_proof_confirms(
        mode: str, swarm: LocalSwarm, tiny_llama: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cheater = _cheater(swarm, mode)
    try:
        result = _submit_json(tiny_llama, swarm, tmp_path, capsys)
    finally:
        cheater.stop(10)
    checks = {check["peer_id"]: check for check in result["verification"]}
    check = checks[cheater.peer_id]
    assert (check["outcome"], check["layer"], check["proof_check"]) == ("fail", 2, "confirmed")
    proof = Path(check["fraud_proof"])
    assert proof.parent == tmp_path / "fraud-proofs" and proof.name.endswith(".proof")
    assert checks[swarm.nodes[1].peer_id]["outcome"] == "pass"  # the honest node
    assert main(["verify-proof", str(proof), "--model", str(tiny_llama), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["node"] == cheater.peer_id and not report["false_accusation"]
    with Ledger.open(tmp_path / LEDGER_FILE, load_or_create_identity(tmp_path)) as ledger:
        about = [e.record.kind for e in ledger.entries() if e.record.subject == cheater.peer_id]
    assert EntryKind.FRAUD_PROOF in about  # confirmed: the client bans the node


@pytest.mark.parametrize(("mode", "reason"), [
    ("mismatch", "output_hash is not the digest"), ("replay", "receipt step")])
def test_a_bad_receipt_is_rejected_at_once(mode: str, reason: str, swarm: LocalSwarm,
                                           tiny_llama: Path, tmp_path: Path) -> None:
    cheater = _cheater(swarm, mode)
    try:
        with pytest.raises(NoRoute):  # the only provider of block 2 was excluded
            _submit(tiny_llama, swarm, tmp_path)
    finally:
        cheater.stop(10)
    identity = load_or_create_identity(tmp_path)
    with Ledger.open(tmp_path / LEDGER_FILE, identity) as ledger:
        entries = [e.record for e in ledger.entries()]
    [violation] = [r.body for r in entries if r.subject == cheater.peer_id
                   and r.kind == EntryKind.PROTOCOL_VIOLATION]  # (``replay`` served step 0)
    # The honest next hop may have reported the cheater's broken push (a link fault): that
    # blames nobody, so it is no failure of the honest node.
    assert not [r for r in entries if r.kind == EntryKind.FAILURE]
    assert isinstance(violation, ProtocolViolation) and reason in violation.reason
    score = standing(tmp_path, identity)[PeerId(cheater.peer_id)]
    assert score.failures == pytest.approx(DEFAULT_PARAMS.violation_weight, rel=1e-3)  # decay
    assert score.trust < unknown_score(PeerId(cheater.peer_id)).trust


def test_a_node_that_never_reveals_is_unresponsive(swarm: LocalSwarm, tiny_llama: Path,
                                                   tmp_path: Path) -> None:
    cheater = _cheater(swarm, "refuse")
    try:
        result = _submit(tiny_llama, swarm, tmp_path)
    finally:
        cheater.stop(10)
    check = _check_of(result, cheater.peer_id)
    assert check.outcome == "unresponsive" and check.fraud_proof is None
    _honest_passed(result, swarm)


def test_a_false_fail_signed_by_a_verifier_is_refuted(swarm: LocalSwarm, tiny_llama: Path,
                                                      tmp_path: Path) -> None:
    # serves block 2 honestly (so a route exists) and signs false fails as a verifier
    liar = swarm.start([CHEAT_SPAN], ["liar"], ("--verify", "--cheat", "false-fail"))[0]
    try:
        result = _submit(tiny_llama, swarm, tmp_path, rate=0.0)
        honest = swarm.nodes[1]
        receipts = tuple(r for r in result.trace.receipts if r.body.node_id == honest.peer_id)
        request = VerifyRequest(result.model_id, PeerId(honest.peer_id), (honest.address,),
                                receipts)

        async def ask():  # type: ignore[no-untyped-def]
            config = HostConfig(bootstrap=swarm.bootstrap, dht_server=False)
            async with open_host(Identity.generate().seed, config) as host:
                return await ask_verifier(host, liar.peer_id, [liar.address], request, 60)

        answer = trio.run(ask)
    finally:
        liar.stop(10)
    assert answer.verdict.body.outcome is Outcome.FAIL and answer.fraud_proof is not None
    path = tmp_path / "false.proof"
    path.write_bytes(answer.fraud_proof)
    out = io.StringIO()
    assert verify_proof_command(path, tiny_llama, json_output=True, out=out) == 1
    report = json.loads(out.getvalue())
    assert report["false_accusation"] and report["verifier"] == liar.peer_id
