"""Signed records and chained entries: the canonical bytes that are signed and hashed.

Rules (normative layout in ``specs/ledger.md``):

* A ``Record`` is a signed statement independent of any ledger: kind, subject, payload, signer,
  time and an ``anchor``. Its signature covers ``RECORD_DOMAIN ‖ msgpack([kind, subject,
  payload, signer, time_ms, anchor])``. The owner's own records are anchored to the hash of the
  entry they follow (``anchor = prev_hash``), so the owner's signature also fixes their place in
  the chain; records received from others (verdicts) keep the anchor their signer gave them
  (empty or the hash in the signer's own ledger) and can be passed on unchanged by gossip.
* An ``Entry`` is a record at position ``seq`` of one ledger, chained by
  ``hash = BLAKE2b-256(prev_hash ‖ ENTRY_DOMAIN ‖ msgpack([seq, kind, subject, payload, signer,
  time_ms, anchor, signature]))``; the first entry's ``prev_hash`` is 32 zero bytes.
* Constructing a ``Record`` validates every field and the payload schema (``InvalidEntryError``);
  the signature is checked only by ``check_signature`` because it costs a curve operation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgpack

from darwin.protocol import Identity, PeerId, ProtocolError, verify_signature

from .entries import (
    DIGEST_SIZE,
    I64_MAX,
    MAX_PAYLOAD_BYTES,
    EntryKind,
    Payload,
    check_peer_id,
    check_subject,
    decode_payload,
    encode_payload,
    parse_kind,
)
from .errors import InvalidEntryError

__all__ = ["GENESIS_PREV_HASH", "Entry", "Record"]

RECORD_DOMAIN = b"darwin/ledger/record/1\0"
ENTRY_DOMAIN = b"darwin/ledger/entry/1\0"
WIRE_VERSION = 1
SIGNATURE_SIZE = 64
GENESIS_PREV_HASH = bytes(DIGEST_SIZE)
MAX_RECORD_WIRE_BYTES = MAX_PAYLOAD_BYTES + 1024  # payload plus ids, signature and keys
_RECORD_KEYS = ("v", "kind", "subject", "payload", "signer", "time_ms", "anchor", "signature")
_ENTRY_KEYS = ("v", "seq", "prev_hash", "hash", "record")


def _pack(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _unpack_map(data: bytes, keys: tuple[str, ...], what: str, max_bytes: int) -> dict[str, Any]:
    if not isinstance(data, bytes) or len(data) > max_bytes:
        raise InvalidEntryError(f"{what} must be at most {max_bytes} bytes")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidEntryError(f"{what} is not valid msgpack: {type(exc).__name__}") from exc
    if not isinstance(obj, dict) or set(obj) != set(keys):
        raise InvalidEntryError(f"{what} must be a map with keys {list(keys)}")
    if obj["v"] != WIRE_VERSION:
        raise InvalidEntryError(f"{what} has unknown version {obj['v']!r}")
    return obj


def blake2b_256(data: bytes) -> bytes:
    """BLAKE2b with a 32-byte digest."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


@dataclass(frozen=True)
class Record:
    """A signed statement: what an entry holds apart from its place in a ledger.

    Raises (on construction):
        InvalidEntryError: if a field has the wrong type or size, the subject does not suit the
            kind, or the payload is not the canonical encoding of a valid payload of the kind.
    """

    kind: EntryKind
    subject: str  # the peer id the record is about, or "" (genesis, checkpoint)
    payload: bytes  # canonical msgpack of the kind's payload map
    signer: PeerId
    time_ms: int  # the signer's clock, milliseconds since the Unix epoch
    anchor: bytes  # b"" or a 32-byte hash: the entry the signer appended it after
    signature: bytes
    body: Payload = field(init=False, repr=False, compare=False)  # the decoded payload

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_kind(self.kind))
        check_subject(self.kind, self.subject)
        check_peer_id("signer", self.signer)
        if not isinstance(self.time_ms, int) or isinstance(self.time_ms, bool) \
                or not 0 <= self.time_ms <= I64_MAX:
            raise InvalidEntryError("time_ms must be an int in [0, 2**63)")
        if not isinstance(self.anchor, bytes) or len(self.anchor) not in (0, DIGEST_SIZE):
            raise InvalidEntryError(f"anchor must be empty or {DIGEST_SIZE} bytes")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_SIZE:
            raise InvalidEntryError(f"signature must be {SIGNATURE_SIZE} bytes")
        object.__setattr__(self, "body", decode_payload(self.kind, self.payload))

    @classmethod
    def sign(
        cls,
        identity: Identity,
        kind: EntryKind,
        subject: str,
        payload: Payload | dict[str, object],
        *,
        time_ms: int,
        anchor: bytes = b"",
    ) -> Record:
        """Build and sign a record with ``identity``.

        Raises:
            InvalidEntryError: if the payload, subject or time is invalid for ``kind``.
        """
        kind = parse_kind(kind)
        data = encode_payload(kind, payload)
        message = signed_bytes(kind, subject, data, identity.peer_id, time_ms, anchor)
        return cls(kind, subject, data, identity.peer_id, time_ms, anchor,
                   identity.sign(message))

    def signed_bytes(self) -> bytes:
        """The bytes the signer signed."""
        return signed_bytes(self.kind, self.subject, self.payload, self.signer, self.time_ms,
                            self.anchor)

    def check_signature(self) -> None:
        """Check the signer's signature.

        Raises:
            InvalidEntryError: if it does not verify.
        """
        try:
            verify_signature(self.signer, self.signed_bytes(), self.signature)
        except ProtocolError as exc:
            raise InvalidEntryError(f"bad signature: {exc.reason}") from exc

    def to_wire(self) -> bytes:
        """The record as a msgpack map, for gossip and catch-up."""
        return _pack({"v": WIRE_VERSION, "kind": str(self.kind), "subject": self.subject,
                      "payload": self.payload, "signer": self.signer, "time_ms": self.time_ms,
                      "anchor": self.anchor, "signature": self.signature})

    @classmethod
    def from_wire(cls, data: bytes) -> Record:
        """Decode a record a peer sent (the signature is not checked here).

        Raises:
            InvalidEntryError: if the bytes are oversized, malformed or invalid.
        """
        obj = _unpack_map(data, _RECORD_KEYS, "record", MAX_RECORD_WIRE_BYTES)
        return cls(obj["kind"], obj["subject"], obj["payload"], obj["signer"], obj["time_ms"],
                   obj["anchor"], obj["signature"])


def signed_bytes(kind: EntryKind, subject: str, payload: bytes, signer: str, time_ms: int,
                 anchor: bytes) -> bytes:
    """``RECORD_DOMAIN ‖ msgpack([kind, subject, payload, signer, time_ms, anchor])``."""
    return RECORD_DOMAIN + _pack([str(kind), subject, payload, signer, time_ms, anchor])


@dataclass(frozen=True)
class Entry:
    """A record at position ``seq`` of a ledger, chained to the entry before it.

    Raises (on construction):
        InvalidEntryError: if ``seq`` is not positive or a hash is not 32 bytes.
    """

    seq: int
    record: Record
    prev_hash: bytes
    hash: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) \
                or not 1 <= self.seq <= I64_MAX:
            raise InvalidEntryError("seq must be a positive int")
        for name in ("prev_hash", "hash"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
                raise InvalidEntryError(f"{name} must be {DIGEST_SIZE} bytes")

    @classmethod
    def chain(cls, seq: int, record: Record, prev_hash: bytes) -> Entry:
        """Place ``record`` at ``seq`` after the entry whose hash is ``prev_hash``."""
        return cls(seq, record, prev_hash, entry_hash(seq, record, prev_hash))

    @property
    def kind(self) -> EntryKind:
        return self.record.kind

    @property
    def subject(self) -> str:
        return self.record.subject

    @property
    def payload(self) -> bytes:
        return self.record.payload

    @property
    def body(self) -> Payload:
        return self.record.body

    @property
    def signer(self) -> PeerId:
        return self.record.signer

    @property
    def signature(self) -> bytes:
        return self.record.signature

    @property
    def time_ms(self) -> int:
        return self.record.time_ms

    @property
    def anchor(self) -> bytes:
        return self.record.anchor

    def to_wire(self) -> bytes:
        """The entry as a msgpack map (the signed head file, catch-up answers)."""
        return _pack({"v": WIRE_VERSION, "seq": self.seq, "prev_hash": self.prev_hash,
                      "hash": self.hash, "record": self.record.to_wire()})

    @classmethod
    def from_wire(cls, data: bytes) -> Entry:
        """Decode an entry; the stated hash must be the recomputed one.

        Raises:
            InvalidEntryError: if the bytes are oversized, malformed, invalid, or the hash does
                not match.
        """
        obj = _unpack_map(data, _ENTRY_KEYS, "entry", MAX_RECORD_WIRE_BYTES + 256)
        entry = cls(obj["seq"], Record.from_wire(obj["record"]), obj["prev_hash"], obj["hash"])
        if entry.hash != entry_hash(entry.seq, entry.record, entry.prev_hash):
            raise InvalidEntryError("entry hash does not match its content")
        return entry

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view: bytes as hex, the payload both decoded and as raw msgpack hex."""
        return {
            "seq": self.seq,
            "kind": str(self.kind),
            "subject": self.subject,
            "signer": self.signer,
            "time_ms": self.time_ms,
            "payload": _jsonable(msgpack.unpackb(self.payload, raw=False)),
            "payload_msgpack": self.payload.hex(),
            "anchor": self.anchor.hex(),
            "signature": self.signature.hex(),
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        }


def entry_hash(seq: int, record: Record, prev_hash: bytes) -> bytes:
    """``BLAKE2b-256(prev_hash ‖ ENTRY_DOMAIN ‖ msgpack([seq, ...record, signature]))``."""
    body = _pack([seq, str(record.kind), record.subject, record.payload, record.signer,
                  record.time_ms, record.anchor, record.signature])
    return blake2b_256(prev_hash + ENTRY_DOMAIN + body)


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
