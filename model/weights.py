"""Filling family modules with exactly their checkpoint tensors.

Rules:
- Strict: a block must find every tensor it expects, with the expected shape, and no tensor
  under its prefix may be left over; each failure is a `CheckpointError` naming the tensor.
- Checks run on the safetensors headers *before* any byte is read, so a bad checkpoint fails
  fast and the streaming mode can validate a whole span without loading it.
- Modules are built on the meta device and receive the read tensors by assignment, so a block
  is allocated once, at the dtype asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .checkpoint import Checkpoint
from .errors import CheckpointError
from .family import ClientModule

__all__ = ["block_tensor_names", "check_block", "check_shapes", "load_block", "load_client"]


def _expected_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def block_tensor_names(checkpoint: Checkpoint, index: int, module: nn.Module) -> dict[str, str]:
    """Block-local name -> checkpoint name for block `index`, refusing leftovers.

    Raises:
        CheckpointError: a tensor under the block's prefix that the block does not have.
    """
    family = checkpoint.family
    prefix = family.block_prefix(index)
    expected = _expected_shapes(module)
    for name in checkpoint.names_with_prefix(prefix):
        local = name[len(prefix) :]
        if local not in expected and not family.is_ignored(local):
            raise CheckpointError(
                f"block {index}: unexpected tensor {name} (not part of a {family.name} block)"
            )
    return {local: prefix + local for local in expected}


def check_shapes(
    checkpoint: Checkpoint,
    names: Mapping[str, str],
    expected: Mapping[str, tuple[int, ...]],
    what: str,
) -> None:
    """Every named tensor exists in the checkpoint with the shape the module expects.

    Raises:
        CheckpointError: a missing tensor, or one whose shape differs.
    """
    for local, name in names.items():
        info = checkpoint.tensors.get(name)
        if info is None:
            raise CheckpointError(f"{what}: tensor {name} is missing from {checkpoint.path}")
        if info.shape != expected[local]:
            raise CheckpointError(
                f"{what}: tensor {name} has shape {list(info.shape)}, "
                f"expected {list(expected[local])}"
            )


def _fill(
    module: nn.Module,
    checkpoint: Checkpoint,
    names: Mapping[str, str],
    dtype: torch.dtype,
    device: torch.device | str,
    reuse: Mapping[str, torch.Tensor] | None = None,
) -> None:
    if reuse is not None and _fits(module, reuse, dtype):
        checkpoint.read_into({name: reuse[local] for local, name in names.items()})
        state = {local: reuse[local] for local in names}
    else:
        tensors = checkpoint.read(names.values(), dtype=dtype, device=device)
        state = {local: tensors[name] for local, name in names.items()}
    module.load_state_dict(state, strict=False, assign=True)


def _fits(module: nn.Module, reuse: Mapping[str, torch.Tensor], dtype: torch.dtype) -> bool:
    """Whether `reuse` has a tensor of the right shape and dtype for every module tensor."""
    for local, meta in module.state_dict().items():
        target = reuse.get(local)
        wanted = dtype if meta.is_floating_point() else meta.dtype
        if target is None or target.shape != meta.shape or target.dtype != wanted:
            return False
    return True


def _check_materialised(module: nn.Module, what: str) -> None:
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_meta:
            raise CheckpointError(f"{what}: {name} was not loaded from the checkpoint")


def load_block(
    checkpoint: Checkpoint,
    index: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    reuse: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Build block `index` and read its tensors (and only those) into it.

    With `reuse` (an evicted block's state dict of the same shapes), the tensors are read
    into that memory instead of new allocations.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped tensors of this block.
    """
    module = checkpoint.family.make_block(index)
    names = block_tensor_names(checkpoint, index, module)
    check_shapes(checkpoint, names, _expected_shapes(module), f"block {index}")
    _fill(module, checkpoint, names, dtype, device, reuse)
    _check_materialised(module, f"block {index}")
    return module.eval().requires_grad_(False)


def check_block(checkpoint: Checkpoint, index: int) -> None:
    """Validate block `index` against the headers without reading its weights.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped tensors of this block.
    """
    module = checkpoint.family.make_block(index)
    names = block_tensor_names(checkpoint, index, module)
    check_shapes(checkpoint, names, _expected_shapes(module), f"block {index}")


def load_client(
    checkpoint: Checkpoint,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> ClientModule:
    """Build the client-side module (embeddings, head) and read its tensors into it.

    Raises:
        CheckpointError: a missing or mis-shaped client tensor (e.g. an untied head absent).
    """
    module = checkpoint.family.make_client()
    names = checkpoint.family.client_tensor_names()
    check_shapes(checkpoint, names, _expected_shapes(module), "client parts")
    _fill(module, checkpoint, names, dtype, device)
    module.after_load(device)
    _check_materialised(module, "client parts")
    return module.eval().requires_grad_(False)
