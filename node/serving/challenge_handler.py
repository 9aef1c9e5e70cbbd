"""The ``/darwin/challenge/1`` stream handler: one `Challenge`, one `Reveal` (or error), then close.

Rules (normative text: ``specs/verification.md`` section 3):
- The challenge must arrive whole within the challenge timeout, in a frame of at most
  ``CHALLENGE_LIMITS.max_message_bytes``; it is decoded with those limits in a worker thread
  (a long history is many receipts).
- The store answers (`RetentionStore.answer`: re-hashing every tensor it reveals) in a worker
  thread; a `RetentionError` becomes an `ErrorFrame` with its code (``bad_request`` for a
  challenge about receipts this node did not sign, ``unknown_session`` for activations not or
  no longer retained); a frame that is not a challenge is ``bad_request``.
- The handler answers from any `Reveals` (the store; node/adversaries.py wraps it, or the
  handler, for the test-only challenge cheats).
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from darwin.net.framing import FrameConfig, FramedStream, FrameTooLarge
from darwin.net.host import Stream, stream_peer_id
from darwin.node.config import ChallengeLimits
from darwin.node.serving.retention import RetentionError
from darwin.protocol import (
    CHALLENGE_LIMITS,
    Challenge,
    ErrorCode,
    ErrorFrame,
    RemoteProtocolError,
    Reveal,
)

__all__ = ["ChallengeHandler", "Reveals"]

logger = logging.getLogger(__name__)


class Reveals(Protocol):
    """What answers a challenge: the node's `RetentionStore`."""

    def answer(self, challenge: Challenge) -> Reveal:
        """The signed reveal (raises RetentionError)."""
        ...


class ChallengeHandler:
    """Serves ``/darwin/challenge/1`` streams from the node's retention store."""

    def __init__(self, reveals: Reveals, limits: ChallengeLimits) -> None:
        self.reveals = reveals
        self.limits = limits
        self.frames = FrameConfig.bounded(CHALLENGE_LIMITS.max_message_bytes, limits.timeout)

    async def __call__(self, stream: Stream) -> None:
        """Answer one challenge (raises TransportError when the peer breaks the stream)."""
        framed = FramedStream(stream, self.frames)
        peer = stream_peer_id(stream)
        challenge = await self.receive(framed, peer)
        if challenge is None:
            return
        try:
            reveal = await trio.to_thread.run_sync(self.reveals.answer, challenge)
        except RetentionError as exc:
            await self._refuse(framed, peer, exc.code, exc.reason)
            return
        logger.info("challenge from %s: revealed layer %d of session %s up to step %d", peer,
                    challenge.layer, challenge.session_id.hex(), challenge.step)
        await framed.write(reveal.to_wire())

    async def receive(self, framed: FramedStream, peer: str) -> Challenge | None:
        """The challenge read from ``framed``; None when it was not one (and was refused)."""
        try:
            payload = await framed.read()
            return await trio.to_thread.run_sync(Challenge.from_wire, payload)
        except (FrameTooLarge, RemoteProtocolError) as exc:
            reason = exc.reason if isinstance(exc, RemoteProtocolError) else str(exc)
            await self._refuse(framed, peer, ErrorCode.BAD_REQUEST, f"not a challenge: {reason}")
            return None

    async def _refuse(self, framed: FramedStream, peer: str, code: ErrorCode,
                      reason: str) -> None:
        logger.info("challenge from %s refused: %s: %s", peer, code.value, reason)
        await framed.write(ErrorFrame.refusal(code, reason).to_wire())
