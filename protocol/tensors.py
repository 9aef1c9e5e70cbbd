"""The tensor codec: dtype allowlist, shape limits, canonical bytes and digests.

Rules:

* Only float32, float16 and bfloat16 travel. The canonical encoding of a tensor is its
  elements as little-endian IEEE bytes in C (row-major) order, nothing else.
* Decoding checks the declared dtype, rank, dims and total size against ``TensorLimits``
  before it looks at the data, and raises only ``RemoteProtocolError``.
* A tensor's digest is keyed BLAKE3-256 of the canonical bytes, under a key derived from a
  fixed header (dtype code, rank, dims) with the context ``TENSOR_DIGEST_CONTEXT``: the header
  is hashed once per dtype and shape, and the data from its first byte, at BLAKE3's full
  speed (a header in front of it would misalign every 1 KiB chunk). It accepts any contiguous
  buffer so a caller can hash a framework tensor's memory without a copy; large tensors are
  hashed on BLAKE3's threads. Layout in ``specs/wire-format.md``.
* numpy has no bfloat16: ``to_numpy`` upcasts bfloat16 to float32 (exact) and ``from_numpy``
  rounds float32 to bfloat16 (round to nearest even).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import Enum
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from blake3 import blake3

from .errors import LocalProtocolError, blame_peer
from .hashing import threads_for
from .ids import DIGEST_SIZE
from .schema import I64_MAX, MapReader, require_bytes, require_int, shown

TENSOR_DIGEST_CONTEXT = "darwin/tensor/2"
FloatArray = npt.NDArray[np.floating[Any]]


class DType(Enum):
    """The element types allowed on the wire; the value is the wire name."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"

    @classmethod
    def from_name(cls, name: str) -> DType:
        """The dtype of a wire name.

        Raises:
            LocalProtocolError: if ``name`` is not an allowed dtype.
        """
        try:
            return cls(name)
        except ValueError:
            raise LocalProtocolError(f"dtype {shown(name)} is not allowed") from None

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _ITEMSIZE[self]

    @property
    def code(self) -> int:
        """The one-byte code of this dtype in a tensor digest header."""
        return _CODE[self]


_ITEMSIZE = {DType.FLOAT32: 4, DType.FLOAT16: 2, DType.BFLOAT16: 2}
_CODE = {DType.FLOAT32: 1, DType.FLOAT16: 2, DType.BFLOAT16: 3}
_NUMPY_DTYPE: dict[DType, np.dtype[Any]] = {
    DType.FLOAT32: np.dtype("<f4"),
    DType.FLOAT16: np.dtype("<f2"),
}


@dataclass(frozen=True)
class TensorLimits:
    """Bounds on a tensor accepted from a peer."""

    # Largest data size in bytes.
    max_bytes: int = 256 * 2**20
    # Largest number of dimensions.
    max_rank: int = 4
    # Largest single dimension.
    max_dim: int = 2**24

    def __post_init__(self) -> None:
        """Raises LocalProtocolError: if a bound is not a positive int."""
        for name in ("max_bytes", "max_rank", "max_dim"):
            require_int(f"TensorLimits.{name}", getattr(self, name), 1, I64_MAX)

    def check(self, dtype: DType, shape: tuple[int, ...]) -> int:
        """Return the data size a dtype and shape declare, computed without allocating.

        Raises:
            LocalProtocolError: if the rank, a dim or the size exceeds these limits.
        """
        if len(shape) > self.max_rank:
            raise LocalProtocolError(f"tensor rank {len(shape)} exceeds {self.max_rank}")
        if any(dim > self.max_dim for dim in shape):
            raise LocalProtocolError(f"tensor dim exceeds {self.max_dim} in {shown(shape)}")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.max_bytes:
            raise LocalProtocolError(f"tensor of {nbytes} bytes exceeds {self.max_bytes}")
        return nbytes


def _check_shape(shape: object) -> tuple[int, ...]:
    """Raises LocalProtocolError: unless ``shape`` is a tuple of non-negative ints."""
    if not isinstance(shape, tuple) or any(type(d) is not int or d < 0 for d in shape):
        raise LocalProtocolError(f"shape must be a tuple of non-negative ints, got {shown(shape)}")
    return shape


def tensor_digest(
    dtype: DType, shape: tuple[int, ...], data: bytes | bytearray | memoryview
) -> bytes:
    """Keyed BLAKE3-256 of a tensor's canonical bytes, under the key of its dtype and shape.

    Args:
        dtype: the element type.
        shape: the dims, C order.
        data: the canonical bytes in any C-contiguous buffer (for a torch tensor:
            ``memoryview(t.contiguous().view(torch.uint8).numpy())``); not copied.

    Raises:
        LocalProtocolError: if the buffer is not contiguous or its size does not match.
    """
    return TensorHasher(dtype, shape).digest(data)


@lru_cache(maxsize=1024)
def _digest_key(dtype: DType, shape: tuple[int, ...]) -> bytes:
    """The digest key of a dtype and shape; kept, since every decode step of a session has the
    same shape (and deriving it first thing after a forward pass costs tens of microseconds)."""
    header = struct.pack(f"<BB{len(shape)}Q", dtype.code, len(shape), *shape)
    return blake3(header, derive_key_context=TENSOR_DIGEST_CONTEXT).digest()


class TensorHasher:
    """`tensor_digest` for any number of tensors of one dtype and shape (a step's leaves):
    the header is checked and its key derived once.

    Raises (on construction):
        LocalProtocolError: if ``dtype`` is not a DType or ``shape`` not a tuple of ints.
    """

    def __init__(self, dtype: DType, shape: tuple[int, ...]) -> None:
        if not isinstance(dtype, DType):
            raise LocalProtocolError(f"dtype must be a DType, got {shown(dtype)}")
        self._dtype, self._shape = dtype, _check_shape(shape)
        self._nbytes = math.prod(shape) * dtype.itemsize
        self._threads = threads_for(self._nbytes)
        self._key = _digest_key(dtype, shape)

    def digest(self, data: bytes | bytearray | memoryview) -> bytes:
        """The digest of one tensor's canonical bytes (not copied).

        Raises:
            LocalProtocolError: if the buffer is not contiguous or its size does not match.
        """
        view = memoryview(data)
        if not view.c_contiguous or view.nbytes != self._nbytes:
            raise LocalProtocolError(
                f"tensor data is not {shown(self._shape)} contiguous {self._dtype.value}")
        if view.format != "B":
            view = view.cast("B")  # the same memory as bytes, which BLAKE3 takes
        return blake3(view, key=self._key, max_threads=self._threads).digest()


@dataclass(frozen=True)
class WireTensor:
    """A tensor as it travels: dtype, shape and canonical bytes.

    Raises (on construction):
        LocalProtocolError: if a field has the wrong type or ``len(data)`` does not equal
            ``prod(shape) * dtype.itemsize``.
    """

    dtype: DType
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DType):
            raise LocalProtocolError(f"dtype must be a DType, got {shown(self.dtype)}")
        shape = _check_shape(self.shape)
        if not isinstance(self.data, bytes):
            raise LocalProtocolError("tensor data must be bytes")
        if len(self.data) != math.prod(shape) * self.dtype.itemsize:
            raise LocalProtocolError(f"tensor data is not {len(self.data)} bytes for {shape}")

    @classmethod
    def hashed(cls, dtype: DType, shape: tuple[int, ...], data: bytes, digest: bytes) -> WireTensor:
        """A tensor whose digest the caller computed over these same bytes: not hashed again.

        For a node's own output only (its commitment already hashed it); never for bytes a peer
        sent, whose digest must be computed here.
        """
        require_bytes("digest", digest, DIGEST_SIZE)
        tensor = cls(dtype, shape, data)
        tensor.__dict__["_digest"] = digest  # what the cached property would compute
        return tensor

    @cached_property
    def _digest(self) -> bytes:
        return tensor_digest(self.dtype, self.shape, self.data)

    def digest(self) -> bytes:
        """The tensor's 32-byte digest (computed once)."""
        return self._digest

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this tensor."""
        return {"dtype": self.dtype.value, "shape": list(self.shape), "data": self.data}

    @classmethod
    def from_obj(cls, obj: object, limits: TensorLimits) -> WireTensor:
        """Decode a tensor map a peer sent, checking its declared size first.

        Raises:
            RemoteProtocolError: if the map is malformed, the dtype is not allowed, or the
                shape or size exceeds ``limits`` or does not match the data.
        """
        reader = MapReader(obj, ("dtype", "shape", "data"), "tensor")
        with blame_peer("tensor"):
            dtype = DType.from_name(reader.text("dtype"))
            shape = _check_shape(tuple(reader.array_of("shape", int, "ints")))
            limits.check(dtype, shape)
            return cls(dtype, shape, reader.binary("data"))

    @classmethod
    def from_numpy(cls, array: FloatArray, dtype: DType | None = None) -> WireTensor:
        """Encode a numpy array.

        Args:
            array: float32 or float16 data; float32 when ``dtype`` is ``BFLOAT16``.
            dtype: the wire dtype; by default the array's own.

        Raises:
            LocalProtocolError: if the array's dtype does not fit ``dtype`` (no silent casts).
        """
        wanted = dtype if dtype is not None else _dtype_of(array)
        if wanted is DType.BFLOAT16:
            if not _holds(array, np.dtype("<f4")):
                raise LocalProtocolError("bfloat16 is encoded from a float32 array")
            return cls(wanted, array.shape, _float32_to_bfloat16_bytes(array))
        if not _holds(array, _NUMPY_DTYPE[wanted]):
            raise LocalProtocolError(f"array of {array.dtype} is not {wanted.value}")
        data = np.ascontiguousarray(array, dtype=_NUMPY_DTYPE[wanted]).tobytes()
        return cls(wanted, array.shape, data)

    def to_numpy(self) -> FloatArray:
        """Decode into numpy: a read-only view, or a float32 copy for bfloat16."""
        if self.dtype is DType.BFLOAT16:
            bits = np.frombuffer(self.data, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(self.shape)
        return np.frombuffer(self.data, dtype=_NUMPY_DTYPE[self.dtype]).reshape(self.shape)


def _holds(array: FloatArray, numpy_dtype: np.dtype[Any]) -> bool:
    """Whether the array's elements are of ``numpy_dtype`` in either byte order."""
    return array.dtype.kind == numpy_dtype.kind and array.dtype.itemsize == numpy_dtype.itemsize


def _dtype_of(array: FloatArray) -> DType:
    """Raises LocalProtocolError: if the array's dtype has no wire dtype."""
    for dtype, numpy_dtype in _NUMPY_DTYPE.items():
        if _holds(array, numpy_dtype):
            return dtype
    raise LocalProtocolError(
        f"arrays of {array.dtype} cannot travel; bfloat16 needs a float32 array and "
        "dtype=DType.BFLOAT16"
    )


def _float32_to_bfloat16_bytes(array: FloatArray) -> bytes:
    """Round float32 to bfloat16 (nearest even; NaN stays a quiet NaN) as little-endian bytes."""
    bits = np.ascontiguousarray(array, dtype="<f4").view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    quiet_nan = (bits >> 16) | np.uint32(0x0040)
    return np.where(np.isnan(array), quiet_nan, rounded).astype("<u2").tobytes()
