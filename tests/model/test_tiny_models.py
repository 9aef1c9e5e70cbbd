"""`make_tiny` writes deterministic checkpoints that transformers itself loads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM

from darwin.model import TINY_FAMILIES, Checkpoint, load_tokenizer, make_tiny


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_same_arguments_give_byte_identical_files(
    tmp_path: Path, tiny: Callable[..., Path], family: str
) -> None:
    again = make_tiny(family, tmp_path / "again")
    assert _files(again) == _files(tiny(family))
    other = make_tiny(family, tmp_path / "other", seed=1)
    assert _files(other)["model.safetensors"] != _files(again)["model.safetensors"]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_transformers_loads_it_cleanly(tiny: Callable[..., Path], family: str) -> None:
    auto = AutoModel if family == "bert" else AutoModelForCausalLM
    _, info = auto.from_pretrained(tiny(family), output_loading_info=True)  # type: ignore[misc]
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    checkpoint = Checkpoint.open(tiny(family))
    assert (checkpoint.n_layers, checkpoint.hidden_size) == (4, 64)
    assert checkpoint.dtype == torch.float32


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_tokenizer_round_trips_any_text(tiny: Callable[..., Path], family: str) -> None:
    tokenizer = load_tokenizer(tiny(family))
    text = "Verifiers check a random layer; zebra-quokka 42!"
    ids = tokenizer(text).input_ids
    assert max(ids) < 512
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_sizes_are_honoured(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(make_tiny("gpt2", tmp_path, layers=2, hidden=32, vocab=320))
    assert (checkpoint.n_layers, checkpoint.hidden_size) == (2, 32)
    assert checkpoint.info("transformer.wte.weight").shape == (320, 32)


def test_greedy_generation_does_not_collapse(tiny: Callable[..., Path]) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny("llama")).eval()
    model.generation_config.eos_token_id = None
    ids = load_tokenizer(tiny("llama"))("The quick brown fox", return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=32, do_sample=False)
    assert len(set(out[0, ids.shape[1] :].tolist())) >= 16
