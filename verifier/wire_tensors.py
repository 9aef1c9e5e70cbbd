"""Revealed wire tensors as torch tensors (the verifier's side of the tensor codec).

``darwin.node.torch_wire`` does the same for the node; the verifier sits above ``node`` in
the layering, so it keeps its own two conversions. Canonical bytes are little-endian, which
is every platform torch ships for.
"""

from __future__ import annotations

import sys

import torch

from darwin.protocol import DType, WireTensor

assert sys.byteorder == "little", "canonical tensor bytes are little-endian"

_TO_TORCH = {
    DType.FLOAT32: torch.float32,
    DType.FLOAT16: torch.float16,
    DType.BFLOAT16: torch.bfloat16,
}


def torch_dtype(dtype: DType) -> torch.dtype:
    """The torch dtype of a wire dtype."""
    return _TO_TORCH[dtype]


def to_torch(wire: WireTensor) -> torch.Tensor:
    """A fresh, writable torch tensor holding a (validated) wire tensor."""
    dtype = _TO_TORCH[wire.dtype]
    if not wire.data:
        return torch.empty(wire.shape, dtype=dtype)
    return torch.frombuffer(bytearray(wire.data), dtype=dtype).reshape(wire.shape)
