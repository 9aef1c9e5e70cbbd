"""Model ids and layer hashes: deterministic, sensitive to one weight, cached safely."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from checkpoint_edits import Tensors, edited_copy
from transformers import AutoModelForCausalLM

from darwin.model import (
    Checkpoint,
    layer_hash,
    layer_hash_of_tensors,
    make_tiny,
    model_digest,
)


def _digest(path: Path, cache_dir: Path | None = None):  # type: ignore[no-untyped-def]
    return model_digest(Checkpoint.open(path), cache_dir=cache_dir)


def test_same_files_same_id_in_different_dirs(tmp_path: Path) -> None:
    a = _digest(make_tiny("gpt2", tmp_path / "a", seed=3))
    b = _digest(make_tiny("gpt2", tmp_path / "b", seed=3))
    c = _digest(make_tiny("gpt2", tmp_path / "c", seed=4))
    assert a == b
    assert len(a.model_id) == 32 and len(a.layer_hashes) == 4
    assert c.model_id != a.model_id and c.config_hash == a.config_hash


def test_one_changed_weight_changes_the_id_and_only_that_layer(
    tiny: Callable[..., Path], tmp_path: Path
) -> None:
    src = tiny("llama")

    def nudge(tensors: Tensors) -> None:
        tensors["model.layers.2.self_attn.k_proj.weight"][3, 5] += 1e-3

    before, after = _digest(src), _digest(edited_copy(src, tmp_path / "x", nudge))
    assert after.model_id != before.model_id
    changed = [
        i
        for i, (x, y) in enumerate(zip(before.layer_hashes, after.layer_hashes, strict=True))
        if x != y
    ]
    assert changed == [2]
    assert after.config_hash == before.config_hash and after.client_hash == before.client_hash


def test_client_weights_and_config_are_covered(tiny: Callable[..., Path], tmp_path: Path) -> None:
    src = tiny("llama")
    before = _digest(src)

    def nudge(tensors: Tensors) -> None:
        tensors["model.norm.weight"][0] += 1e-3

    client = _digest(edited_copy(src, tmp_path / "client", nudge))
    assert client.client_hash != before.client_hash and client.layer_hashes == before.layer_hashes
    assert client.model_id != before.model_id

    dst = Path(shutil.copytree(src, tmp_path / "config"))
    config = json.loads((dst / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    config["use_cache"] = not config.get("use_cache", True)  # not part of the computation
    (dst / "config.json").write_text(json.dumps(config))
    changed = _digest(dst)
    assert changed.config_hash != before.config_hash and changed.model_id != before.model_id
    assert changed.layer_hashes == before.layer_hashes


def test_layout_does_not_matter_sharded_equals_single_file(
    tiny: Callable[..., Path], tmp_path: Path, prompt: torch.Tensor
) -> None:
    src = tiny("llama")
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(src).save_pretrained(sharded, max_shard_size="150KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, sharded / name)
    assert (sharded / "model.safetensors.index.json").exists()
    checkpoint = Checkpoint.open(sharded)
    assert len(checkpoint.files) > 2
    assert _digest(sharded) == _digest(src)


def test_layer_hash_of_loaded_tensors_equals_the_file_hash(
    llama_checkpoint: Checkpoint, tmp_path: Path
) -> None:
    prefix = "model.layers.1."
    names = llama_checkpoint.names_with_prefix(prefix)
    tensors = llama_checkpoint.read(names)
    local = {name[len(prefix) :]: t for name, t in tensors.items()}
    expected = layer_hash(llama_checkpoint, 1, cache_dir=None)
    assert layer_hash_of_tensors(local) == expected
    assert (
        layer_hash_of_tensors({**local, "mlp.up_proj.weight": local["mlp.up_proj.weight"] * 1.001})
        != expected
    )
    assert layer_hash_of_tensors({k: v.half() for k, v in local.items()}) != expected


@pytest.fixture
def read_log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of tensors whose bytes are read for hashing."""
    log: list[str] = []
    original = Checkpoint.raw_chunks

    def spy(self: Checkpoint, name: str, chunk: int = 8 << 20) -> Iterator[bytes]:
        log.append(name)
        return original(self, name, chunk)

    monkeypatch.setattr(Checkpoint, "raw_chunks", spy)
    return log


def test_layer_hash_reads_only_that_layer(
    llama_checkpoint: Checkpoint, read_log: list[str]
) -> None:
    layer_hash(llama_checkpoint, 3, cache_dir=None)
    assert read_log and all(name.startswith("model.layers.3.") for name in read_log)


def test_cache_is_used_and_never_stale(
    tiny: Callable[..., Path], tmp_path: Path, read_log: list[str]
) -> None:
    src = Path(shutil.copytree(tiny("llama"), tmp_path / "model"))
    cache = tmp_path / "cache"
    first = _digest(src, cache)
    assert read_log
    assert list((cache / "tensor-digests").glob("*.json"))
    read_log.clear()
    assert _digest(src, cache) == first
    assert read_log == []  # answered from the sidecar

    # Same size, new content, new mtime: the entry is stale and must not be trusted.
    weights = src / "model.safetensors"
    stat = weights.stat()
    edited_copy(src, tmp_path / "edited", lambda t: t["model.layers.0.mlp.down_proj.weight"].neg_())
    shutil.copyfile(tmp_path / "edited" / "model.safetensors", weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert weights.stat().st_size == stat.st_size
    changed = _digest(src, cache)
    assert read_log and changed.model_id != first.model_id
    assert changed == _digest(src, None)

    # Only the mtime changes: recomputed (not trusted), and the same result.
    read_log.clear()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000))
    assert _digest(src, cache) == changed and read_log


def test_corrupt_sidecar_is_a_cache_miss(tiny: Callable[..., Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _digest(tiny("gpt2"), cache)
    for entry in (cache / "tensor-digests").glob("*.json"):
        entry.write_text("{not json")
    assert _digest(tiny("gpt2"), cache) == first


def test_spec_test_vector() -> None:
    """The example in specs/model-id.md section 7."""
    tensors = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([3], dtype=torch.int64)}
    assert layer_hash_of_tensors(tensors).hex() == (
        "140981ec558a00a86c2782189bc7dc3f2e9eb4fd803ffe60b5f1399dbe05d171"
    )
