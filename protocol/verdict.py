"""Verdicts: a verifier's signed statement of what one challenge found.

Rules (layout in ``specs/verification.md``):

* A verdict names the verifier, the challenged node (``subject``), the outcome (``pass``,
  ``fail`` or ``unresponsive``), the model, session, step and layer, and the digest of the
  challenge it answers, so it is tied to exactly the receipts that were checked.
* The signed bytes are ``VERDICT_DOMAIN`` followed by the canonical msgpack array of the body
  fields in ``VERDICT_FIELDS`` order (the outcome as its wire name); the signer is ``verifier``.
* Decoding checks form only; ``Verdict.verify`` checks the signature.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import ClassVar

from .challenge import Challenge, _envelope, open_envelope
from .errors import LocalProtocolError, RemoteProtocolError, blame_peer
from .identity import SIGNATURE_SIZE, Identity, PeerId, public_key_from_peer_id, verify_signature
from .ids import DIGEST_SIZE, SESSION_ID_SIZE, ModelId, SessionId
from .schema import (
    MAX_LAYERS,
    U32_MAX,
    U64_MAX,
    require_bytes,
    require_int,
    require_text,
    shown,
)
from .wire import WireLimits, pack, unpack

VERDICT_DOMAIN = b"darwin/verdict/1\0"
MAX_REASON_CHARS = 512


class Outcome(Enum):
    """What a challenge found; the value is the wire name."""

    PASS = "pass"  # the layer recomputes within tolerance
    FAIL = "fail"  # recomputation or the node's own reveal contradicts its receipts
    UNRESPONSIVE = "unresponsive"  # no signed reveal within the promised retention


def _require_peer(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{name} must be a peer id string, got {shown(value)}")
    try:
        public_key_from_peer_id(value)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"{name}: {exc.reason}") from exc


@dataclass(frozen=True)
class VerdictBody:
    """The signed content of a verdict (every field but the signature).

    Raises (on construction):
        LocalProtocolError: if a field has the wrong type, size or range.
    """

    verifier: PeerId  # the signer
    subject: PeerId  # the challenged node
    outcome: Outcome
    model_id: ModelId
    session_id: SessionId
    step: int
    layer: int
    challenge_digest: bytes  # Challenge.digest() of the challenge judged
    reason: str  # for humans and logs, at most MAX_REASON_CHARS; never parsed
    time_ms: int  # the verifier's clock when it signed, Unix milliseconds

    def __post_init__(self) -> None:
        _require_peer("verifier", self.verifier)
        _require_peer("subject", self.subject)
        if not isinstance(self.outcome, Outcome):
            raise LocalProtocolError(f"outcome must be an Outcome, got {shown(self.outcome)}")
        require_bytes("model_id", self.model_id, DIGEST_SIZE)
        require_bytes("session_id", self.session_id, SESSION_ID_SIZE)
        require_int("step", self.step, 0, U32_MAX)
        require_int("layer", self.layer, 0, MAX_LAYERS - 1)
        require_bytes("challenge_digest", self.challenge_digest, DIGEST_SIZE)
        require_text("reason", self.reason, MAX_REASON_CHARS)
        require_int("time_ms", self.time_ms, 0, U64_MAX)

    @classmethod
    def for_challenge(
        cls, challenge: Challenge, *, verifier: PeerId, outcome: Outcome, reason: str,
        time_ms: int,
    ) -> VerdictBody:
        """The verdict body about ``challenge``; ``reason`` is cut to ``MAX_REASON_CHARS``.

        Raises:
            LocalProtocolError: if a field is invalid.
        """
        return cls(verifier, challenge.node_id, outcome, challenge.model_id,
                   challenge.session_id, challenge.step, challenge.layer, challenge.digest(),
                   reason[:MAX_REASON_CHARS], time_ms)

    def about(self, challenge: Challenge) -> bool:
        """Whether this verdict judges exactly ``challenge``."""
        return (self.subject, self.model_id, self.session_id, self.step, self.layer,
                self.challenge_digest) == (challenge.node_id, challenge.model_id,
                                           challenge.session_id, challenge.step,
                                           challenge.layer, challenge.digest())

    def _values(self) -> list[object]:
        return [getattr(self, name).value if name == "outcome" else getattr(self, name)
                for name in VERDICT_FIELDS]

    def signing_bytes(self) -> bytes:
        """The exact bytes the verifier signs."""
        return VERDICT_DOMAIN + pack(self._values())

    def sign(self, identity: Identity) -> Verdict:
        """Sign this body.

        Raises:
            LocalProtocolError: if ``identity`` is not ``verifier``.
        """
        if identity.peer_id != self.verifier:
            raise LocalProtocolError(f"{identity.peer_id} cannot sign for {self.verifier}")
        return Verdict(self, identity.sign(self.signing_bytes()))


VERDICT_FIELDS = tuple(field.name for field in fields(VerdictBody))


@dataclass(frozen=True)
class Verdict:
    """A verdict body and its verifier's ed25519 signature.

    Raises (on construction):
        LocalProtocolError: if ``body`` is not a ``VerdictBody`` or the signature not 64 bytes.
    """

    KIND: ClassVar[str] = "verdict"
    body: VerdictBody
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.body, VerdictBody):
            raise LocalProtocolError("body must be a VerdictBody")
        require_bytes("signature", self.signature, SIGNATURE_SIZE)

    def verify(self) -> None:
        """Check the signature against ``body.verifier``.

        Raises:
            SignatureError: if the signature does not verify.
        """
        verify_signature(self.body.verifier, self.body.signing_bytes(), self.signature)

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this verdict: envelope, body fields and ``signature``."""
        values = dict(zip(VERDICT_FIELDS, self.body._values(), strict=True))
        return _envelope(self.KIND, {**values, "signature": self.signature})

    def to_wire(self) -> bytes:
        """The encoded frame of this verdict (as gossiped)."""
        return pack(self.to_obj())

    @classmethod
    def from_obj(cls, obj: object) -> Verdict:
        """Decode a verdict a peer sent; does not check the signature.

        Raises:
            RemoteProtocolError: if the map is malformed or a field is out of range.
        """
        reader = open_envelope(obj, cls.KIND, (*VERDICT_FIELDS, "signature"))
        outcome = reader.text("outcome")
        try:
            known = Outcome(outcome)
        except ValueError:
            raise RemoteProtocolError(f"verdict: unknown outcome {shown(outcome)}") from None
        with blame_peer(cls.KIND):
            body = VerdictBody(
                verifier=PeerId(reader.text("verifier")),
                subject=PeerId(reader.text("subject")),
                outcome=known,
                model_id=ModelId(reader.binary("model_id")),
                session_id=SessionId(reader.binary("session_id")),
                step=reader.integer("step"),
                layer=reader.integer("layer"),
                challenge_digest=reader.binary("challenge_digest"),
                reason=reader.text("reason"),
                time_ms=reader.integer("time_ms"),
            )
            return cls(body, reader.binary("signature"))

    @classmethod
    def from_wire(cls, data: bytes, limits: WireLimits | None = None) -> Verdict:
        """Decode a verdict frame (raises ``RemoteProtocolError``)."""
        return cls.from_obj(unpack(data, limits if limits is not None else WireLimits()))
