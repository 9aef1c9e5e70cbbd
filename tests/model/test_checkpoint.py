"""Checkpoints are read lazily: a span reads its own tensors and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import torch

from darwin.model import Checkpoint, ClientParts, SpanRunner


@pytest.fixture
def read_names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    log: list[str] = []
    original = Checkpoint.read

    def spy(self: Checkpoint, names: Iterable[str], **kwargs: Any) -> dict[str, torch.Tensor]:
        names = list(names)
        log.extend(names)
        return original(self, names, **kwargs)

    monkeypatch.setattr(Checkpoint, "read", spy)
    return log


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_a_span_reads_only_its_blocks(
    tiny: Callable[..., Path], read_names: list[str], family: str
) -> None:
    checkpoint = Checkpoint.open(tiny(family))
    SpanRunner.load(checkpoint, 1, 3)
    blocks = {checkpoint.family.block_prefix(i) for i in (1, 2)}
    assert read_names
    assert all(any(n.startswith(p) for p in blocks) for n in read_names)
    assert {p for p in blocks if any(n.startswith(p) for n in read_names)} == blocks


def test_client_parts_read_only_client_tensors(
    tiny: Callable[..., Path], read_names: list[str]
) -> None:
    checkpoint = Checkpoint.open(tiny("gpt2"))
    client = ClientParts.load(checkpoint)
    assert sorted(read_names) == [
        "transformer.ln_f.bias",
        "transformer.ln_f.weight",
        "transformer.wpe.weight",
        "transformer.wte.weight",
    ]
    head = client.module.lm_head.weight  # tied: the embedding itself
    assert head.data_ptr() == client.module.wte.weight.data_ptr()


def test_weights_are_private_copies(tiny: Callable[..., Path], tmp_path: Path) -> None:
    """Loaded weights must not alias the file: rewriting it in place must not change them."""
    src = tiny("llama")
    dst = tmp_path / "copy"
    dst.mkdir()
    for file in src.iterdir():
        (dst / file.name).write_bytes(file.read_bytes())
    checkpoint = Checkpoint.open(dst)
    name = "model.layers.0.mlp.up_proj.weight"
    loaded = checkpoint.read([name])[name]
    before = loaded.clone()
    info = checkpoint.info(name)
    with info.file.open("r+b") as handle:
        handle.seek(info.offset)
        handle.write(bytes(info.nbytes))
    assert torch.equal(loaded, before)
    assert checkpoint.read([name])[name].abs().sum() == 0  # the file did change


def test_other_dtypes_are_cast_at_load(llama_checkpoint: Checkpoint) -> None:
    fp32 = SpanRunner.load(llama_checkpoint, 0, 2)
    bf16 = SpanRunner.load(llama_checkpoint, 0, 2, dtype=torch.bfloat16)
    hidden = torch.randn(1, 5, 64, generator=torch.Generator().manual_seed(0))
    want = fp32.forward(fp32.new_session(8), hidden).hidden
    got = bf16.forward(bf16.new_session(8), hidden.bfloat16()).hidden
    assert got.dtype == torch.bfloat16
    assert float((got.float() - want).norm() / want.norm()) < 0.05


def test_cache_grows_with_use_not_max_length(llama_checkpoint: Checkpoint) -> None:
    runner = SpanRunner.load(llama_checkpoint, 0, 1)
    session = runner.new_session(4096)
    runner.forward(session, torch.zeros(1, 3, 64))
    assert session.cache is not None
    # keys + values, 2 kv heads of 16 dims, 64 positions reserved (not 4096), float32
    assert session.cache.nbytes() == 2 * 2 * 64 * 16 * 4
