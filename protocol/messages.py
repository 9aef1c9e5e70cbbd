"""The messages of the forward protocol (``/darwin/forward/1``) and the info protocol.

Rules (layout in ``specs/wire-format.md``):

* Every message is one msgpack map with ``"v"`` (``PROTOCOL_VERSION``), ``"kind"`` and
  exactly the fields of its dataclass; nested tensors and receipts are maps of their own.
* Messages are frozen dataclasses that validate on construction (``LocalProtocolError``);
  ``decode`` and ``from_wire`` raise ``RemoteProtocolError`` for anything a peer sent that is
  malformed: unknown version or kind, missing or extra keys, wrong types, out-of-range values,
  oversize frames, or a tensor that does not match its declared hash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import Enum
from typing import ClassVar, Self

from .errors import LocalProtocolError, RemoteProtocolError, blame_peer
from .identity import PeerId, public_key_from_peer_id
from .ids import DIGEST_SIZE, SESSION_ID_SIZE, AdapterId, ModelId, SessionId, optional_adapter_id
from .receipt import Receipt
from .schema import (
    U32_MAX,
    MapReader,
    require_bytes,
    require_int,
    require_optional_bytes,
    require_span,
    require_text,
    shown,
)
from .tensors import DType, WireTensor
from .wire import PROTOCOL_VERSION, WireLimits, pack, unpack

DEFAULT_LIMITS = WireLimits()
MAX_SESSION_LENGTH = 2**24
MAX_ERROR_CHARS = 1024
MAX_VERSION_CHARS = 64
MAX_PUSH_ADDRS = 8
MAX_ADDR_CHARS = 256


class ErrorCode(Enum):
    """Why a node refused or aborted a request; the value is the wire name."""

    BAD_REQUEST = "bad_request"  # malformed or out-of-order message
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_MODEL = "unknown_model"
    ADAPTER_UNAVAILABLE = "adapter_unavailable"
    SPAN_UNAVAILABLE = "span_unavailable"  # the node does not serve the requested layers
    UNKNOWN_SESSION = "unknown_session"
    NOT_FOUND = "not_found"  # the node does not hold what was asked for (a proof by hash)
    LENGTH_EXCEEDED = "length_exceeded"  # positions beyond the session's max_length
    BUSY = "busy"  # no capacity now; retry elsewhere
    PUSH_FAILED = "push_failed"  # the session's node-to-node link failed; nobody is blamed
    INTERNAL = "internal"


@dataclass(frozen=True)
class _Message:
    """Shared wire behaviour; subclasses are frozen dataclasses with a ``KIND``."""

    KIND: ClassVar[str]

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this message."""
        obj: dict[str, object] = {"v": PROTOCOL_VERSION, "kind": self.KIND}
        for field in fields(self):
            obj[field.name] = _wire_value(getattr(self, field.name))
        return obj

    def to_wire(self) -> bytes:
        """The encoded frame of this message."""
        return pack(self.to_obj())

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode this kind of message from a msgpack map (``RemoteProtocolError``)."""
        raise NotImplementedError

    @classmethod
    def from_wire(cls, data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Self:
        """Decode a frame that must hold this kind of message.

        Raises:
            RemoteProtocolError: if the frame is malformed or holds another kind.
        """
        message = decode(data, limits)
        if not isinstance(message, cls):
            raise RemoteProtocolError(f"expected {cls.KIND}, got {message.KIND}")
        return message

    @classmethod
    def _reader(cls, obj: object) -> MapReader:
        """A reader over a map with this message's header and exactly its fields."""
        names = [field.name for field in fields(cls)]
        reader = MapReader(obj, ("v", "kind", *names), cls.KIND)
        if reader.integer("v") != PROTOCOL_VERSION or reader.text("kind") != cls.KIND:
            raise RemoteProtocolError(f"{cls.KIND}: wrong version or kind")
        return reader


def _wire_value(value: object) -> object:
    if isinstance(value, WireTensor | Receipt):
        return value.to_obj()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _require_optional_peer(name: str, value: object) -> None:
    """Raises LocalProtocolError: unless ``value`` is None or a valid peer id."""
    if value is None:
        return
    try:
        public_key_from_peer_id(value)  # type: ignore[arg-type]
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"{name}: {exc.reason}") from exc


def _optional_peer(value: object) -> PeerId | None:
    if value is not None and not isinstance(value, str):
        raise RemoteProtocolError(f"expected a peer id or nil, got {shown(value)}")
    return None if value is None else PeerId(value)


def _require_hidden(name: str, hidden: object) -> WireTensor:
    """Raises LocalProtocolError: unless ``hidden`` is a (batch, seq, hidden) tensor, dims >= 1."""
    if not isinstance(hidden, WireTensor) or len(hidden.shape) != 3 or 0 in hidden.shape:
        raise LocalProtocolError(f"{name} must be a non-empty (batch, seq, hidden) WireTensor")
    return hidden


@dataclass(frozen=True)
class OpenSession(_Message):
    """Client → node: open an inference session over layers ``[span_start, span_end)``.

    With ``push_from`` the session takes each step's input from that node's pushes (the
    previous hop, over ``/darwin/push/1``) instead of from the client; with ``push_to`` it
    pushes each step's result to that node (the next hop) before answering the client.
    """

    KIND: ClassVar[str] = "open_session"
    session_id: SessionId  # 16 bytes, the same for every hop of one inference session
    model_id: ModelId  # 32 bytes
    adapter_id: AdapterId | None  # 32 bytes, or None for the base model
    span_start: int
    span_end: int
    max_length: int  # most positions the session will hold (prompt plus generated tokens)
    push_from: PeerId | None = None  # the previous hop, whose pushes are this session's inputs
    push_to: PeerId | None = None  # the next hop, to which this session pushes its results
    push_addrs: tuple[str, ...] = ()  # multiaddrs of push_to (may be empty: the node may know)

    def __post_init__(self) -> None:
        require_bytes("session_id", self.session_id, SESSION_ID_SIZE)
        require_bytes("model_id", self.model_id, DIGEST_SIZE)
        require_optional_bytes("adapter_id", self.adapter_id, DIGEST_SIZE)
        require_span(self.span_start, self.span_end)
        require_int("max_length", self.max_length, 1, MAX_SESSION_LENGTH)
        _require_optional_peer("push_from", self.push_from)
        _require_optional_peer("push_to", self.push_to)
        if not isinstance(self.push_addrs, tuple) or len(self.push_addrs) > MAX_PUSH_ADDRS:
            raise LocalProtocolError(f"push_addrs must be a tuple of at most {MAX_PUSH_ADDRS}")
        for addr in self.push_addrs:
            require_text("push_addrs item", addr, MAX_ADDR_CHARS)
        if self.push_addrs and self.push_to is None:
            raise LocalProtocolError("push_addrs without push_to")

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        with blame_peer(cls.KIND):
            return cls(
                session_id=SessionId(reader.binary("session_id")),
                model_id=ModelId(reader.binary("model_id")),
                adapter_id=optional_adapter_id(reader.optional_binary("adapter_id")),
                span_start=reader.integer("span_start"),
                span_end=reader.integer("span_end"),
                max_length=reader.integer("max_length"),
                push_from=_optional_peer(reader.value("push_from")),
                push_to=_optional_peer(reader.value("push_to")),
                push_addrs=tuple(reader.array_of("push_addrs", str, "str")),
            )


@dataclass(frozen=True)
class SessionOpened(_Message):
    """Node → client: the session is open with these terms."""

    KIND: ClassVar[str] = "session_opened"
    session_id: SessionId
    span_start: int
    span_end: int
    max_length: int  # granted, at most the requested length
    retention_s: int  # seconds the node keeps each step's activations for challenges

    def __post_init__(self) -> None:
        require_bytes("session_id", self.session_id, SESSION_ID_SIZE)
        require_span(self.span_start, self.span_end)
        require_int("max_length", self.max_length, 1, MAX_SESSION_LENGTH)
        require_int("retention_s", self.retention_s, 0, U32_MAX)

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        with blame_peer(cls.KIND):
            return cls(
                session_id=SessionId(reader.binary("session_id")),
                span_start=reader.integer("span_start"),
                span_end=reader.integer("span_end"),
                max_length=reader.integer("max_length"),
                retention_s=reader.integer("retention_s"),
            )


@dataclass(frozen=True)
class StepRequest(_Message):
    """Client → node: run the span over the hidden states of the next positions.

    ``input_hash`` must be the tensor digest of ``hidden``; the constructor checks it.
    """

    KIND: ClassVar[str] = "step_request"
    session_id: SessionId
    step: int  # 0-based; steps of a session are consecutive
    position_start: int  # position of the first token of hidden's seq dimension
    input_hash: bytes  # tensor digest of hidden
    hidden: WireTensor  # (batch, seq, hidden)

    def __post_init__(self) -> None:
        require_bytes("session_id", self.session_id, SESSION_ID_SIZE)
        require_int("step", self.step, 0, U32_MAX)
        require_int("position_start", self.position_start, 0, U32_MAX)
        seq = _require_hidden("hidden", self.hidden).shape[1]
        require_int("position_start + seq", self.position_start + seq, 1, U32_MAX + 1)
        require_bytes("input_hash", self.input_hash, DIGEST_SIZE)
        if self.input_hash != self.hidden.digest():
            raise LocalProtocolError("input_hash is not the digest of hidden")

    @property
    def position_count(self) -> int:
        """Positions this step adds: hidden's seq length."""
        return self.hidden.shape[1]

    @classmethod
    def create(
        cls, session_id: SessionId, step: int, position_start: int, hidden: WireTensor
    ) -> StepRequest:
        """Build a request, computing ``input_hash`` from ``hidden`` (``LocalProtocolError``)."""
        return cls(session_id, step, position_start, hidden.digest(), hidden)

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        hidden = WireTensor.from_obj(reader.value("hidden"), limits.tensor)
        with blame_peer(cls.KIND):
            return cls(
                session_id=SessionId(reader.binary("session_id")),
                step=reader.integer("step"),
                position_start=reader.integer("position_start"),
                input_hash=reader.binary("input_hash"),
                hidden=hidden,
            )


@dataclass(frozen=True)
class PushedStepRequest(_Message):
    """Client → node: run the next step on the input the previous hop pushes.

    For a session opened with ``push_from``: the pushed frame is that node's `StepResult` for
    the same step and positions; the node answers with its own `StepResult` as usual.
    """

    KIND: ClassVar[str] = "pushed_step_request"
    session_id: SessionId
    step: int
    position_start: int
    position_count: int  # the seq length the pushed input must have

    def __post_init__(self) -> None:
        require_bytes("session_id", self.session_id, SESSION_ID_SIZE)
        require_int("step", self.step, 0, U32_MAX)
        require_int("position_start", self.position_start, 0, U32_MAX)
        require_int("position_count", self.position_count, 1, U32_MAX)
        require_int("position_start + position_count", self.position_start + self.position_count,
                    1, U32_MAX + 1)

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        with blame_peer(cls.KIND):
            return cls(
                session_id=SessionId(reader.binary("session_id")),
                step=reader.integer("step"),
                position_start=reader.integer("position_start"),
                position_count=reader.integer("position_count"),
            )


@dataclass(frozen=True)
class StepResult(_Message):
    """Node → client: the span's output for one step and its signed receipt.

    The constructor checks that the receipt names this step, that its ``output_hash`` is the
    digest of ``hidden`` and that its ``position_count`` is hidden's seq length; the signature
    is checked by ``check_receipt``.
    """

    KIND: ClassVar[str] = "step_result"
    step: int
    hidden: WireTensor  # (batch, seq, hidden)
    receipt: Receipt

    def __post_init__(self) -> None:
        require_int("step", self.step, 0, U32_MAX)
        seq = _require_hidden("hidden", self.hidden).shape[1]
        if not isinstance(self.receipt, Receipt):
            raise LocalProtocolError("receipt must be a Receipt")
        body = self.receipt.body
        if body.step != self.step or body.position_count != seq:
            raise LocalProtocolError("receipt step or position_count does not match")
        if body.output_hash != self.hidden.digest():
            raise LocalProtocolError("receipt output_hash is not the digest of hidden")

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        hidden = WireTensor.from_obj(reader.value("hidden"), limits.tensor)
        receipt = Receipt.from_obj(reader.value("receipt"))
        with blame_peer(cls.KIND):
            return cls(step=reader.integer("step"), hidden=hidden, receipt=receipt)


@dataclass(frozen=True)
class StepReceipt(_Message):
    """Node → client, from a session opened with ``push_to``: the step ran and its result
    went to the next hop; here is its signed receipt (the client checks the chain of
    receipts by their hashes and never downloads the inner activations)."""

    KIND: ClassVar[str] = "step_receipt"
    step: int
    receipt: Receipt

    def __post_init__(self) -> None:
        require_int("step", self.step, 0, U32_MAX)
        if not isinstance(self.receipt, Receipt):
            raise LocalProtocolError("receipt must be a Receipt")
        if self.receipt.body.step != self.step:
            raise LocalProtocolError("receipt step does not match")

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        receipt = Receipt.from_obj(reader.value("receipt"))
        with blame_peer(cls.KIND):
            return cls(step=reader.integer("step"), receipt=receipt)


@dataclass(frozen=True)
class CloseSession(_Message):
    """Client → node: the session is over; its KV cache may be freed."""

    KIND: ClassVar[str] = "close_session"
    session_id: SessionId

    def __post_init__(self) -> None:
        require_bytes("session_id", self.session_id, SESSION_ID_SIZE)

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        with blame_peer(cls.KIND):
            return cls(session_id=SessionId(reader.binary("session_id")))


@dataclass(frozen=True)
class ErrorFrame(_Message):
    """Either side: the request failed; ``message`` is for humans and logs only."""

    KIND: ClassVar[str] = "error"
    code: ErrorCode
    message: str  # at most MAX_ERROR_CHARS characters

    def __post_init__(self) -> None:
        if not isinstance(self.code, ErrorCode):
            raise LocalProtocolError(f"code must be an ErrorCode, got {shown(self.code)}")
        require_text("message", self.message, MAX_ERROR_CHARS)

    @classmethod
    def refusal(cls, code: ErrorCode, reason: str) -> Self:
        """An error frame for ``reason`` cut to ``MAX_ERROR_CHARS`` (a reason may quote a
        peer's input, which has no such bound)."""
        return cls(code, reason[:MAX_ERROR_CHARS])

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        code = reader.text("code")
        try:
            known_code = ErrorCode(code)
        except ValueError:
            raise RemoteProtocolError(f"error: unknown code {shown(code)}") from None
        with blame_peer(cls.KIND):
            return cls(code=known_code, message=reader.text("message"))


@dataclass(frozen=True)
class InfoRequest(_Message):
    """Client → node: ask what the node serves."""

    KIND: ClassVar[str] = "info_request"

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        cls._reader(obj)
        return cls()


@dataclass(frozen=True)
class NodeInfo(_Message):
    """Node → client: what the node serves and how busy it is."""

    KIND: ClassVar[str] = "node_info"
    peer_id: PeerId
    model_id: ModelId
    span_start: int
    span_end: int
    dtype: DType  # the dtype the node computes and sends in
    load: float  # open sessions / max_sessions; finite, >= 0
    max_sessions: int
    version: str  # software version, at most MAX_VERSION_CHARS characters

    def __post_init__(self) -> None:
        try:
            public_key_from_peer_id(self.peer_id)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"peer_id: {exc.reason}") from exc
        require_bytes("model_id", self.model_id, DIGEST_SIZE)
        require_span(self.span_start, self.span_end)
        if not isinstance(self.dtype, DType):
            raise LocalProtocolError(f"dtype must be a DType, got {shown(self.dtype)}")
        if type(self.load) is not float or not math.isfinite(self.load) or self.load < 0:
            raise LocalProtocolError(f"load must be a finite float >= 0, got {shown(self.load)}")
        require_int("max_sessions", self.max_sessions, 1, U32_MAX)
        require_text("version", self.version, MAX_VERSION_CHARS)

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits) -> Self:
        """Decode (``RemoteProtocolError``)."""
        reader = cls._reader(obj)
        with blame_peer(cls.KIND):
            return cls(
                peer_id=PeerId(reader.text("peer_id")),
                model_id=ModelId(reader.binary("model_id")),
                span_start=reader.integer("span_start"),
                span_end=reader.integer("span_end"),
                dtype=DType.from_name(reader.text("dtype")),
                load=reader.number("load"),
                max_sessions=reader.integer("max_sessions"),
                version=reader.text("version"),
            )

Message = (
    OpenSession
    | SessionOpened
    | StepRequest
    | PushedStepRequest
    | StepResult
    | StepReceipt
    | CloseSession
    | ErrorFrame
    | InfoRequest
    | NodeInfo
)
_KINDS: dict[str, type[Message]] = {
    kind.KIND: kind
    for kind in (OpenSession, SessionOpened, StepRequest, PushedStepRequest, StepResult,
                 StepReceipt, CloseSession, ErrorFrame, InfoRequest, NodeInfo)
}


def encode(message: Message) -> bytes:
    """The frame of a message (same as ``message.to_wire()``)."""
    return message.to_wire()


def decode(data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Message:
    """Decode a frame a peer sent into the message its ``kind`` names.

    Raises:
        RemoteProtocolError: if the frame is oversize or not valid msgpack, the version is not
            ``PROTOCOL_VERSION``, the kind is unknown, or the message is malformed.
    """
    obj = unpack(data, limits)
    if not isinstance(obj, dict):
        raise RemoteProtocolError("a message is a msgpack map")
    version, kind = obj.get("v"), obj.get("kind")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise RemoteProtocolError(f"unsupported protocol version {shown(version)}")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise RemoteProtocolError(f"unknown message kind {shown(kind)}")
    return _KINDS[kind].from_obj(obj, limits)
