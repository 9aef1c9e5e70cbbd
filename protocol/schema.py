"""Strict field access and field validation for wire objects.

Rules:

* ``MapReader`` reads a decoded msgpack map whose key set is fixed: a missing or extra key, or
  a value of the wrong msgpack type, raises ``RemoteProtocolError``. It checks types only;
  ranges and sizes are checked by the dataclass the fields are given to.
* The ``require_*`` functions validate a dataclass field on construction and raise
  ``LocalProtocolError``; decoders wrap construction in ``blame_peer`` so the same failure from
  the wire becomes a ``RemoteProtocolError``.
* ``bool`` is never accepted as an int.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from .errors import LocalProtocolError, RemoteProtocolError

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1
MAX_LAYERS = 65535
_SHOWN_CHARS = 40
_SHOWN_KEYS = 4
_T = TypeVar("_T")


def shown(value: object) -> str:
    """A short repr of an untrusted value, safe to put in an error message."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


class MapReader:
    """Typed access to the fields of one decoded msgpack map with a fixed key set."""

    def __init__(self, obj: object, keys: Collection[str], what: str) -> None:
        """Check that ``obj`` is a map with exactly ``keys``.

        Raises:
            RemoteProtocolError: if ``obj`` is not a map or its keys differ from ``keys``.
        """
        if not isinstance(obj, dict):
            raise RemoteProtocolError(f"{what}: expected a map, got {type(obj).__name__}")
        missing = sorted(set(keys) - obj.keys())[:_SHOWN_KEYS]
        extra = sorted(shown(key) for key in obj.keys() - set(keys))[:_SHOWN_KEYS]
        if missing or extra:
            raise RemoteProtocolError(f"{what}: missing keys {missing}, unexpected keys {extra}")
        self._obj: dict[str, object] = obj
        self._what = what

    def _typed(self, key: str, kind: type[_T], name: str) -> _T:
        value = self._obj[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RemoteProtocolError(f"{self._what}.{key}: expected {name}, got {shown(value)}")
        return value

    def value(self, key: str) -> object:
        """The raw value of ``key``, for a nested object that validates itself."""
        return self._obj[key]

    def integer(self, key: str) -> int:
        """The int at ``key`` (raises ``RemoteProtocolError`` for any other type)."""
        return self._typed(key, int, "an int")

    def number(self, key: str) -> float:
        """The float at ``key`` (raises ``RemoteProtocolError`` for any other type)."""
        return self._typed(key, float, "a float")

    def text(self, key: str) -> str:
        """The str at ``key`` (raises ``RemoteProtocolError`` for any other type)."""
        return self._typed(key, str, "a str")

    def binary(self, key: str) -> bytes:
        """The bin at ``key`` (raises ``RemoteProtocolError`` for any other type)."""
        return self._typed(key, bytes, "bytes")

    def optional_binary(self, key: str) -> bytes | None:
        """The bin or nil at ``key`` (raises ``RemoteProtocolError`` for any other type)."""
        return None if self._obj[key] is None else self.binary(key)

    def array(self, key: str) -> list[object]:
        """The array at ``key`` (raises ``RemoteProtocolError`` for any other type)."""
        return self._typed(key, list, "an array")

    def array_of(self, key: str, kind: type[_T], name: str) -> list[_T]:
        """The array of ``kind`` elements at ``key``.

        Raises:
            RemoteProtocolError: if the value is not an array or an element is not ``kind``.
        """
        items = self.array(key)
        if not all(isinstance(item, kind) and not isinstance(item, bool) for item in items):
            raise RemoteProtocolError(f"{self._what}.{key}: expected an array of {name}")
        return [item for item in items if isinstance(item, kind)]


def require_int(name: str, value: object, low: int, high: int) -> None:
    """Raises LocalProtocolError: unless ``value`` is an int (not bool) in ``[low, high]``."""
    if type(value) is not int or not low <= value <= high:
        raise LocalProtocolError(f"{name} must be an int in [{low}, {high}], got {shown(value)}")


def require_bytes(name: str, value: object, size: int) -> None:
    """Raises LocalProtocolError: unless ``value`` is ``bytes`` of exactly ``size``."""
    if not isinstance(value, bytes) or len(value) != size:
        raise LocalProtocolError(f"{name} must be {size} bytes, got {shown(value)}")


def require_optional_bytes(name: str, value: object, size: int) -> None:
    """Raises LocalProtocolError: unless ``value`` is None or ``bytes`` of exactly ``size``."""
    if value is not None:
        require_bytes(name, value, size)


def require_text(name: str, value: object, max_chars: int) -> None:
    """Raises LocalProtocolError: unless ``value`` is a str of at most ``max_chars``."""
    if not isinstance(value, str) or len(value) > max_chars:
        raise LocalProtocolError(f"{name} must be a str of at most {max_chars} characters")


def require_span(start: object, end: object) -> None:
    """Raises LocalProtocolError: unless ``0 <= start < end <= MAX_LAYERS`` (ints)."""
    require_int("span_start", start, 0, MAX_LAYERS - 1)
    require_int("span_end", end, 1, MAX_LAYERS)
    assert isinstance(start, int) and isinstance(end, int)
    if start >= end:
        raise LocalProtocolError(f"span [{start}, {end}) is empty")
