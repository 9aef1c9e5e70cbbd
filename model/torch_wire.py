"""Torch tensors on the wire: conversion to and from `WireTensor`, and zero-copy digests.

Rules: only the protocol's dtype allowlist crosses; the canonical bytes are the tensor's
memory on a little-endian host (every platform torch ships for), so a digest hashes that memory
without copying it. A step's many leaves are hashed on a small thread pool once they are large
(hashlib releases the GIL while it hashes), because at prefill sizes BLAKE2b's throughput, not
Python, is what a receipt costs.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

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


# Below this many bytes per tensor, a thread hand-off costs more than hashing in place.
_PARALLEL_DIGEST_BYTES = 64 * 1024


def _bytes_view(tensor: torch.Tensor) -> memoryview:
    """The tensor's memory as a buffer; no torch call at all for the usual contiguous case."""
    if tensor.device.type != "cpu" or not tensor.is_contiguous() or tensor.requires_grad:
        tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; the bytes are what count
        tensor = tensor.view(torch.int16)
    return tensor.numpy().data  # a memoryview of the same memory


def digest(tensor: torch.Tensor) -> bytes:
    """The protocol digest of a tensor, hashed straight from its memory.

    Raises:
        LocalProtocolError: for a dtype outside the allowlist.
    """
    return tensor_digest(wire_dtype(tensor.dtype), tuple(tensor.shape), _bytes_view(tensor))


def digest_all(tensors: Sequence[torch.Tensor]) -> tuple[bytes, ...]:
    """The digests of a step's tensors (one dtype and shape) in order; large ones concurrently.

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
    views = [_bytes_view(t) for t in tensors]
    if len(views) < 2 or views[0].nbytes < _PARALLEL_DIGEST_BYTES:
        return tuple(hasher.digest(view) for view in views)
    return tuple(_digest_pool().map(hasher.digest, views))


@functools.cache
def _digest_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="digest")


def to_wire(tensor: torch.Tensor, digest: bytes | None = None) -> WireTensor:
    """Encode a tensor for a message.

    `digest`, when given, is this tensor's digest as the caller just computed it over the same
    memory (a commitment's output leaf); the wire tensor then does not hash it again.

    Raises:
        LocalProtocolError: for a dtype outside the allowlist.
    """
    args = (wire_dtype(tensor.dtype), tuple(tensor.shape), _bytes_view(tensor).tobytes())
    return WireTensor(*args) if digest is None else WireTensor.hashed(*args, digest)


def from_wire(wire: WireTensor) -> torch.Tensor:
    """Decode a (validated) wire tensor into a fresh, writable torch tensor."""
    dtype = torch_dtype(wire.dtype)
    if not wire.data:
        return torch.empty(wire.shape, dtype=dtype)
    return torch.frombuffer(bytearray(wire.data), dtype=dtype).reshape(wire.shape)
