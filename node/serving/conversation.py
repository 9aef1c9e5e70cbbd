"""One stream of a node's session protocols, read and written as messages.

Rules:
- A frame that is not a message (garbage, oversized) is answered with
  `ErrorFrame(bad_request)` and ends the conversation; so does the end of the stream at a frame
  boundary or an idle wait past the limit (no error frame: there is nobody to tell).
- A frame left unfinished (the peer stalls or ends inside it) raises, so the caller resets
  the stream.
- Large frames are decoded (and their tensor digests checked) in a worker thread, so the
  event loop keeps serving every other stream.
"""

from __future__ import annotations

import logging

import trio

from darwin.net.framing import FrameConfig, FramedStream, FrameTimeout, FrameTooLarge, StreamClosed
from darwin.net.host import Stream, stream_peer_id
from darwin.node.config import ForwardLimits
from darwin.protocol import (
    ErrorCode,
    ErrorFrame,
    Message,
    RemoteProtocolError,
    TensorLimits,
    WireLimits,
    decode,
)

__all__ = ["Conversation"]

logger = logging.getLogger(__name__)

# Frames above this size are decoded (and their tensor digest checked) in a worker thread.
_DECODE_IN_THREAD = 256 * 1024


class Conversation:
    """One forward stream, read and written as messages, with the peer and session for logs."""

    def __init__(self, stream: Stream, limits: ForwardLimits) -> None:
        self.framed = FramedStream(
            stream,
            FrameConfig(
                max_frame_size=limits.max_frame_size,
                frame_timeout=limits.frame_timeout,
                idle_timeout=limits.idle_timeout,
                write_timeout=limits.write_timeout,
            ),
        )
        self.wire_limits = WireLimits(
            max_message_bytes=limits.max_frame_size,
            tensor=TensorLimits(max_bytes=limits.max_frame_size),
        )
        self.idle_timeout = limits.idle_timeout
        self.peer = stream_peer_id(stream)
        self.session = "-"  # the session id (hex) once the client named it
        self.refusal: str | None = None  # why we refused the peer, once we have

    async def next_message(self) -> Message | None:
        """The next message, or None when the stream is over (the reason was logged or sent).

        Raises:
            StreamClosed, FrameTimeout: the peer left a frame unfinished; reset the stream.
        """
        try:
            payload = await self.framed.read()
        except StreamClosed as exc:
            if exc.mid_frame:
                raise
            logger.debug("session %s from %s: stream ended", self.session, self.peer)
            return None
        except FrameTimeout as exc:
            if exc.received:
                raise
            logger.info(
                "session %s from %s: closed after %g s without a frame",
                self.session,
                self.peer,
                self.idle_timeout,
            )
            return None
        except FrameTooLarge as exc:
            await self.refuse(ErrorCode.BAD_REQUEST, str(exc))
            return None
        try:
            if len(payload) > _DECODE_IN_THREAD:
                return await trio.to_thread.run_sync(decode, payload, self.wire_limits)
            return decode(payload, self.wire_limits)
        except RemoteProtocolError as exc:
            await self.refuse(ErrorCode.BAD_REQUEST, f"not a valid message: {exc.reason}")
            return None

    async def send(self, payload: bytes) -> None:
        """Write one encoded message (raises TransportError)."""
        await self.framed.write(payload)

    async def refuse(self, code: ErrorCode, reason: str) -> None:
        """Answer with an error frame (raises TransportError)."""
        logger.info("session %s from %s: %s: %s", self.session, self.peer, code.value, reason)
        self.refusal = self.refusal or reason
        await self.send(ErrorFrame.refusal(code, reason).to_wire())
