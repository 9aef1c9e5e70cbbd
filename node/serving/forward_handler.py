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
- A session opened with ``push_to`` pushes each result to the next hop, then answers the
  client with its receipt alone (`StepReceipt`); one opened with ``push_from`` runs each
  step on the input the previous hop pushes (`darwin.node.serving.push`), watching its client's
  stream meanwhile: the client may say nothing during a step, and one that speaks or leaves
  ends the session at once. A push link that fails is answered with
  `ErrorFrame(push_failed)` and ends the session.
- Whatever ends the stream, the session's reservation in the `SessionTable` and its push links
  are released in a ``finally`` and its KV cache becomes garbage with it. Only transport
  errors leave the handler (the host then resets the stream); an unexpected failure of a
  step is answered with `ErrorFrame(internal)` and ends that session alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from darwin.model import ModelError, SessionLengthExceeded
from darwin.net.framing import TransportError
from darwin.net.host import Stream
from darwin.node.config import ForwardLimits
from darwin.node.serving.conversation import Conversation
from darwin.node.serving.push import Inbox, PushFailed, PushLinks, PushOut
from darwin.node.serving.served_span import ServedSpan, SessionCompute
from darwin.node.serving.sessions import Busy, Reservation, SessionTable
from darwin.protocol import (
    ErrorCode,
    Message,
    OpenSession,
    PushedStepRequest,
    StepReceipt,
    StepRequest,
    StepResult,
)
from darwin.protocol.forward_session import (
    AnyStepRequest,
    Opened,
    Refusal,
    RunStep,
    ServePolicy,
    ServerSession,
)

__all__ = ["ForwardHandler"]

logger = logging.getLogger(__name__)

@dataclass
class _Session:
    """An admitted session: its place in the table, its compute state and its push links."""

    reservation: Reservation
    row_bytes: int  # KV-cache bound of one batch row
    compute: SessionCompute
    inbox: Inbox | None = None  # where its inputs come from (push_from); None: the client
    push_out: PushOut | None = None  # where its results go before the client (push_to)


class ForwardHandler:
    """Serves ``/darwin/forward/1`` streams on one `ServedSpan`."""

    def __init__(
        self,
        served: ServedSpan,
        table: SessionTable,
        policy: ServePolicy,
        limits: ForwardLimits,
        compute: trio.CapacityLimiter,
        links: PushLinks,
    ) -> None:
        self.served = served
        self.table = table
        self.policy = policy
        self.limits = limits
        self.compute = compute
        self.links = links

    async def __call__(self, stream: Stream) -> None:
        """Drive one stream's session to its end; see the module rules."""
        talk = Conversation(stream, self.limits)
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
                await self._unlink(session.compute, session.inbox, session.push_out)
                logger.info(
                    "session %s from %s: released after %d steps",
                    talk.session,
                    talk.peer,
                    machine.next_step,
                )

    async def _admit(self, talk: Conversation, request: OpenSession) -> _Session | None:
        """Link and reserve a place for an accepted open; None (and an error frame) when the
        push links or the capacity are not there."""
        talk.session = request.session_id.hex()
        row_bytes = self.served.kv_bytes_per_row(
            request.span_start, request.span_end, request.max_length
        )
        compute = self.served.open(
            request.session_id, request.span_start, request.span_end, request.max_length
        )
        try:
            inbox, push_out = await self._link(request)
        except PushFailed as exc:
            await talk.refuse(ErrorCode.PUSH_FAILED, str(exc))
            return None
        try:
            reservation = self.table.admit(row_bytes)  # last: nothing may fail after it
        except Busy as exc:
            await self._unlink(compute, inbox, push_out)
            await talk.refuse(ErrorCode.BUSY, str(exc))
            return None
        logger.info(
            "session %s from %s: opened [%d, %d) max_length %d%s%s",
            talk.session,
            talk.peer,
            request.span_start,
            request.span_end,
            request.max_length,
            "" if request.push_from is None else f", pushed from {request.push_from}",
            "" if request.push_to is None else f", pushing to {request.push_to}",
        )
        return _Session(reservation, row_bytes, compute, inbox, push_out)

    async def _link(self, request: OpenSession) -> tuple[Inbox | None, PushOut | None]:
        """The push links `request` asks for (raises `PushFailed`)."""
        push_out = None
        if request.push_to is not None:
            push_out = await self.links.connect(request.push_to, request.push_addrs)
        if request.push_from is None:
            return None, push_out
        try:
            inbox = self.links.inbox(request.session_id, request.push_from, request.span_start)
        except PushFailed:
            if push_out is not None:
                await push_out.aclose()
            raise
        return inbox, push_out

    async def _unlink(self, compute: SessionCompute, inbox: Inbox | None,
                      push_out: PushOut | None) -> None:
        if inbox is not None:
            self.links.drop(compute.session_id, inbox)
        if push_out is not None:
            await push_out.aclose()

    async def _step(
        self, talk: Conversation, machine: ServerSession, session: _Session,
        request: AnyStepRequest,
    ) -> bool:
        """Run one step and answer it; False when the session must end."""
        pushed = isinstance(request, PushedStepRequest)
        if isinstance(request, PushedStepRequest):
            try:
                step_input = await self._pushed_input(talk, session, request)
            except PushFailed as exc:
                machine.step_failed(request)
                await talk.refuse(ErrorCode.PUSH_FAILED, str(exc))
                return False
            if step_input is None:
                machine.step_failed(request)
                return False
        else:
            step_input = request
        try:
            if session.compute.batch_size is None:  # the first step fixes the batch
                session.reservation.resize(step_input.hidden.shape[0] * session.row_bytes)
            payload = await trio.to_thread.run_sync(
                session.compute.run_step, step_input, limiter=self.compute
            )
        except (Busy, ModelError) as exc:
            machine.step_failed(request)
            if pushed and not isinstance(exc, Busy):  # the previous hop's input, not the client's
                await talk.refuse(ErrorCode.PUSH_FAILED, f"the pushed input cannot run: {exc}")
                return False
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
        if session.push_out is not None:
            try:
                await session.push_out.send(payload)
            except PushFailed as exc:
                await talk.refuse(ErrorCode.PUSH_FAILED, str(exc))
                return False
            receipt = session.compute.last_receipt
            assert receipt is not None, "a step that ran left its receipt"
            payload = StepReceipt(request.step, receipt).to_wire()
        await talk.send(payload)
        return True

    async def _pushed_input(self, talk: Conversation, session: _Session,
                            request: PushedStepRequest) -> StepRequest | None:
        """The step that runs `request` on the previous hop's pushed input; None when the
        client spoke or left while we waited (the session ends).

        Raises:
            PushFailed: no acceptable push came within ``push_timeout``.
            TransportError: the client left a frame unfinished meanwhile.
        """
        inbox = session.inbox
        assert inbox is not None
        pushed: StepResult | PushFailed | None = None
        interrupted: Message | TransportError | str | None = None

        async def take() -> None:
            nonlocal pushed
            try:
                with trio.fail_after(self.limits.push_timeout):
                    pushed = await inbox.take(request)
            except trio.TooSlowError:
                pushed = PushFailed(f"no input pushed within {self.limits.push_timeout} s")
            except PushFailed as exc:
                pushed = exc
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            nonlocal interrupted
            try:
                interrupted = await talk.next_message() or "the stream ended"
            except TransportError as exc:
                interrupted = exc
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take)
            nursery.start_soon(watch)
        if isinstance(interrupted, TransportError):
            raise interrupted
        if interrupted is not None:
            what = interrupted if isinstance(interrupted, str) else f"sent {interrupted.KIND}"
            logger.info("session %s from %s: %s during pushed step %d; ended", talk.session,
                        talk.peer, what, request.step)
            return None
        if isinstance(pushed, PushFailed):
            raise pushed
        assert pushed is not None
        return StepRequest(request.session_id, request.step, request.position_start,
                           pushed.receipt.body.output_hash, pushed.hidden)


def _code_of(exc: Exception) -> ErrorCode:
    if isinstance(exc, Busy):
        return ErrorCode.BUSY
    if isinstance(exc, SessionLengthExceeded):
        return ErrorCode.LENGTH_EXCEEDED
    return ErrorCode.BAD_REQUEST
