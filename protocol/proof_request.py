"""The ``/darwin/proof/1`` messages: fetch a fraud proof by its content hash.

Rules (layout in ``specs/gossip.md`` section 6):

* A fraud proof is named by ``proof_hash(bytes) = H(bytes)`` (BLAKE3-256) over its encoded form
  (``FraudProof.to_wire()``, the bytes a proof file holds). Gossip and ledgers carry only
  that hash; the bytes travel over ``/darwin/proof/1``.
* ``proof_request`` (asker → holder) names one hash; ``proof_answer`` (holder → asker)
  carries the proof's bytes exactly as stored, or the holder sends an ``error`` frame
  (``not_found``, ``busy``, ``bad_request``) instead.
* The asker trusts nothing: ``ProofAnswer.check`` refuses bytes that do not hash to the name
  asked for; decoding them as a proof is a separate, bounded step (``FraudProof.from_wire``).
* Decoding hostile input raises ``RemoteProtocolError`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .challenge import _envelope, open_envelope
from .errors import LocalProtocolError, RemoteProtocolError, blame_peer
from .hashing import hash256
from .ids import DIGEST_SIZE
from .messages import ErrorFrame
from .schema import require_bytes
from .tensors import TensorLimits
from .wire import WireLimits, pack, unpack

__all__ = [
    "MAX_PROOF_REQUEST_BYTES",
    "PROOF_ANSWER_OVERHEAD",
    "ProofAnswer",
    "ProofRequest",
    "decode_proof_answer",
    "proof_hash",
]

MAX_PROOF_REQUEST_BYTES = 128  # a request is one 32-byte hash in a small map
PROOF_ANSWER_OVERHEAD = 64  # bytes of envelope around the proof in an answer frame
_REQUEST_LIMITS = WireLimits(max_message_bytes=MAX_PROOF_REQUEST_BYTES, max_str_len=64,
                             max_map_len=4, max_objects=16)


def proof_hash(data: bytes) -> bytes:
    """The content hash that names an encoded fraud proof: ``H`` of its bytes."""
    return hash256(data)


@dataclass(frozen=True)
class ProofRequest:
    """Asker → holder: the proof whose hash is ``proof_hash``.

    Raises (on construction):
        LocalProtocolError: ``proof_hash`` is not 32 bytes.
    """

    KIND: ClassVar[str] = "proof_request"
    proof_hash: bytes

    def __post_init__(self) -> None:
        require_bytes("proof_hash", self.proof_hash, DIGEST_SIZE)

    def to_wire(self) -> bytes:
        return pack(_envelope(self.KIND, {"proof_hash": self.proof_hash}))

    @classmethod
    def from_wire(cls, data: bytes) -> ProofRequest:
        """Decode a request (raises ``RemoteProtocolError``: malformed, oversized, bad hash)."""
        reader = open_envelope(unpack(data, _REQUEST_LIMITS), cls.KIND, ("proof_hash",))
        with blame_peer(cls.KIND):
            return cls(reader.binary("proof_hash"))


@dataclass(frozen=True)
class ProofAnswer:
    """Holder → asker: the proof's bytes, as stored (``FraudProof.to_wire()``).

    Raises (on construction):
        LocalProtocolError: ``proof`` is not non-empty bytes.
    """

    KIND: ClassVar[str] = "proof_answer"
    proof: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.proof, bytes) or not self.proof:
            raise LocalProtocolError("proof must be non-empty bytes")

    def to_wire(self) -> bytes:
        return pack(_envelope(self.KIND, {"proof": self.proof}))

    def check(self, expected_hash: bytes) -> bytes:
        """The proof's bytes if they hash to ``expected_hash``.

        Raises:
            RemoteProtocolError: they do not (the holder sent another proof, or garbage).
        """
        if proof_hash(self.proof) != expected_hash:
            raise RemoteProtocolError("the proof's bytes do not hash to the hash asked for")
        return self.proof


def decode_proof_answer(data: bytes, max_proof_bytes: int) -> ProofAnswer | ErrorFrame:
    """Decode a holder's answer: a proof of at most ``max_proof_bytes``, or an error frame.

    Raises:
        RemoteProtocolError: anything else (oversized, malformed, another kind).
    """
    limits = WireLimits(max_message_bytes=max_proof_bytes + PROOF_ANSWER_OVERHEAD,
                        max_str_len=4096, max_map_len=8, max_objects=32,
                        tensor=TensorLimits(max_bytes=max_proof_bytes))
    obj = unpack(data, limits)
    if isinstance(obj, dict) and obj.get("kind") == ErrorFrame.KIND:
        return ErrorFrame.from_obj(obj, limits)
    reader = open_envelope(obj, ProofAnswer.KIND, ("proof",))
    proof = reader.binary("proof")
    if not proof:
        raise RemoteProtocolError(f"{ProofAnswer.KIND}: empty proof")
    return ProofAnswer(proof)
