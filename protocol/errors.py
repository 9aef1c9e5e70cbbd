"""The exceptions of the protocol core.

Rules (as in h11):

* ``RemoteProtocolError``: the peer broke the protocol (malformed bytes, a bad signature, a
  broken trace). The caller drops the peer's request and records the violation.
* ``LocalProtocolError``: we are about to break it (a message built with invalid fields, a
  key of the wrong size). It is a bug or a misconfiguration on our side.
* Decoding hostile input raises ``RemoteProtocolError`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ProtocolError(Exception):
    """Base of every error that ``darwin.protocol`` raises on purpose.

    Attributes:
        reason: a short human-readable statement of what was wrong.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LocalProtocolError(ProtocolError):
    """We broke the protocol: an invalid value was given by our own code."""


class IdentityFileError(LocalProtocolError):
    """A stored identity file is missing, malformed or readable by others."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the peer is to be penalised."""


class SignatureError(RemoteProtocolError):
    """A signature does not verify under the claimed peer id."""


class ReceiptError(RemoteProtocolError):
    """A receipt is well-formed and signed but does not match what was exchanged."""


class TraceError(RemoteProtocolError):
    """A chain of receipts is broken.

    Attributes:
        step: the inference step where the problem was found, if any.
        hop: the index of the hop within that step, if any.
    """

    def __init__(self, reason: str, *, step: int | None = None, hop: int | None = None) -> None:
        where = " ".join(f"{name} {value}" for name, value in (("step", step), ("hop", hop))
                         if value is not None)
        super().__init__(f"{where}: {reason}" if where else reason)
        self.step = step
        self.hop = hop


@contextmanager
def blame_peer(what: str) -> Iterator[None]:
    """Turn validation failures of values a peer sent into ``RemoteProtocolError``.

    Frozen dataclasses validate on construction and raise ``LocalProtocolError``; when the
    values came off the wire the fault is the peer's.

    Args:
        what: names the object being decoded, prefixed to the reason.

    Raises:
        RemoteProtocolError: in place of any ``LocalProtocolError`` raised inside the block.
    """
    try:
        yield
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"{what}: {exc.reason}") from exc
