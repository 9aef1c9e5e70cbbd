"""Bad checkpoints, spans and inputs are refused with a `ModelError` that names the problem."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from checkpoint_edits import Tensors, edited_copy

from darwin.model import (
    Checkpoint,
    CheckpointError,
    ClientParts,
    InvalidInput,
    ModelError,
    SessionLengthExceeded,
    SpanOutOfRange,
    SpanRunner,
    UnsupportedArchitecture,
    UnsupportedOperation,
    make_tiny,
)

UP = "model.layers.1.mlp.up_proj.weight"


def test_unsupported_architecture(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(UnsupportedArchitecture, match=r"'t5'.*supported: bert, gpt2, llama"):
        Checkpoint.open(tmp_path)


def test_unsupported_option_of_a_family(tiny: Callable[..., Path], tmp_path: Path) -> None:
    dst = Path(shutil.copytree(tiny("gpt2"), tmp_path / "x"))
    config = json.loads((dst / "config.json").read_text())
    config["add_cross_attention"] = True
    (dst / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitecture, match="add_cross_attention"):
        Checkpoint.open(dst)


def test_missing_directory_config_or_weights(tiny: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        Checkpoint.open(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        Checkpoint.open(tmp_path)
    shutil.copy(tiny("llama") / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"neither model\.safetensors nor"):
        Checkpoint.open(tmp_path)


def test_corrupt_safetensors_header(tiny: Callable[..., Path], tmp_path: Path) -> None:
    dst = Path(shutil.copytree(tiny("llama"), tmp_path / "x"))
    weights = dst / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated: tensors past the end
    with pytest.raises(CheckpointError, match="lies outside the file"):
        Checkpoint.open(dst)
    weights.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        Checkpoint.open(dst)


def test_missing_tensor_names_it_and_other_spans_still_load(
    tiny: Callable[..., Path], tmp_path: Path
) -> None:
    dst = edited_copy(tiny("llama"), tmp_path / "x", lambda t: t.pop(UP))
    checkpoint = Checkpoint.open(dst)
    with pytest.raises(CheckpointError, match=rf"block 1: tensor {UP} is missing"):
        SpanRunner.load(checkpoint, 0, 2)
    with pytest.raises(CheckpointError, match=UP):  # streaming validates the span up front
        SpanRunner.load(checkpoint, 0, 4, resident_blocks=1)
    SpanRunner.load(checkpoint, 2, 4)  # a span that does not need it is fine


def test_misshaped_tensor_names_both_shapes(tiny: Callable[..., Path], tmp_path: Path) -> None:
    def shrink(tensors: Tensors) -> None:
        tensors[UP] = tensors[UP][:-1].clone()

    checkpoint = Checkpoint.open(edited_copy(tiny("llama"), tmp_path / "x", shrink))
    with pytest.raises(CheckpointError, match=r"has shape \[255, 64\], expected \[256, 64\]"):
        SpanRunner.load(checkpoint, 1, 2)


def test_unexpected_tensor_in_a_block(tiny: Callable[..., Path], tmp_path: Path) -> None:
    def add(tensors: Tensors) -> None:
        tensors["model.layers.2.mlp.extra.weight"] = torch.zeros(2)

    checkpoint = Checkpoint.open(edited_copy(tiny("llama"), tmp_path / "x", add))
    with pytest.raises(CheckpointError, match=r"block 2: unexpected tensor model\.layers\.2\.mlp"):
        SpanRunner.load(checkpoint, 2, 3)


def test_missing_untied_head_is_refused_for_the_client(
    tiny: Callable[..., Path], tmp_path: Path
) -> None:
    dst = edited_copy(tiny("llama"), tmp_path / "x", lambda t: t.pop("lm_head.weight"))
    with pytest.raises(CheckpointError, match=r"client parts: tensor lm_head\.weight is missing"):
        ClientParts.load(Checkpoint.open(dst))


@pytest.mark.parametrize(("start", "end"), [(0, 5), (-1, 2), (2, 2), (3, 1), (4, 5)], ids=str)
def test_span_out_of_range(llama_checkpoint: Checkpoint, start: int, end: int) -> None:
    with pytest.raises(SpanOutOfRange, match=rf"span \[{start}, {end}\).*n_layers=4"):
        SpanRunner.load(llama_checkpoint, start, end)


def test_bad_steps_leave_the_session_unchanged(llama_checkpoint: Checkpoint) -> None:
    runner = SpanRunner.load(llama_checkpoint, 0, 1)
    session = runner.new_session(8)
    runner.forward(session, torch.zeros(2, 6, 64))
    cases: list[tuple[type[Exception], str, torch.Tensor]] = [
        (
            SessionLengthExceeded,
            "position 6 with max_length 8 cannot take 3",
            torch.zeros(2, 3, 64),
        ),
        (InvalidInput, "hidden width is 32, the model's is 64", torch.zeros(2, 1, 32)),
        (
            InvalidInput,
            "torch.float16, the span runs in torch.float32",
            torch.zeros(2, 1, 64).half(),
        ),
        (InvalidInput, "session batch is 2, this step's is 3", torch.zeros(3, 1, 64)),
        (InvalidInput, r"must be \(batch, seq, hidden\)", torch.zeros(2, 64)),
    ]
    for error, message, hidden in cases:
        with pytest.raises(error, match=message):
            runner.forward(session, hidden)
        assert session.position == 6
    with pytest.raises(InvalidInput, match="take no attention_mask"):
        runner.forward(session, torch.zeros(2, 1, 64), attention_mask=torch.ones(2, 1))
    with pytest.raises(InvalidInput, match="max_length must be positive"):
        runner.new_session(0)
    other = SpanRunner.load(llama_checkpoint, 1, 2)
    with pytest.raises(InvalidInput, match=r"session of span \[0, 1\] used with span \[1, 2\)"):
        other.forward(session, torch.zeros(2, 1, 64))
    runner.forward(session, torch.zeros(2, 2, 64))  # exactly up to max_length is fine
    assert session.position == 8


def test_client_refusals(tiny: Callable[..., Path]) -> None:
    bert = ClientParts.load(Checkpoint.open(tiny("bert")))
    with pytest.raises(UnsupportedOperation, match="no language-model head"):
        bert.logits(torch.zeros(1, 2, 64))
    gpt2 = ClientParts.load(Checkpoint.open(tiny("gpt2")))
    with pytest.raises(InvalidInput, match=r"positions \[1020, 1030\) exceed n_positions=1024"):
        gpt2.embed(torch.zeros(1, 10, dtype=torch.long), position_offset=1020)
    with pytest.raises(InvalidInput, match="integer"):
        gpt2.embed(torch.zeros(1, 10))


def test_make_tiny_refusals(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArchitecture, match="no tiny 't5' model"):
        make_tiny("t5", tmp_path)
    with pytest.raises(ModelError, match="multiple of 16"):
        make_tiny("llama", tmp_path, hidden=40)
