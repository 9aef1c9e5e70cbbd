"""The ``/darwin/verify/1`` messages: a client asks a verifier to check one node of a trace.

Rules (layout in ``specs/verification.md`` section 8.1):

* ``verify_request`` (client → verifier): the model, the node to check (``subject``), where it
  listens (hints), and the receipts the client holds: its trace plus the receipts of replayed
  steps, so the verifier has the subject's receipts of steps ``0..k``. Receipts only; no
  tensors. The verifier picks step and layer itself (the client cannot steer them).
* ``verify_answer`` (verifier → client): the signed verdict and, for a ``fail``, the encoded
  fraud proof (``FraudProof.to_wire()``, the bytes a proof file holds). A request the verifier
  cannot judge is answered with an ``error`` frame instead (``decode_verify_answer`` reads
  either).
* Decoding hostile input raises ``RemoteProtocolError`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .challenge import CHALLENGE_LIMITS, MAX_CHALLENGE_STEPS, _envelope, open_envelope
from .errors import LocalProtocolError, RemoteProtocolError, blame_peer
from .fraud_proof import FraudProof
from .identity import PeerId
from .ids import DIGEST_SIZE, ModelId
from .messages import ErrorFrame
from .receipt import Receipt
from .schema import require_bytes, require_int, require_text
from .verdict import Outcome, Verdict
from .wire import WireLimits, pack, unpack

__all__ = ["MAX_VERIFY_RECEIPTS", "VERIFY_REQUEST_LIMITS", "VerifyAnswer", "VerifyRequest",
           "decode_verify_answer"]

# Most receipts one request may carry (a trace of many hops plus replays).
MAX_VERIFY_RECEIPTS = 4 * MAX_CHALLENGE_STEPS
MAX_ADDRS = 8
MAX_ADDR_CHARS = 256
VERIFY_REQUEST_LIMITS = WireLimits(
    max_message_bytes=16 * 2**20,
    max_array_len=MAX_VERIFY_RECEIPTS,
    max_objects=64 * MAX_VERIFY_RECEIPTS + 1024,
)


@dataclass(frozen=True)
class VerifyRequest:
    """Client → verifier: check ``subject`` in these receipts.

    Raises (on construction):
        LocalProtocolError: a field has the wrong type, size or count.
    """

    KIND: ClassVar[str] = "verify_request"
    model_id: ModelId
    subject: PeerId
    addrs: tuple[str, ...]  # where the subject listens (multiaddrs), as the client found it
    receipts: tuple[Receipt, ...]  # the trace and the replay receipts, in any order

    def __post_init__(self) -> None:
        require_bytes("model_id", self.model_id, DIGEST_SIZE)
        require_text("subject", self.subject, 128)
        if not isinstance(self.addrs, tuple) or not isinstance(self.receipts, tuple):
            raise LocalProtocolError("addrs and receipts must be tuples")
        require_int("len(addrs)", len(self.addrs), 0, MAX_ADDRS)
        for addr in self.addrs:
            require_text("addr", addr, MAX_ADDR_CHARS)
        require_int("len(receipts)", len(self.receipts), 1, MAX_VERIFY_RECEIPTS)
        if not all(isinstance(receipt, Receipt) for receipt in self.receipts):
            raise LocalProtocolError("receipts must be Receipt")

    def to_wire(self) -> bytes:
        return pack(_envelope(self.KIND, {
            "model_id": self.model_id, "subject": self.subject, "addrs": list(self.addrs),
            "receipts": [receipt.to_obj() for receipt in self.receipts]}))

    @classmethod
    def from_wire(cls, data: bytes, limits: WireLimits = VERIFY_REQUEST_LIMITS) -> VerifyRequest:
        """Decode a request (raises ``RemoteProtocolError``); signatures are not checked."""
        reader = open_envelope(unpack(data, limits), cls.KIND,
                               ("model_id", "subject", "addrs", "receipts"))
        addrs = reader.array_of("addrs", str, "str")
        items = reader.array("receipts")
        with blame_peer(cls.KIND):
            require_int("len(receipts)", len(items), 1, MAX_VERIFY_RECEIPTS)
        receipts = tuple(Receipt.from_obj(item) for item in items)
        with blame_peer(cls.KIND):
            return cls(ModelId(reader.binary("model_id")), PeerId(reader.text("subject")),
                       tuple(addrs), receipts)


@dataclass(frozen=True)
class VerifyAnswer:
    """Verifier → client: the signed verdict, and the encoded fraud proof of a ``fail``.

    Raises (on construction):
        LocalProtocolError: a ``fail`` without a proof, or a proof with another verdict.
    """

    KIND: ClassVar[str] = "verify_answer"
    verdict: Verdict
    fraud_proof: bytes | None  # FraudProof.to_wire() when the verdict is a fail

    def __post_init__(self) -> None:
        failed = self.verdict.body.outcome is Outcome.FAIL
        if failed != (self.fraud_proof is not None):
            raise LocalProtocolError("a fail verdict, and only a fail, carries a fraud proof")

    def proof(self) -> FraudProof | None:
        """The decoded fraud proof (raises ``RemoteProtocolError`` when it is malformed)."""
        return None if self.fraud_proof is None else FraudProof.from_wire(self.fraud_proof)

    def to_wire(self) -> bytes:
        return pack(_envelope(self.KIND, {"verdict": self.verdict.to_obj(),
                                          "fraud_proof": self.fraud_proof}))

    @classmethod
    def from_obj(cls, obj: object) -> VerifyAnswer:
        """Decode an answer map (raises ``RemoteProtocolError``); checks form only."""
        reader = open_envelope(obj, cls.KIND, ("verdict", "fraud_proof"))
        verdict = Verdict.from_obj(reader.value("verdict"))
        proof = reader.optional_binary("fraud_proof")
        try:
            return cls(verdict, proof)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"{cls.KIND}: {exc}") from None

    @classmethod
    def from_wire(cls, data: bytes, limits: WireLimits = CHALLENGE_LIMITS) -> VerifyAnswer:
        return cls.from_obj(unpack(data, limits))


def decode_verify_answer(data: bytes,
                         limits: WireLimits = CHALLENGE_LIMITS) -> VerifyAnswer | ErrorFrame:
    """Decode a verifier's answer: a verdict, or the error frame of a refused request.

    Raises:
        RemoteProtocolError: anything else; signatures are not checked.
    """
    obj = unpack(data, limits)
    if isinstance(obj, dict) and obj.get("kind") == ErrorFrame.KIND:
        return ErrorFrame.from_obj(obj, limits)
    return VerifyAnswer.from_obj(obj)
