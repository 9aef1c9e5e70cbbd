"""msgpack framing with strict limits, so hostile bytes cannot exhaust memory.

Rules:

* Encoding uses msgpack's smallest representations, ``bin`` for bytes and ``str`` for text.
* Decoding refuses a frame longer than ``max_message_bytes`` before reading it, bounds every
  declared ``str``/``bin``/``array``/``map`` length, forbids ext types and non-string map keys,
  and counts the containers and elements it builds (``max_objects``), because a frame of tiny
  nested arrays would otherwise expand tens of times in memory.
* Any failure raises ``RemoteProtocolError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from .errors import LocalProtocolError, RemoteProtocolError
from .schema import I64_MAX, require_int
from .tensors import TensorLimits

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class WireLimits:
    """Bounds on one decoded frame; one instance per node, passed whole."""

    # Longest frame accepted, in bytes; the default fits one maximal tensor plus its envelope.
    max_message_bytes: int = 256 * 2**20 + 64 * 2**10
    # Longest msgpack str, in bytes.
    max_str_len: int = 4096
    # Longest msgpack array (tensor shapes, Merkle siblings).
    max_array_len: int = 64
    # Most entries in one msgpack map.
    max_map_len: int = 32
    # Most containers plus elements built while decoding one frame.
    max_objects: int = 4096
    # Bounds on tensors carried by the frame; ``max_bytes`` also caps every msgpack bin.
    tensor: TensorLimits = field(default_factory=TensorLimits)

    def __post_init__(self) -> None:
        """Raises LocalProtocolError: if a bound is not a positive int."""
        for name in ("max_message_bytes", "max_str_len", "max_array_len", "max_map_len",
                     "max_objects"):
            require_int(f"WireLimits.{name}", getattr(self, name), 1, I64_MAX)


def pack(obj: object) -> bytes:
    """Encode a tree of dicts, lists, ints, floats, str, bytes and None as msgpack.

    Raises:
        LocalProtocolError: if the tree holds a value msgpack cannot encode.
    """
    try:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode as msgpack: {exc}") from exc
    return packed


class _ObjectBudget:
    """Counts containers and elements as msgpack builds them; aborts past the budget."""

    def __init__(self, limit: int) -> None:
        self.remaining = limit

    def spend(self, size: int) -> None:
        self.remaining -= 1 + size
        if self.remaining < 0:
            raise RemoteProtocolError("message has too many msgpack objects")

    def on_list(self, items: list[object]) -> list[object]:
        self.spend(len(items))
        return items

    def on_map(self, entries: dict[str, object]) -> dict[str, object]:
        self.spend(len(entries))
        return entries


def unpack(data: bytes | bytearray | memoryview, limits: WireLimits) -> object:
    """Decode one msgpack object that a peer sent, within ``limits``.

    Raises:
        RemoteProtocolError: if the frame is too long, is not exactly one valid msgpack
            object, or exceeds any bound.
    """
    if memoryview(data).nbytes > limits.max_message_bytes:
        raise RemoteProtocolError(f"message longer than {limits.max_message_bytes} bytes")
    budget = _ObjectBudget(limits.max_objects)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            list_hook=budget.on_list,
            object_hook=budget.on_map,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.tensor.max_bytes,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"invalid msgpack: {type(exc).__name__}") from exc
