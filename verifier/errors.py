"""The exceptions of the verifier.

Rules: a ``VerifierError`` means the verifier cannot judge (its own configuration, or
receipts that do not hold up); it never becomes a verdict about the node. What the node did
wrong becomes a ``fail`` or ``unresponsive`` verdict instead, never an exception.
"""

from __future__ import annotations


class VerifierError(Exception):
    """Base of the verifier's deliberate errors.

    Attributes:
        reason: a short human-readable statement of what was wrong.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WrongModel(VerifierError):
    """The checkpoint at hand is not the model the receipts name."""


class InvalidChallenge(VerifierError):
    """The receipts to check do not hold up (bad signature): blame whoever supplied them."""


class UnsupportedChallenge(VerifierError):
    """This verifier cannot recompute what the receipts name (an adapter, an encoder)."""


class Unrecomputable(VerifierError):
    """The node's committed tensors cannot run through the layer (wrong width, no such layer).

    Raised by ``recompute``; judged as a ``fail``: the node signed tensors its model cannot
    have produced.
    """
