"""Errors raised by ``darwin.model``.

Rules: every error a caller can provoke with a bad checkpoint, a bad span or a bad input is a
``ModelError``; its message names the thing at fault (the tensor, the expected and found shape,
the span and the number of layers) so that a node operator can act on it without a traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "InvalidInput",
    "ModelError",
    "SessionLengthExceeded",
    "SpanOutOfRange",
    "UnsupportedArchitecture",
    "UnsupportedOperation",
]


class ModelError(Exception):
    """Base class of everything ``darwin.model`` raises on purpose."""


class UnsupportedArchitecture(ModelError):
    """The checkpoint's ``model_type`` (or one of its options) has no family here."""


class CheckpointError(ModelError):
    """The checkpoint directory is unreadable, incomplete or does not match its config."""


class SpanOutOfRange(ModelError):
    """A span ``[start, end)`` that is empty or does not fit in ``[0, n_layers)``."""


class SessionLengthExceeded(ModelError):
    """A step would take a session past the ``max_length`` it was opened with."""


class InvalidInput(ModelError):
    """Hidden states or ids whose shape, dtype or batch do not fit the span or session."""


class UnsupportedOperation(ModelError):
    """The family has no such part (e.g. an LM head on a BERT encoder)."""
