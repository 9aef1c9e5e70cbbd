"""The peer view re-checks a fraud proof with the real ``verify-proof`` code, in a worker: a
real proof against a cheating layer is confirmed, a verifier's false accusation is refuted,
and a missing model or proof file is said plainly.

The proofs are made as in the verifier tests: an in-process node that adds noise to layer 2
(or an honest one), challenged by a real verifier over the tiny Llama checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from explorer_support import CHEATER, explorer, headless
from ledger_support import identity, open_ledger
from test_app import running, settle
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, TabbedContent
from verifier_harness import CheatingRunner, ServingNode, embedded_steps, noise_tamper

from darwin.explorer.peer_screen import PeerScreen
from darwin.gossip.proof_store import ProofStore
from darwin.home import LEDGER_FILE
from darwin.ledger import AccusationRefuted, EntryKind, FraudProof, FraudStatus
from darwin.model import Checkpoint, SpanRunner, model_id
from darwin.protocol import Challenge, ModelId, Outcome, SessionId
from darwin.protocol import FraudProof as WireFraudProof
from darwin.verifier import Verifier

SESSION = SessionId(b"\x42" * 16)
NODE, ACCUSER = identity("proof-node"), identity("proof-verifier")


def _served(checkpoint: Checkpoint, mid: ModelId, *, cheat: bool) -> tuple[ServingNode,
                                                                           Challenge]:
    runner = SpanRunner.load(checkpoint, 0, 4)
    node = ServingNode.create(CheatingRunner(runner, tamper=noise_tamper(2)) if cheat
                              else runner, NODE, mid)
    node.serve(SESSION, embedded_steps(checkpoint, (5, 1), seed=3), thread_count=1)
    return node, Challenge(tuple(node.sessions[SESSION]), 2, 1)


@pytest.fixture(scope="module")
def proof_home(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose ledger names two stored proofs against NODE: ACCUSER's genuine one
    (confirmed) and a false one it signed about an honest computation (refuted)."""
    home = tmp_path_factory.mktemp("proofs")
    checkpoint = Checkpoint.open(tiny_llama)
    mid = ModelId(model_id(checkpoint, cache_dir=home / "cache"))
    verifier = Verifier(ACCUSER, checkpoint, model_id=mid, clock=lambda: 1_700_000_000.0)
    cheater, challenge = _served(checkpoint, mid, cheat=True)
    judgement = verifier.judge(challenge, cheater.answer(challenge))
    assert judgement.fraud_proof is not None
    honest, challenge = _served(checkpoint, mid, cheat=False)
    reveal = honest.answer(challenge)
    assert reveal is not None
    false = WireFraudProof(challenge, reveal, challenge.model_id,
                           verifier.sign(challenge, Outcome.FAIL, "made up"))
    store = ProofStore.in_home(home)
    genuine_hash = store.put(judgement.fraud_proof.to_wire())
    false_hash = store.put(false.to_wire())
    with open_ledger(home / LEDGER_FILE) as ledger:
        ledger.record_success(NODE.peer_id)
        ledger.append(EntryKind.FRAUD_PROOF, NODE.peer_id,
                      FraudProof(FraudStatus.CONFIRMED, genuine_hash, ACCUSER.peer_id))
        ledger.append(EntryKind.ACCUSATION_REFUTED, NODE.peer_id,
                      AccusationRefuted(ACCUSER.peer_id, false_hash))
    return home


async def open_proofs_of(pilot: Pilot[None], peer: str) -> PeerScreen:
    """The peer view of ``peer``, on its fraud proofs tab."""
    await pilot.press("slash", *peer[-8:], "enter", "enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, PeerScreen) and screen.peer == peer
    screen.query_one("#tabs", TabbedContent).active = "proofs-tab"
    await pilot.pause()
    screen.query_one("#proofs", DataTable).focus()
    return screen


async def recheck_row(pilot: Pilot[None], screen: PeerScreen, row: int) -> str:
    screen.query_one("#proofs", DataTable).move_cursor(row=row)
    await pilot.press("c")
    await settle(pilot)
    assert screen.last_recheck is not None
    return str(screen.query_one("#recheck", Static).render())


@headless
async def test_a_genuine_proof_is_confirmed_and_a_false_one_refuted(
        proof_home: Path, tiny_llama: Path) -> None:
    async with running(explorer(proof_home, model=tiny_llama)) as pilot:
        screen = await open_proofs_of(pilot, NODE.peer_id)
        table = screen.query_one("#proofs", DataTable)
        assert [str(table.get_row_at(i)[2]) for i in range(2)] == ["refuted", "confirmed"]
        text = await recheck_row(pilot, screen, 1)
        assert screen.last_recheck is not None and screen.last_recheck.confirmed
        assert text.startswith("confirmed: ")
        text = await recheck_row(pilot, screen, 0)
        assert text.startswith("refuted: ") and ACCUSER.peer_id in text  # it names the liar


@headless
async def test_without_a_model_the_recheck_says_what_it_needs(proof_home: Path) -> None:
    async with running(explorer(proof_home)) as pilot:
        screen = await open_proofs_of(pilot, NODE.peer_id)
        assert "--model PATH" in await recheck_row(pilot, screen, 0)


@headless
async def test_a_proof_missing_from_the_store_is_said_to_be_missing(
        home: Path, tiny_llama: Path) -> None:
    async with running(explorer(home, model=tiny_llama)) as pilot:
        screen = await open_proofs_of(pilot, CHEATER.peer_id)
        text = await recheck_row(pilot, screen, 0)
        assert text.startswith("error: ") and "is not in" in text and "fraud-proofs" in text
