"""The ``/darwin/challenge/1`` stream handler: one `Challenge`, one `Reveal` (or error), then close.

Rules (normative text: ``specs/verification.md`` section 3):
- The challenge must arrive whole within the challenge timeout, in a frame of at most
  ``CHALLENGE_LIMITS.max_message_bytes``; it is decoded with those limits in a worker thread
  (a long history is many receipts).
- The store answers (`RetentionStore.answer`: re-hashing every tensor it reveals) in a worker
  thread; a `RetentionError` becomes an `ErrorFrame` with its code (``bad_request`` for a
  challenge about receipts this node did not sign, ``unknown_session`` for activations not or
  no longer retained); a frame that is not a challenge is ``bad_request``.
- TEST ONLY cheats (node/cheats.py): ``refuse`` reads the challenge and never answers (until
  the verifier gives up and resets the stream); ``inconsistent`` reveals an output that
  contradicts its commitments, signed anyway.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from darwin.net.framing import FrameConfig, FramedStream, FrameTooLarge, TransportError
from darwin.net.host import Stream, stream_peer_id
from darwin.node.cheats import tamper_reveal
from darwin.node.config import ChallengeLimits
from darwin.node.serving.retention import RetentionError, RetentionStore
from darwin.protocol import (
    CHALLENGE_LIMITS,
    Challenge,
    ErrorCode,
    ErrorFrame,
    Identity,
    RemoteProtocolError,
    Reveal,
)

__all__ = ["ChallengeHandler"]

logger = logging.getLogger(__name__)

# TEST ONLY, the refuse cheat: wait (an hour at most) for the verifier to give up.
_UNTIL_RESET = FrameConfig(max_frame_size=16, frame_timeout=None, idle_timeout=3600.0)


class ChallengeHandler:
    """Serves ``/darwin/challenge/1`` streams from the node's retention store."""

    def __init__(self, store: RetentionStore, identity: Identity, limits: ChallengeLimits,
                 cheat: str | None = None) -> None:
        self.store = store
        self.identity = identity
        self.cheat = cheat  # TEST ONLY
        self.frames = FrameConfig.bounded(CHALLENGE_LIMITS.max_message_bytes, limits.timeout)

    async def __call__(self, stream: Stream) -> None:
        """Answer one challenge (raises TransportError when the peer breaks the stream)."""
        framed = FramedStream(stream, self.frames)
        peer = stream_peer_id(stream)
        try:
            payload = await framed.read()
            challenge = await trio.to_thread.run_sync(Challenge.from_wire, payload)
        except (FrameTooLarge, RemoteProtocolError) as exc:
            reason = exc.reason if isinstance(exc, RemoteProtocolError) else str(exc)
            await self._refuse(framed, peer, ErrorCode.BAD_REQUEST, f"not a challenge: {reason}")
            return
        if self.cheat == "refuse":
            logger.warning("CHEAT refuse: not answering the challenge from %s", peer)
            framed.config = _UNTIL_RESET
            with contextlib.suppress(TransportError):
                await framed.read()
            return
        try:
            reveal = await trio.to_thread.run_sync(self._answer, challenge)
        except RetentionError as exc:
            await self._refuse(framed, peer, exc.code, exc.reason)
            return
        logger.info("challenge from %s: revealed layer %d of session %s up to step %d", peer,
                    challenge.layer, challenge.session_id.hex(), challenge.step)
        await framed.write(reveal.to_wire())

    def _answer(self, challenge: Challenge) -> Reveal:
        """The signed reveal (worker thread; raises RetentionError)."""
        reveal = self.store.answer(challenge)
        if self.cheat == "inconsistent":
            logger.warning("CHEAT inconsistent: revealing a tampered output")
            reveal = tamper_reveal(challenge, reveal, self.identity)
        return reveal

    async def _refuse(self, framed: FramedStream, peer: str, code: ErrorCode,
                      reason: str) -> None:
        logger.info("challenge from %s refused: %s: %s", peer, code.value, reason)
        await framed.write(ErrorFrame.refusal(code, reason).to_wire())
