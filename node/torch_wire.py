"""Torch tensors on the wire: conversion to and from `WireTensor`, and zero-copy digests.

Rules: only the protocol's dtype allowlist crosses; the canonical bytes are the tensor's
memory on a little-endian host (every platform torch ships for), so a digest hashes that memory
without copying it.
"""

from __future__ import annotations

import sys

import torch

from darwin.protocol import DType, LocalProtocolError, WireTensor, tensor_digest

assert sys.byteorder == "little", "canonical tensor bytes are little-endian"

_TO_TORCH = {
    DType.FLOAT32: torch.float32,
    DType.FLOAT16: torch.float16,
    DType.BFLOAT16: torch.bfloat16,
}
_TO_WIRE = {value: key for key, value in _TO_TORCH.items()}


def wire_dtype(dtype: torch.dtype) -> DType:
    """The wire dtype of a torch dtype.

    Raises:
        LocalProtocolError: for a dtype outside the allowlist.
    """
    try:
        return _TO_WIRE[dtype]
    except KeyError:
        raise LocalProtocolError(f"torch dtype {dtype} cannot travel") from None


def torch_dtype(dtype: DType) -> torch.dtype:
    """The torch dtype of a wire dtype."""
    return _TO_TORCH[dtype]


def _bytes_view(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().contiguous().cpu().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def digest(tensor: torch.Tensor) -> bytes:
    """The protocol digest of a tensor, hashed straight from its memory.

    Raises:
        LocalProtocolError: for a dtype outside the allowlist.
    """
    return tensor_digest(wire_dtype(tensor.dtype), tuple(tensor.shape), _bytes_view(tensor))


def to_wire(tensor: torch.Tensor) -> WireTensor:
    """Encode a tensor for a message.

    Raises:
        LocalProtocolError: for a dtype outside the allowlist.
    """
    return WireTensor(wire_dtype(tensor.dtype), tuple(tensor.shape), _bytes_view(tensor).tobytes())


def from_wire(wire: WireTensor) -> torch.Tensor:
    """Decode a (validated) wire tensor into a fresh, writable torch tensor."""
    dtype = torch_dtype(wire.dtype)
    if not wire.data:
        return torch.empty(wire.shape, dtype=dtype)
    return torch.frombuffer(bytearray(wire.data), dtype=dtype).reshape(wire.shape)
