"""Signed receipts: a node's commitment to what its span computed in one step.

Rules (layout in ``specs/receipts-and-traces.md``):

* A ``ReceiptBody`` names the model, adapter, session, step, span, positions and node, and
  commits to the span's input, its output and every layer input through ``layer_root``: the
  Merkle root over ``[input of layer span_start, ..., input of layer span_end - 1, output]``,
  so leaf 0 is ``input_hash`` and the last leaf is ``output_hash``.
* The body names its commitment hash (``hash_alg``, always ``HASH_ALG``): a receipt of the
  BLAKE2b-256 scheme before it (no ``hash_alg``, signed under ``darwin/receipt/1``) is refused
  by name when decoded, never checked against BLAKE3 digests.
* The signed bytes are ``RECEIPT_DOMAIN`` followed by the canonical msgpack array of the body
  fields in ``BODY_FIELDS`` order; the signer is ``node_id``'s ed25519 key.
* Decoding checks the form of a receipt only; ``Receipt.verify`` checks the signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from .errors import LocalProtocolError, RemoteProtocolError, blame_peer
from .hashing import HASH_ALG, check_hash_alg
from .identity import SIGNATURE_SIZE, Identity, PeerId, public_key_from_peer_id, verify_signature
from .ids import (
    DIGEST_SIZE,
    SESSION_ID_SIZE,
    AdapterId,
    ModelId,
    SessionId,
    optional_adapter_id,
)
from .merkle import merkle_root
from .schema import (
    U32_MAX,
    U64_MAX,
    MapReader,
    require_bytes,
    require_int,
    require_optional_bytes,
    require_span,
)
from .wire import pack

RECEIPT_DOMAIN = b"darwin/receipt/2\0"


def layer_root_for(layer_input_digests: Sequence[bytes], output_digest: bytes) -> bytes:
    """The ``layer_root`` of a span: Merkle root over its layer inputs then its output.

    Args:
        layer_input_digests: the tensor digest of the input of each layer of the span, in
            order (the first is the span's input).
        output_digest: the tensor digest of the span's output.

    Raises:
        LocalProtocolError: if there is no layer or a digest is not 32 bytes.
    """
    if not layer_input_digests:
        raise LocalProtocolError("a span has at least one layer")
    leaves = [*layer_input_digests, output_digest]
    for leaf in leaves:
        require_bytes("layer digest", leaf, DIGEST_SIZE)
    return merkle_root(leaves)


@dataclass(frozen=True)
class ReceiptBody:
    """The signed content of a receipt (every field but the signature).

    Raises (on construction):
        LocalProtocolError: if a field has the wrong type, size or range.
    """

    model_id: ModelId  # 32-byte model id
    adapter_id: AdapterId | None  # 32-byte adapter id, None without adapter
    session_id: SessionId  # 16 bytes, shared by every hop of the session
    step: int  # 0-based step of the session
    span_start: int  # first layer served, inclusive
    span_end: int  # last layer served, exclusive
    input_hash: bytes  # tensor digest of the span's input
    output_hash: bytes  # tensor digest of the span's output
    layer_root: bytes  # see layer_root_for
    position_start: int  # position of this step's first token
    position_count: int  # number of this step's tokens
    node_id: PeerId  # the signer
    time_ms: int  # signer's clock, Unix milliseconds
    retention_s: int  # seconds the activations are kept for challenges
    hash_alg: str = HASH_ALG  # the hash of every digest above; no other is accepted

    def __post_init__(self) -> None:
        require_bytes("model_id", self.model_id, DIGEST_SIZE)
        require_optional_bytes("adapter_id", self.adapter_id, DIGEST_SIZE)
        require_bytes("session_id", self.session_id, SESSION_ID_SIZE)
        require_int("step", self.step, 0, U32_MAX)
        require_span(self.span_start, self.span_end)
        for name in ("input_hash", "output_hash", "layer_root"):
            require_bytes(name, getattr(self, name), DIGEST_SIZE)
        require_int("position_start", self.position_start, 0, U32_MAX)
        require_int("position_count", self.position_count, 1, U32_MAX + 1 - self.position_start)
        require_int("time_ms", self.time_ms, 0, U64_MAX)
        require_int("retention_s", self.retention_s, 0, U32_MAX)
        if self.hash_alg != HASH_ALG:
            raise LocalProtocolError(f"hash_alg must be {HASH_ALG}")
        try:
            public_key_from_peer_id(self.node_id)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"node_id: {exc.reason}") from exc

    def signing_bytes(self) -> bytes:
        """The exact bytes the node signs."""
        return RECEIPT_DOMAIN + pack([getattr(self, name) for name in BODY_FIELDS])

    def sign(self, identity: Identity) -> Receipt:
        """Sign this body.

        Raises:
            LocalProtocolError: if ``identity`` is not ``node_id``.
        """
        if identity.peer_id != self.node_id:
            raise LocalProtocolError(f"{identity.peer_id} cannot sign for {self.node_id}")
        return Receipt(self, identity.sign(self.signing_bytes()))


BODY_FIELDS = tuple(field.name for field in fields(ReceiptBody))


@dataclass(frozen=True)
class Receipt:
    """A receipt body and its node's ed25519 signature.

    Raises (on construction):
        LocalProtocolError: if ``body`` is not a ``ReceiptBody`` or the signature not 64 bytes.
    """

    body: ReceiptBody
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.body, ReceiptBody):
            raise LocalProtocolError("body must be a ReceiptBody")
        require_bytes("signature", self.signature, SIGNATURE_SIZE)

    def verify(self) -> None:
        """Check the signature against ``body.node_id``.

        Raises:
            SignatureError: if the signature does not verify.
        """
        verify_signature(self.body.node_id, self.body.signing_bytes(), self.signature)

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this receipt: the body fields and ``signature``."""
        obj = {name: getattr(self.body, name) for name in BODY_FIELDS}
        obj["signature"] = self.signature
        return obj

    @classmethod
    def from_obj(cls, obj: object) -> Receipt:
        """Decode a receipt a peer sent; does not check the signature.

        Raises:
            RemoteProtocolError: if the map names no or another ``hash_alg`` (a receipt of
                another commitment scheme), is malformed, or a field is out of range.
        """
        check_hash_alg(obj, "receipt")
        reader = MapReader(obj, (*BODY_FIELDS, "signature"), "receipt")
        with blame_peer("receipt"):
            body = ReceiptBody(
                model_id=ModelId(reader.binary("model_id")),
                adapter_id=optional_adapter_id(reader.optional_binary("adapter_id")),
                session_id=SessionId(reader.binary("session_id")),
                step=reader.integer("step"),
                span_start=reader.integer("span_start"),
                span_end=reader.integer("span_end"),
                input_hash=reader.binary("input_hash"),
                output_hash=reader.binary("output_hash"),
                layer_root=reader.binary("layer_root"),
                position_start=reader.integer("position_start"),
                position_count=reader.integer("position_count"),
                node_id=PeerId(reader.text("node_id")),
                time_ms=reader.integer("time_ms"),
                retention_s=reader.integer("retention_s"),
                hash_alg=reader.text("hash_alg"),
            )
            return cls(body, reader.binary("signature"))
