"""Streaming-weights mode keeps at most K blocks resident; sessions are thread-safe."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from darwin.model import Checkpoint, ModelError, SpanRunner
from darwin.model.streaming import StreamingBlocks


@pytest.mark.parametrize("k", [1, 2, 4])
def test_at_most_k_blocks_resident_and_same_output(
    llama_checkpoint: Checkpoint, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    resident = SpanRunner.load(llama_checkpoint, 0, 4)
    streaming = SpanRunner.load(llama_checkpoint, 0, 4, resident_blocks=k)
    assert isinstance(streaming.blocks, StreamingBlocks)
    assert streaming.blocks.resident_count == 0  # nothing read at load time
    seen: list[int] = []
    original_get = StreamingBlocks.get

    def spy(self: StreamingBlocks, index: int) -> torch.nn.Module:
        block = original_get(self, index)
        seen.append(self.resident_count)
        return block

    monkeypatch.setattr(StreamingBlocks, "get", spy)
    steps = [torch.randn(2, 5, 64), torch.randn(2, 1, 64), torch.randn(2, 3, 64)]
    a, b = resident.new_session(32), streaming.new_session(32)
    for hidden in steps:
        want, got = resident.forward(a, hidden), streaming.forward(b, hidden)
        assert torch.equal(want.hidden, got.hidden)
        for x, y in zip(want.layer_inputs, got.layer_inputs, strict=True):
            assert torch.equal(x, y)
    assert max(seen) <= k
    # LRU over a cyclic access pattern: with K < 4 every step reloads every block.
    assert streaming.blocks.loads == (4 if k >= 4 else 4 * len(steps))


def test_resident_blocks_must_be_positive(llama_checkpoint: Checkpoint) -> None:
    with pytest.raises(ModelError, match="at least 1"):
        SpanRunner.load(llama_checkpoint, 0, 2, resident_blocks=0)


@pytest.mark.parametrize("resident_blocks", [None, 1])
def test_sessions_in_threads_match_sequential_runs(
    tiny: Callable[..., Path], resident_blocks: int | None
) -> None:
    checkpoint = Checkpoint.open(tiny("qwen2"))
    runner = SpanRunner.load(checkpoint, 1, 4, resident_blocks=resident_blocks)
    generator = torch.Generator().manual_seed(7)
    inputs = [
        [torch.randn(1, n, 64, generator=generator) for n in (6, 1, 1, 4, 1)] for _ in range(4)
    ]

    def run(steps: list[torch.Tensor]) -> list[torch.Tensor]:
        session = runner.new_session(32)
        return [runner.forward(session, h).hidden for h in steps]

    expected = [run(steps) for steps in inputs]
    results: dict[int, list[torch.Tensor]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = run(inputs[i])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for i, want in enumerate(expected):
        for x, y in zip(want, results[i], strict=True):
            assert torch.allclose(x, y, atol=1e-6, rtol=0)
