"""Copies of a checkpoint with its tensors edited, for refusal and model-id tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

Tensors = dict[str, torch.Tensor]


def edited_copy(src: Path, dst: Path, edit: Callable[[Tensors], None]) -> Path:
    """Copy `src` to `dst` and rewrite its model.safetensors after `edit(tensors)`."""
    shutil.copytree(src, dst)
    path = dst / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return dst
