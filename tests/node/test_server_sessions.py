"""The node-wide session table: slots and KV-cache bytes, all-or-nothing, released once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from darwin.model import Checkpoint, SpanRunner, make_tiny
from darwin.node.serving.sessions import Busy, SessionLimits, SessionTable, kv_bytes_per_row


def test_admission_stops_at_the_slot_limit_and_release_frees_the_slot() -> None:
    table = SessionTable(SessionLimits(max_sessions=2, kv_budget_bytes=100))
    first, _ = table.admit(10), table.admit(10)
    with pytest.raises(Busy, match="slots"):
        table.admit(0)
    assert table.load == 1.0
    first.release()
    first.release()  # a second release changes nothing
    assert (table.active, table.reserved_bytes, table.load) == (1, 10, 0.5)
    table.admit(10)


def test_admission_and_growth_stop_at_the_memory_budget_and_change_nothing() -> None:
    table = SessionTable(SessionLimits(max_sessions=8, kv_budget_bytes=100))
    session = table.admit(60)
    with pytest.raises(Busy, match="40 of 100"):
        table.admit(41)
    with pytest.raises(Busy):
        session.resize(101)
    assert (table.active, table.reserved_bytes, session.nbytes) == (1, 60, 60)
    session.resize(100)
    session.release()
    assert (table.active, table.reserved_bytes) == (0, 0)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_reservation_bounds_the_cache_a_full_session_holds(
    family: str, tiny_llama: Path, tmp_path: Path
) -> None:
    path = tiny_llama if family == "llama" else make_tiny(family, tmp_path, layers=2)
    checkpoint = Checkpoint.open(path)
    runner = SpanRunner.load(checkpoint, 0, 2)
    session = runner.new_session(70)  # past the cache's first capacity of 64
    runner.forward(session, torch.zeros(3, 70, 64))
    assert session.cache is not None
    bound = 3 * kv_bytes_per_row(checkpoint.family, 2, 70, torch.float32)
    assert session.cache.nbytes() == bound


def test_an_encoder_reserves_no_cache(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(make_tiny("bert", tmp_path, layers=1))
    assert kv_bytes_per_row(checkpoint.family, 1, 512, torch.float32) == 0
