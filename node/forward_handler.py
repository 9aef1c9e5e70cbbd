"""The ``/darwin/forward/1`` stream handler: one inference session per stream.

Rules (normative text: ``specs/forward-protocol.md``):
- The handler is a thin driver of `ServerSession`: read a frame, decode it, feed the state
  machine, act on the event. The torch work runs in a worker thread (`SessionCompute.run_step`)
  under the node's compute limiter, so the event loop keeps serving every other stream.
- A refused open gets an `ErrorFrame` and the stream is closed; a refused step gets an
  `ErrorFrame`, changes nothing, and the stream stays open so the client may correct itself.
- A frame that is not a message (garbage, oversized) gets `ErrorFrame(bad_request)` and the
  stream is closed. A frame left unfinished (the peer stalls or ends inside it) resets the
  stream. A session idle past ``idle_timeout`` is closed (end of stream, no error frame: the
  client's next step finds the stream ended and fails over as from any lost hop).
- Whatever ends the stream, the session's reservation in the `SessionTable` is released in a
  ``finally`` and its KV cache becomes garbage with it. Only transport errors leave the handler
  (the host then resets the stream); an unexpected failure of a step is answered with
  `ErrorFrame(internal)` and ends that session alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from darwin.model import ModelError, SessionLengthExceeded
from darwin.node.config import ForwardLimits
from darwin.node.framing import FrameConfig, FramedStream, FrameTimeout, FrameTooLarge, StreamClosed
from darwin.node.host import Stream, stream_peer_id
from darwin.node.served_span import ServedSpan, SessionCompute
from darwin.node.sessions import Busy, Reservation, SessionTable
from darwin.protocol import (
    ErrorCode,
    ErrorFrame,
    Message,
    OpenSession,
    RemoteProtocolError,
    StepRequest,
    TensorLimits,
    WireLimits,
    decode,
)
from darwin.protocol.forward_session import Opened, Refusal, RunStep, ServePolicy, ServerSession

__all__ = ["FORWARD_PROTOCOL", "ForwardHandler"]

logger = logging.getLogger(__name__)

FORWARD_PROTOCOL = "/darwin/forward/1"
# Frames above this size are decoded (and their tensor digest checked) in a worker thread.
_DECODE_IN_THREAD = 256 * 1024


@dataclass
class _Session:
    """An admitted session: its place in the table and its compute state."""

    reservation: Reservation
    row_bytes: int  # KV-cache bound of one batch row
    compute: SessionCompute


class _Conversation:
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
        await self.send(ErrorFrame.refusal(code, reason).to_wire())


class ForwardHandler:
    """Serves ``/darwin/forward/1`` streams on one `ServedSpan`."""

    def __init__(
        self,
        served: ServedSpan,
        table: SessionTable,
        policy: ServePolicy,
        limits: ForwardLimits,
        compute: trio.CapacityLimiter,
    ) -> None:
        self.served = served
        self.table = table
        self.policy = policy
        self.limits = limits
        self.compute = compute

    async def __call__(self, stream: Stream) -> None:
        """Drive one stream's session to its end; see the module rules."""
        talk = _Conversation(stream, self.limits)
        machine = ServerSession(self.policy)
        session: _Session | None = None
        try:
            while (message := await talk.next_message()) is not None:
                try:
                    event = machine.receive(message)
                except Refusal as refusal:
                    await talk.refuse(refusal.code, refusal.reason)
                    if session is None:
                        return  # an open that was refused ends the stream
                    continue
                if isinstance(event, Opened):
                    session = await self._admit(talk, event.request)
                    if session is None:
                        return
                    await talk.send(event.reply.to_wire())
                elif isinstance(event, RunStep):
                    assert session is not None
                    if not await self._step(talk, machine, session, event.request):
                        return
                else:
                    logger.info("session %s from %s: closed by the client", talk.session, talk.peer)
                    return
        finally:
            if session is not None:
                session.reservation.release()
                logger.info(
                    "session %s from %s: released after %d steps",
                    talk.session,
                    talk.peer,
                    machine.next_step,
                )

    async def _admit(self, talk: _Conversation, request: OpenSession) -> _Session | None:
        """Reserve a place for an accepted open; None (and a busy frame) when there is none."""
        talk.session = request.session_id.hex()
        row_bytes = self.served.kv_bytes_per_row(
            request.span_start, request.span_end, request.max_length
        )
        compute = self.served.open(  # before admit: nothing may fail between admit and return
            request.session_id, request.span_start, request.span_end, request.max_length
        )
        try:
            reservation = self.table.admit(row_bytes)
        except Busy as exc:
            await talk.refuse(ErrorCode.BUSY, str(exc))
            return None
        logger.info(
            "session %s from %s: opened [%d, %d) max_length %d",
            talk.session,
            talk.peer,
            request.span_start,
            request.span_end,
            request.max_length,
        )
        return _Session(reservation, row_bytes, compute)

    async def _step(
        self, talk: _Conversation, machine: ServerSession, session: _Session, request: StepRequest
    ) -> bool:
        """Run one step and answer it; False when the session must end."""
        try:
            if session.compute.batch_size is None:  # the first step fixes the batch
                session.reservation.resize(request.hidden.shape[0] * session.row_bytes)
            payload = await trio.to_thread.run_sync(
                session.compute.run_step, request, limiter=self.compute
            )
        except (Busy, ModelError) as exc:
            machine.step_failed(request)
            await talk.refuse(_code_of(exc), str(exc))
            return True
        except Exception:
            machine.step_failed(request)
            logger.exception(
                "session %s from %s: step %d failed", talk.session, talk.peer, request.step
            )
            await talk.refuse(ErrorCode.INTERNAL, "the node failed to run the step")
            return False
        machine.step_done(request)
        logger.debug("session %s from %s: step %d done", talk.session, talk.peer, request.step)
        await talk.send(payload)
        return True


def _code_of(exc: Exception) -> ErrorCode:
    if isinstance(exc, Busy):
        return ErrorCode.BUSY
    if isinstance(exc, SessionLengthExceeded):
        return ErrorCode.LENGTH_EXCEEDED
    return ErrorCode.BAD_REQUEST
