"""Genuine fraud proofs for the node tests, made by the node's own serving and verifying code.

A cheater (``CheatingSpan`` "noise", the same runner ``--cheat noise`` uses) and an honest
node each serve one 3-step session of the last block of the tiny model; a real `Verifier`
challenges that layer. The cheater's proof is confirmed by anyone who re-runs it; the
"proof" the verifier signs against the honest node is a false accusation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from darwin.ledger import AccusationRefuted, EntryKind, FraudStatus, Record
from darwin.ledger import FraudProof as FraudProofEntry
from darwin.model import Checkpoint, SpanRunner, model_id
from darwin.node.adversaries import CheatingSpan
from darwin.node.config import Cheat
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan
from darwin.node.serving.retention import RetentionStore
from darwin.protocol import Challenge, FraudProof, Identity, ModelId, Outcome, SessionId
from darwin.protocol.proof_request import proof_hash
from darwin.verifier import Verifier

LAYER = 3  # the last block of the 4-block tiny model: the one a 3:4 cheater breaks
CHEATER = Identity.from_seed(b"\x61" * 32)
HONEST = Identity.from_seed(b"\x62" * 32)
VERIFIER = Identity.from_seed(b"\x63" * 32)
T0 = 1_700_000_000_000


@dataclass(frozen=True)
class Proofs:
    model_id: ModelId
    confirmed: FraudProof  # against CHEATER, by VERIFIER: it holds
    false: FraudProof  # against HONEST, by VERIFIER: a false accusation


def _challenge(runner: SpanRunner | CheatingSpan, identity: Identity,
               mid: ModelId) -> tuple[Challenge, RetentionStore]:
    """Serve a 5-token prefill and two decode steps; challenge the last step's layer."""
    committed = CommittedSpan(runner, identity, CommitConfig(mid, 600))  # type: ignore[arg-type]
    store = RetentionStore(identity)
    session = runner.new_session(16)
    generator = torch.Generator().manual_seed(5)
    receipts = []
    for step, size in enumerate((5, 1, 1)):
        hidden = torch.randn(1, size, 64, generator=generator)  # (batch, seq, hidden)
        done = committed.step(session, SessionId(b"\x17" * 16), step, hidden)
        store.put(done)
        receipts.append(done.receipt)
    return Challenge(tuple(receipts), LAYER, 2), store


def make_proofs(model: Path, cache: Path) -> Proofs:
    checkpoint = Checkpoint.open(model)
    mid = ModelId(model_id(checkpoint, cache_dir=cache))
    runner = SpanRunner.load(checkpoint, LAYER, LAYER + 1)
    verifier = Verifier(VERIFIER, checkpoint, model_id=mid)
    cheat, store = _challenge(CheatingSpan(runner, Cheat.NOISE, torch.float32), CHEATER, mid)
    judgement = verifier.judge(cheat, store.answer(cheat))
    assert judgement.outcome is Outcome.FAIL and judgement.fraud_proof is not None
    honest, store = _challenge(runner, HONEST, mid)
    reveal = store.answer(honest)
    false = FraudProof(honest, reveal, mid, verifier.sign(honest, Outcome.FAIL, "made up"))
    return Proofs(mid, judgement.fraud_proof, false)


def notice(signer: Identity, subject: Identity, data: bytes, accuser: Identity = VERIFIER,
           time_ms: int = T0) -> Record:
    """A signed fraud_proof record (status confirmed) naming the proof ``data``."""
    entry = FraudProofEntry(FraudStatus.CONFIRMED, proof_hash(data), accuser.peer_id)
    return Record.sign(signer, EntryKind.FRAUD_PROOF, subject.peer_id, entry,
                       time_ms=time_ms)


def refutation(signer: Identity, subject: Identity, data: bytes, accuser: Identity = VERIFIER,
               time_ms: int = T0) -> Record:
    """A signed accusation_refuted record naming the proof ``data``."""
    entry = AccusationRefuted(accuser.peer_id, proof_hash(data))
    return Record.sign(signer, EntryKind.ACCUSATION_REFUTED, subject.peer_id, entry,
                       time_ms=time_ms)
