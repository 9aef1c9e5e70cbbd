"""The ``/darwin/info/1`` stream handler: one `InfoRequest`, one `NodeInfo`, then close.

Rules (``specs/forward-protocol.md``): the request must arrive whole within the info timeout
and be at most a few KiB; anything else that arrives as a frame is answered with
`ErrorFrame(bad_request)`. The answer is built when asked, so ``load`` is current.
"""

from __future__ import annotations

import logging

import darwin
from darwin.net.framing import FrameConfig, FramedStream, FrameTooLarge
from darwin.net.host import Stream, stream_peer_id
from darwin.node.config import InfoLimits
from darwin.node.serving.served_span import ServedSpan
from darwin.node.serving.sessions import SessionTable
from darwin.protocol import ErrorCode, ErrorFrame, InfoRequest, NodeInfo, RemoteProtocolError

__all__ = ["InfoHandler"]

logger = logging.getLogger(__name__)



class InfoHandler:
    """Serves ``/darwin/info/1`` streams."""

    def __init__(self, served: ServedSpan, table: SessionTable, limits: InfoLimits) -> None:
        self.served = served
        self.table = table
        self.frames = FrameConfig.bounded(limits.max_frame_size, limits.timeout)

    def describe(self) -> NodeInfo:
        """What this node serves and how busy it is, now."""
        start, end = self.served.span
        return NodeInfo(
            peer_id=self.served.identity.peer_id,
            model_id=self.served.model_id,
            span_start=start,
            span_end=end,
            dtype=self.served.dtype,
            load=float(self.table.load),
            max_sessions=self.table.limits.max_sessions,
            version=darwin.__version__,
        )

    async def __call__(self, stream: Stream) -> None:
        """Answer one request (raises TransportError when the peer breaks the stream)."""
        framed = FramedStream(stream, self.frames)
        try:
            InfoRequest.from_wire(await framed.read())
        except (FrameTooLarge, RemoteProtocolError) as exc:
            reason = exc.reason if isinstance(exc, RemoteProtocolError) else str(exc)
            logger.info("info request from %s refused: %s", stream_peer_id(stream), reason)
            error = ErrorFrame.refusal(ErrorCode.BAD_REQUEST, reason)
            await framed.write(error.to_wire())
            return
        await framed.write(self.describe().to_wire())
