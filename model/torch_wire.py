"""Torch tensors on the wire: conversion to and from `WireTensor`, and zero-copy digests.

Rules: only the protocol's dtype allowlist crosses; the canonical bytes are the tensor's
memory on a little-endian host (every platform torch ships for), so a digest hashes that memory
without copying it. A step's leaves share one dtype and shape, so their digest key is derived
once; a large leaf is hashed on BLAKE3's own threads (``darwin.protocol.hashing``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

from darwin.protocol import DType, LocalProtocolError, TensorHasher, WireTensor, tensor_digest

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


def bytes_view(tensor: torch.Tensor) -> memoryview:
    """The tensor's memory as bytes, not copied: for the usual contiguous host tensor one torch
    call (``numpy``), since each one costs microseconds right after a forward pass."""
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; the bytes are what count
        tensor = tensor.view(torch.int16)
    try:
        view = tensor.numpy().data  # a memoryview of the same memory
    except (RuntimeError, TypeError):  # part of an autograd graph, or on an accelerator
        view = tensor.detach().cpu().contiguous().numpy().data
    return view.cast("B") if view.c_contiguous else bytes_view(tensor.contiguous())


def digest(tensor: torch.Tensor) -> bytes:
    """The protocol digest of a tensor, hashed straight from its memory.

    Raises:
        LocalProtocolError: for a dtype outside the allowlist.
    """
    return tensor_digest(wire_dtype(tensor.dtype), tuple(tensor.shape), bytes_view(tensor))


def digest_all(tensors: Sequence[torch.Tensor]) -> tuple[bytes, ...]:
    """The digests of a step's tensors (one dtype and shape) in order.

    Raises:
        LocalProtocolError: for a dtype outside the allowlist.
        ValueError: if the tensors differ in dtype or shape.
    """
    if not tensors:
        return ()
    first = tensors[0]
    if any(t.dtype != first.dtype or t.shape != first.shape for t in tensors):
        raise ValueError("a step's tensors share one dtype and shape")
    hasher = TensorHasher(wire_dtype(first.dtype), tuple(first.shape))
    return tuple(hasher.digest(bytes_view(t)) for t in tensors)


def to_wire(tensor: torch.Tensor, digest: bytes | None = None) -> WireTensor:
    """Encode a tensor for a message.

    `digest`, when given, is this tensor's digest as the caller just computed it over the same
    memory (a commitment's output leaf); the wire tensor then does not hash it again.

    Raises:
        LocalProtocolError: for a dtype outside the allowlist.
    """
    args = (wire_dtype(tensor.dtype), tuple(tensor.shape), bytes_view(tensor).tobytes())
    return WireTensor(*args) if digest is None else WireTensor.hashed(*args, digest)


def from_wire(wire: WireTensor) -> torch.Tensor:
    """Decode a (validated) wire tensor into a fresh, writable torch tensor."""
    dtype = torch_dtype(wire.dtype)
    if not wire.data:
        return torch.empty(wire.shape, dtype=dtype)
    return torch.frombuffer(bytearray(wire.data), dtype=dtype).reshape(wire.shape)
