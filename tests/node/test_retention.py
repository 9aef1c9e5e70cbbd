"""The retention store: answering challenges, expiry, eviction and spilling to disk."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from darwin.model.torch_wire import digest
from darwin.node.serving.committed_span import CommittedStep
from darwin.node.serving.retention import (
    ForeignChallenge,
    NotRetained,
    RetentionConfig,
    RetentionStore,
)
from darwin.protocol import (
    Challenge,
    ErrorCode,
    Identity,
    ModelId,
    Receipt,
    ReceiptBody,
    SessionId,
    check_reveal,
    layer_root_for,
)

NODE = Identity.from_seed(bytes([4]) * 32)
OTHER = Identity.from_seed(bytes([5]) * 32)
MODEL = ModelId(b"\x11" * 32)
SPAN = (1, 4)
WIDTH = 8
STEP_BYTES = (SPAN[1] - SPAN[0] + 1) * WIDTH * 4  # one position, float32, every leaf


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session_id(name: str) -> SessionId:
    return SessionId(hashlib.blake2b(name.encode(), digest_size=16).digest())


def committed(session: SessionId, step: int, *, count: int = 1, identity: Identity = NODE,
              retention_s: int = 60, dtype: torch.dtype = torch.float32) -> CommittedStep:
    """A synthetic committed step of span SPAN: random leaves, a signed receipt."""
    generator = torch.Generator().manual_seed(hash((session, step)) % 2**31)
    leaves = [torch.randn(1, count, WIDTH, generator=generator).to(dtype)
              for _ in range(SPAN[1] - SPAN[0] + 1)]
    digests = tuple(digest(t) for t in leaves)
    position = 0 if step == 0 else 3 + step - 1  # step 0 is 3 positions in `serve`
    body = ReceiptBody(
        model_id=MODEL, adapter_id=None, session_id=session, step=step, span_start=SPAN[0],
        span_end=SPAN[1], input_hash=digests[0], output_hash=digests[-1],
        layer_root=layer_root_for(digests[:-1], digests[-1]), position_start=position,
        position_count=count, node_id=identity.peer_id, time_ms=1_700_000_000_000 + step,
        retention_s=retention_s)
    return CommittedStep(leaves[-1], body.sign(identity), digests, tuple(leaves[:-1]))


def serve(store: RetentionStore, session: SessionId, steps: int, **kwargs: object
          ) -> list[Receipt]:
    receipts = []
    for step in range(steps):
        count = 3 if step == 0 else 1
        result = committed(session, step, count=count, **kwargs)  # type: ignore[arg-type]
        store.put(result)
        receipts.append(result.receipt)
    return receipts


def assert_answers(store: RetentionStore, receipts: list[Receipt]) -> None:
    """Every layer at every step is revealed consistently with the receipts."""
    for step in range(len(receipts)):
        for layer in range(*SPAN):
            challenge = Challenge(tuple(receipts[: step + 1]), layer, step)
            revealed = check_reveal(challenge, store.answer(challenge))
            assert revealed.step == step


def test_answers_every_layer_and_step_with_reveals_that_match_the_receipts() -> None:
    store = RetentionStore(NODE)
    receipts = serve(store, session_id("a"), 4)
    assert_answers(store, receipts)
    assert store.stats.steps == 4 and store.stats.disk_bytes == 0


def test_bfloat16_activations_are_revealed_bit_exactly() -> None:
    store = RetentionStore(NODE)
    assert_answers(store, serve(store, session_id("bf"), 2, dtype=torch.bfloat16))


def test_challenges_about_other_receipts_are_refused() -> None:
    store = RetentionStore(NODE)
    receipts = serve(store, session_id("a"), 2)
    other = [committed(session_id("a"), s, count=3 if s == 0 else 1, identity=OTHER).receipt
             for s in range(2)]
    with pytest.raises(ForeignChallenge):
        store.answer(Challenge(tuple(other), 2, 1))
    resigned = replace(receipts[1].body, time_ms=5)
    with pytest.raises(ForeignChallenge, match="step 1"):
        store.answer(Challenge((receipts[0], resigned.sign(NODE)), 2, 1))
    with pytest.raises(NotRetained):
        store.answer(Challenge(tuple(serve(RetentionStore(NODE), session_id("b"), 1)), 2, 0))
    assert ForeignChallenge.code is ErrorCode.BAD_REQUEST
    assert NotRetained.code is ErrorCode.UNKNOWN_SESSION


def test_a_session_expires_retention_s_after_its_last_step() -> None:
    clock = Clock()
    store = RetentionStore(NODE, clock=clock)
    old = serve(store, session_id("old"), 2, retention_s=60)
    clock.now += 40
    live = serve(store, session_id("live"), 1, retention_s=60)
    clock.now += 30  # old: 70 s after its last step; live: 30 s
    with pytest.raises(NotRetained):
        store.answer(Challenge(tuple(old), 2, 1))
    assert_answers(store, live)
    store.put(committed(session_id("live"), 1, retention_s=60))  # stepping keeps it alive
    clock.now += 50
    assert store.expire() == 0
    clock.now += 11
    assert store.expire() == 1
    assert store.stats.sessions == 0 and store.stats.memory_bytes == 0
    assert store.stats.expired_sessions == 2


def test_without_a_directory_the_oldest_sessions_are_evicted_when_memory_is_full() -> None:
    store = RetentionStore(NODE, RetentionConfig(memory_bytes=8 * STEP_BYTES))
    first = serve(store, session_id("first"), 3)  # 3 + 1 + 1 positions = 5 step units
    second = serve(store, session_id("second"), 3)
    with pytest.raises(NotRetained):
        store.answer(Challenge(tuple(first[:1]), 1, 0))
    assert_answers(store, second)
    stats = store.stats
    assert stats.evicted_sessions == 1 and stats.memory_bytes <= 8 * STEP_BYTES


def test_the_least_recently_stepped_session_is_evicted_first() -> None:
    store = RetentionStore(NODE, RetentionConfig(memory_bytes=11 * STEP_BYTES))
    a = serve(store, session_id("a"), 2)  # 4 units
    b = serve(store, session_id("b"), 2)  # 4 units
    store.put(committed(session_id("a"), 2))  # a is now the most recent: 9 units
    serve(store, session_id("c"), 1)  # 3 more units: b must go
    with pytest.raises(NotRetained):
        store.answer(Challenge(tuple(b[:1]), 1, 0))
    assert_answers(store, a)


def test_steps_spill_to_disk_oldest_first_and_are_answered_from_there(tmp_path: Path) -> None:
    config = RetentionConfig(memory_bytes=4 * STEP_BYTES, disk_bytes=100 * STEP_BYTES,
                             directory=tmp_path)
    store = RetentionStore(NODE, config)
    receipts = serve(store, session_id("s"), 6)  # 3 + 5 units
    stats = store.stats
    assert stats.memory_bytes <= 4 * STEP_BYTES and stats.spilled_steps >= 2
    assert stats.memory_bytes + stats.disk_bytes == 8 * STEP_BYTES
    assert len(list(tmp_path.glob("*.act"))) == stats.spilled_steps
    assert_answers(store, receipts)
    store.close()
    assert not list(tmp_path.glob("*.act")) and store.stats.disk_bytes == 0


def test_past_the_disk_budget_whole_sessions_are_evicted_and_their_files_removed(
    tmp_path: Path,
) -> None:
    config = RetentionConfig(memory_bytes=2 * STEP_BYTES, disk_bytes=6 * STEP_BYTES,
                             directory=tmp_path)
    store = RetentionStore(NODE, config)
    first = serve(store, session_id("first"), 3)
    second = serve(store, session_id("second"), 2)
    with pytest.raises(NotRetained):
        store.answer(Challenge(tuple(first[:1]), 1, 0))
    assert_answers(store, second)
    stats = store.stats
    assert stats.evicted_sessions == 1 and stats.disk_bytes <= 6 * STEP_BYTES
    on_disk = sum(f.stat().st_size for f in tmp_path.glob("*.act"))
    assert on_disk == stats.disk_bytes


def test_a_corrupted_spill_file_is_never_revealed(tmp_path: Path) -> None:
    config = RetentionConfig(memory_bytes=1, directory=tmp_path)
    store = RetentionStore(NODE, config)
    receipts = serve(store, session_id("s"), 2)
    spilled = sorted(tmp_path.glob("*.act"))
    assert len(spilled) == 2
    data = bytearray(spilled[0].read_bytes())
    data[0] ^= 0xFF
    spilled[0].write_bytes(bytes(data))
    with pytest.raises(NotRetained, match="corrupt"):
        store.answer(Challenge(tuple(receipts[:1]), 1, 0))
    spilled[1].unlink()
    with pytest.raises(NotRetained):
        store.answer(Challenge(tuple(receipts), 2, 1))


def test_stale_spill_files_are_removed_at_start(tmp_path: Path) -> None:
    (tmp_path / "old-1-4-0.act").write_bytes(b"x")
    (tmp_path / "keep.txt").write_bytes(b"x")
    RetentionStore(NODE, RetentionConfig(directory=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_restarted_step_replaces_it_and_every_later_one() -> None:
    store = RetentionStore(NODE)
    session = session_id("r")
    serve(store, session, 3)
    again = committed(session, 0, count=3)
    store.put(again)
    assert store.stats.steps == 1
    assert_answers(store, [again.receipt])


def test_a_step_after_a_gap_drops_the_session() -> None:
    store = RetentionStore(NODE)
    session = session_id("g")
    serve(store, session, 1)
    store.put(committed(session, 2))
    assert store.stats.sessions == 0 and store.stats.memory_bytes == 0
