"""Fraud proofs: the self-contained evidence behind a failing verdict.

Rules (layout in ``specs/verification.md``):

* A fraud proof holds the challenge (the node's own signed receipts of steps ``0 .. step``,
  the layer), the node's signed reveal, the model id the receipts claim, and the verifier's
  signed ``fail`` verdict. Anyone holding that layer's weights can re-check it without
  trusting the verifier: the receipts and the reveal are signed by the node, the verdict by
  the verifier, so a false accusation is as provable as a cheat.
* A proof names its commitment hash (``hash_alg``, always ``HASH_ALG``), as its receipts do: a
  proof of the BLAKE2b-256 scheme before it is refused by name when decoded.
* Construction checks form: the verdict says ``fail`` and the claimed model id is the
  receipts'. Whether the evidence holds is the checker's job (``darwin.verifier.fraud``).
* Decoding hostile input raises ``RemoteProtocolError`` only, within ``CHALLENGE_LIMITS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .challenge import CHALLENGE_LIMITS, Challenge, Reveal, _envelope, open_envelope
from .errors import LocalProtocolError, blame_peer
from .hashing import HASH_ALG, check_hash_alg
from .ids import DIGEST_SIZE, ModelId
from .receipt import Receipt
from .schema import require_bytes
from .verdict import Outcome, Verdict
from .wire import WireLimits, pack, unpack


@dataclass(frozen=True)
class FraudProof:
    """Evidence that a node's committed layer does not compute what it signed.

    Raises (on construction):
        LocalProtocolError: if a part has the wrong type, the verdict is not ``fail``, or
            ``model_id`` is not the model the receipts name.
    """

    KIND: ClassVar[str] = "fraud_proof"
    challenge: Challenge  # the node's receipts of steps 0..step and the layer
    reveal: Reveal  # the node's signed answer
    model_id: ModelId  # the model the node claimed to run (the receipts' model_id)
    verdict: Verdict  # the verifier's signed "fail"
    hash_alg: str = HASH_ALG  # the hash of the receipts' and the reveal's digests

    def __post_init__(self) -> None:
        if not isinstance(self.challenge, Challenge) or not isinstance(self.reveal, Reveal):
            raise LocalProtocolError("a fraud proof holds a Challenge and a Reveal")
        if not isinstance(self.verdict, Verdict):
            raise LocalProtocolError("a fraud proof holds a Verdict")
        require_bytes("model_id", self.model_id, DIGEST_SIZE)
        if self.model_id != self.challenge.model_id:
            raise LocalProtocolError("model_id is not the model the receipts name")
        if self.verdict.body.outcome is not Outcome.FAIL:
            raise LocalProtocolError("a fraud proof carries a failing verdict")
        if self.hash_alg != HASH_ALG:
            raise LocalProtocolError(f"hash_alg must be {HASH_ALG}")

    @property
    def receipts(self) -> tuple[Receipt, ...]:
        return self.challenge.receipts

    @property
    def layer(self) -> int:
        return self.challenge.layer

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this proof (its parts nested with their own envelopes)."""
        return _envelope(self.KIND, {"challenge": self.challenge.to_obj(),
                                     "reveal": self.reveal.to_obj(), "model_id": self.model_id,
                                     "verdict": self.verdict.to_obj(),
                                     "hash_alg": self.hash_alg})

    def to_wire(self) -> bytes:
        """The encoded proof: what is gossiped and what a proof file holds."""
        return pack(self.to_obj())

    @classmethod
    def from_obj(cls, obj: object, limits: WireLimits = CHALLENGE_LIMITS) -> FraudProof:
        """Decode a proof a peer sent; checks form only.

        Raises:
            RemoteProtocolError: if the map names no or another ``hash_alg`` (a proof of another
                commitment scheme), or it or any part is malformed.
        """
        check_hash_alg(obj, "fraud proof")
        reader = open_envelope(obj, cls.KIND,
                               ("challenge", "reveal", "model_id", "verdict", "hash_alg"))
        challenge = Challenge.from_obj(reader.value("challenge"))
        reveal = Reveal.from_obj(reader.value("reveal"), limits.tensor)
        verdict = Verdict.from_obj(reader.value("verdict"))
        with blame_peer(cls.KIND):
            return cls(challenge, reveal, ModelId(reader.binary("model_id")), verdict,
                       reader.text("hash_alg"))

    @classmethod
    def from_wire(cls, data: bytes, limits: WireLimits = CHALLENGE_LIMITS) -> FraudProof:
        """Decode an encoded proof (raises ``RemoteProtocolError``)."""
        return cls.from_obj(unpack(data, limits), limits)
