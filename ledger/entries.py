"""Entry kinds and their payload schemas.

Rules (normative layout in ``specs/ledger.md``):

* Every entry has a ``kind`` from ``EntryKind`` and a payload: a msgpack map whose key set is
  fixed per kind. ``encode_payload`` validates a payload and returns its *canonical* bytes (keys
  sorted, smallest msgpack forms); ``decode_payload`` validates stored or received bytes and
  refuses any byte string that is not the canonical encoding of a valid payload, so one payload
  has exactly one byte representation and a changed byte is never silently accepted.
* The ``subject`` of an entry is the peer id it is about. Genesis and checkpoint entries are
  about no one (``""``); every other kind names a valid ed25519 peer id.
* Only verdicts may be signed by someone else than the ledger owner (``RECEIVABLE_KINDS``);
  observations, fraud-proof checks, refutations, checkpoints and the genesis are the owner's own
  statements (``OWNER_KINDS``).
* A verdict's ``refs`` is opaque to the ledger (the verifier defines what it references); it is
  bounded in keys, types and size only.
* Every failure raises ``InvalidEntryError``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, TypeAlias

import msgpack

from darwin.protocol import ProtocolError, public_key_from_peer_id

from .errors import InvalidEntryError

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "OWNER_KINDS",
    "RECEIVABLE_KINDS",
    "AccusationRefuted",
    "Checkpoint",
    "EntryKind",
    "Failure",
    "FraudProof",
    "FraudStatus",
    "Genesis",
    "Latency",
    "Payload",
    "ProtocolViolation",
    "RefValue",
    "Success",
    "Verdict",
    "VerdictOutcome",
    "check_subject",
    "decode_payload",
    "encode_payload",
]

LEDGER_FORMAT = 1
DIGEST_SIZE = 32
I64_MAX = 2**63 - 1
MAX_PAYLOAD_BYTES = 4096  # a payload is a small statement; proofs are referenced by hash
MAX_REASON_CHARS = 256
MAX_LATENCY_MS = 3_600_000  # one hour: anything slower is a failure, not a latency
MAX_REFS = 16
MAX_REF_KEY_CHARS = 64
MAX_REF_STR_CHARS = 512
MAX_REF_BYTES = 512
MAX_PEER_ID_CHARS = 64

RefValue: TypeAlias = str | int | bytes | bool | None


class EntryKind(StrEnum):
    """What an entry states; the value is what is stored in the ``kind`` column."""

    GENESIS = "genesis"  # seq 1: names the owner (its signer) and the ledger format
    SUCCESS = "success"  # the owner saw the subject serve a request correctly
    FAILURE = "failure"  # the subject failed a request (timeout, dropped stream, error frame)
    LATENCY = "latency"  # how long the subject took; informs routing, not trust
    PROTOCOL_VIOLATION = "protocol_violation"  # the subject broke the protocol (bad receipt...)
    VERDICT = "verdict"  # a verifier's signed judgement of one challenge of the subject
    FRAUD_PROOF = "fraud_proof"  # the owner re-checked (or could not) a proof against the subject
    ACCUSATION_REFUTED = "accusation_refuted"  # the owner found an accusation to be false
    CHECKPOINT = "checkpoint"  # the owner signs the head (seq, hash) before this entry


RECEIVABLE_KINDS = frozenset({EntryKind.VERDICT})
OWNER_KINDS = frozenset(EntryKind) - RECEIVABLE_KINDS
_NO_SUBJECT_KINDS = frozenset({EntryKind.GENESIS, EntryKind.CHECKPOINT})


class VerdictOutcome(StrEnum):
    """The result of one challenge."""

    PASS = "pass"
    FAIL = "fail"
    UNRESPONSIVE = "unresponsive"


class FraudStatus(StrEnum):
    """Whether the owner re-ran the layer and found the proof to hold."""

    CONFIRMED = "confirmed"  # re-checked with the layer's weights: the subject cheated
    UNCONFIRMED = "unconfirmed"  # could not re-check (does not hold the layer): recorded only


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise InvalidEntryError(reason)


def _require_int(name: str, value: object, low: int, high: int) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool),
             f"{name} must be an int")
    assert isinstance(value, int)
    _require(low <= value <= high, f"{name} must be in [{low}, {high}], got {value}")
    return value


def _require_text(name: str, value: object, max_chars: int, *, empty: bool = False) -> str:
    _require(isinstance(value, str), f"{name} must be a str")
    assert isinstance(value, str)
    _require(empty or value != "", f"{name} must not be empty")
    _require(len(value) <= max_chars, f"{name} is longer than {max_chars} characters")
    return value


def _require_digest(name: str, value: object) -> bytes:
    _require(isinstance(value, bytes) and len(value) == DIGEST_SIZE,
             f"{name} must be {DIGEST_SIZE} bytes")
    assert isinstance(value, bytes)
    return value


def check_peer_id(name: str, value: object) -> str:
    """Check that ``value`` is a valid ed25519 libp2p peer id.

    Raises:
        InvalidEntryError: if it is not.
    """
    text = _require_text(name, value, MAX_PEER_ID_CHARS)
    try:
        public_key_from_peer_id(text)
    except ProtocolError as exc:
        raise InvalidEntryError(f"{name} is not a valid peer id: {exc.reason}") from exc
    return text


def check_subject(kind: EntryKind, subject: object) -> str:
    """Check the subject column of an entry of ``kind``.

    Raises:
        InvalidEntryError: if genesis/checkpoint name a subject, or another kind does not name a
            valid peer id.
    """
    if kind in _NO_SUBJECT_KINDS:
        _require(subject == "", f"a {kind} entry has no subject")
        return ""
    return check_peer_id("subject", subject)


@dataclass(frozen=True)
class Genesis:
    """The first entry: its signer is the ledger's owner."""

    KIND: ClassVar[EntryKind] = EntryKind.GENESIS
    format: int = LEDGER_FORMAT

    def __post_init__(self) -> None:
        _require(self.format == LEDGER_FORMAT, f"unknown ledger format {self.format!r}")


@dataclass(frozen=True)
class Success:
    """The subject served a request and its receipts checked."""

    KIND: ClassVar[EntryKind] = EntryKind.SUCCESS


@dataclass(frozen=True)
class Failure:
    """The subject failed a request."""

    KIND: ClassVar[EntryKind] = EntryKind.FAILURE
    reason: str

    def __post_init__(self) -> None:
        _require_text("reason", self.reason, MAX_REASON_CHARS)


@dataclass(frozen=True)
class Latency:
    """How long one request to the subject took, in milliseconds."""

    KIND: ClassVar[EntryKind] = EntryKind.LATENCY
    latency_ms: int

    def __post_init__(self) -> None:
        _require_int("latency_ms", self.latency_ms, 0, MAX_LATENCY_MS)


@dataclass(frozen=True)
class ProtocolViolation:
    """The subject broke the protocol (a bad receipt, a malformed frame...)."""

    KIND: ClassVar[EntryKind] = EntryKind.PROTOCOL_VIOLATION
    reason: str

    def __post_init__(self) -> None:
        _require_text("reason", self.reason, MAX_REASON_CHARS)


def _check_refs(refs: object) -> dict[str, RefValue]:
    _require(isinstance(refs, dict), "refs must be a map")
    assert isinstance(refs, dict)
    _require(len(refs) <= MAX_REFS, f"refs has more than {MAX_REFS} keys")
    for key, value in refs.items():
        _require_text("refs key", key, MAX_REF_KEY_CHARS)
        if isinstance(value, str):
            _require_text(f"refs[{key!r}]", value, MAX_REF_STR_CHARS, empty=True)
        elif isinstance(value, bytes):
            _require(len(value) <= MAX_REF_BYTES, f"refs[{key!r}] is over {MAX_REF_BYTES} bytes")
        elif isinstance(value, int) and not isinstance(value, bool):
            _require_int(f"refs[{key!r}]", value, -I64_MAX - 1, I64_MAX)
        else:
            _require(value is None or isinstance(value, bool),
                     f"refs[{key!r}] must be str, bytes, int, bool or nil")
    return dict(sorted(refs.items()))  # sorted keys: the canonical encoding


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one challenge; the verifier is the entry's signer."""

    KIND: ClassVar[EntryKind] = EntryKind.VERDICT
    outcome: VerdictOutcome
    refs: dict[str, RefValue] = field(default_factory=dict)  # opaque: receipt/proof references

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "outcome", VerdictOutcome(self.outcome))
        except ValueError as exc:
            raise InvalidEntryError(f"unknown verdict outcome {self.outcome!r}") from exc
        object.__setattr__(self, "refs", _check_refs(self.refs))


@dataclass(frozen=True)
class FraudProof:
    """The owner's check of a fraud proof that ``accuser`` raised against the subject."""

    KIND: ClassVar[EntryKind] = EntryKind.FRAUD_PROOF
    status: FraudStatus
    proof_hash: bytes  # BLAKE3-256 of the proof's bytes, which are kept elsewhere
    accuser: str

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "status", FraudStatus(self.status))
        except ValueError as exc:
            raise InvalidEntryError(f"unknown fraud proof status {self.status!r}") from exc
        _require_digest("proof_hash", self.proof_hash)
        check_peer_id("accuser", self.accuser)


@dataclass(frozen=True)
class AccusationRefuted:
    """The owner re-ran the layer: ``accuser``'s proof against the subject does not hold."""

    KIND: ClassVar[EntryKind] = EntryKind.ACCUSATION_REFUTED
    accuser: str
    proof_hash: bytes

    def __post_init__(self) -> None:
        check_peer_id("accuser", self.accuser)
        _require_digest("proof_hash", self.proof_hash)


@dataclass(frozen=True)
class Checkpoint:
    """The owner's signature over the head of the chain just before this entry."""

    KIND: ClassVar[EntryKind] = EntryKind.CHECKPOINT
    head_seq: int
    head_hash: bytes

    def __post_init__(self) -> None:
        _require_int("head_seq", self.head_seq, 1, I64_MAX)
        _require_digest("head_hash", self.head_hash)


Payload: TypeAlias = (Genesis | Success | Failure | Latency | ProtocolViolation | Verdict
                      | FraudProof | AccusationRefuted | Checkpoint)

_PAYLOAD_TYPES: dict[EntryKind, type[Payload]] = {
    cls.KIND: cls
    for cls in (Genesis, Success, Failure, Latency, ProtocolViolation, Verdict, FraudProof,
                AccusationRefuted, Checkpoint)
}
_FIELDS: dict[EntryKind, tuple[str, ...]] = {
    EntryKind.GENESIS: ("format",),
    EntryKind.SUCCESS: (),
    EntryKind.FAILURE: ("reason",),
    EntryKind.LATENCY: ("latency_ms",),
    EntryKind.PROTOCOL_VIOLATION: ("reason",),
    EntryKind.VERDICT: ("outcome", "refs"),
    EntryKind.FRAUD_PROOF: ("status", "proof_hash", "accuser"),
    EntryKind.ACCUSATION_REFUTED: ("accuser", "proof_hash"),
    EntryKind.CHECKPOINT: ("head_seq", "head_hash"),
}


def parse_kind(kind: object) -> EntryKind:
    """The ``EntryKind`` named by ``kind``.

    Raises:
        InvalidEntryError: if it names none.
    """
    try:
        return EntryKind(kind if isinstance(kind, str) else repr(kind))
    except ValueError as exc:
        raise InvalidEntryError(f"unknown entry kind {kind!r}") from exc


def _to_obj(payload: Payload) -> dict[str, object]:
    obj: dict[str, object] = {}
    for name in _FIELDS[payload.KIND]:
        value = getattr(payload, name)
        obj[name] = str(value) if isinstance(value, StrEnum) else value
    return obj


def _from_obj(kind: EntryKind, obj: object) -> Payload:
    _require(isinstance(obj, dict), f"a {kind} payload must be a map")
    assert isinstance(obj, dict)
    expected = set(_FIELDS[kind])
    keys = set(obj)
    _require(keys == expected, f"a {kind} payload has keys {sorted(expected)}, "
                               f"got {sorted(str(key) for key in keys)[:8]}")
    try:
        return _PAYLOAD_TYPES[kind](**obj)
    except TypeError as exc:  # a field given a value the constructor cannot take
        raise InvalidEntryError(f"invalid {kind} payload: {exc}") from exc


def _pack(obj: dict[str, object]) -> bytes:
    try:
        packed: bytes = msgpack.packb(obj, use_bin_type=True, strict_types=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidEntryError(f"payload cannot be encoded: {exc}") from exc
    return packed


def encode_payload(kind: EntryKind, payload: Payload | Mapping[str, object]) -> bytes:
    """Validate a payload of ``kind`` and return its canonical msgpack bytes.

    Args:
        kind: the entry kind the payload belongs to.
        payload: the typed payload, or a plain map of its fields.

    Raises:
        InvalidEntryError: if the payload does not match the kind's schema or is too large.
    """
    if not isinstance(payload, Mapping):
        _require(kind == payload.KIND, f"a {payload.KIND} payload given for a {kind} entry")
        typed = payload
    else:
        typed = _from_obj(kind, dict(payload))
    canonical = _pack(dict(sorted(_to_obj(typed).items())))
    _require(len(canonical) <= MAX_PAYLOAD_BYTES,
             f"payload is over {MAX_PAYLOAD_BYTES} bytes")
    return canonical


def decode_payload(kind: EntryKind, data: bytes) -> Payload:
    """Validate stored or received payload bytes of ``kind`` and return the typed payload.

    Payloads that repeat (every ``success``, a latency of the same milliseconds) are checked
    once: the result of the same ``(kind, bytes)`` is reused from a bounded cache (payloads are
    frozen), which makes reading a long ledger much faster. Verdicts, whose refs make nearly
    every payload unique, are not cached.

    Raises:
        InvalidEntryError: if the bytes are too long, not msgpack, not a valid payload of
            ``kind``, or not the canonical encoding of that payload.
    """
    _require(isinstance(data, bytes), "payload must be bytes")
    if kind == EntryKind.VERDICT:
        return _decode_payload(kind, data)
    return _decode_repeated(kind, data)


def _decode_payload(kind: EntryKind, data: bytes) -> Payload:
    _require(len(data) <= MAX_PAYLOAD_BYTES, f"payload is over {MAX_PAYLOAD_BYTES} bytes")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidEntryError(f"payload is not valid msgpack: {type(exc).__name__}") from exc
    typed = _from_obj(kind, obj)
    _require(encode_payload(kind, typed) == data, "payload is not in canonical encoding")
    return typed


_decode_repeated = functools.lru_cache(maxsize=4096)(_decode_payload)
