"""Pushed activations: a hop hands its step result straight to the next hop (``/darwin/push/1``).

Rules (normative text: ``specs/forward-protocol.md``, "Pushed activations"):
- A session opened with ``push_to`` opens one push stream to that peer before it answers the
  open (`PushLinks.connect`), writes each step's `StepResult` frame there before it answers
  the client (with the receipt alone), and closes the stream when the session ends.
- A session opened with ``push_from`` takes its inputs from an `Inbox`, registered under its
  session id and first layer before it answers the open (`PushLinks.inbox`).
- A push stream carries one session: its first frame binds it. Every frame must be a
  `StepResult` whose receipt is signed by the stream's peer (authenticated by Noise), who must
  be the session's ``push_from``, for a span that ends where the session's starts. Anything
  else is answered with an error frame and ends the stream. However the stream ends, the inbox
  it fed is broken, so a step waiting on it fails at once instead of at its timeout. A stream
  refused before its first frame named a session (the frame is not a message) breaks every
  inbox still waiting for that peer's first push.
- An inbox holds at most one pushed step: the previous hop cannot run ahead of the client.
- A push from the session's own ``push_from`` whose receipt is not its own or does not verify
  is certainly that peer's protocol violation (the stream is authenticated): the node records
  it in its ledger (a ``protocol_violation`` entry, ``specs/ledger.md`` §7), once per inbox,
  before the push is refused, so the waiting step fails only once it is committed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

import trio

from darwin.ledger import Ledger, LedgerError
from darwin.ledger.entries import MAX_REASON_CHARS
from darwin.net.framing import FrameConfig, FramedStream, TransportError
from darwin.net.host import Host, Stream
from darwin.net.protocols import PUSH_PROTOCOL
from darwin.node.config import ForwardLimits
from darwin.node.serving.conversation import Conversation
from darwin.protocol import (
    ErrorCode,
    PushedStepRequest,
    RemoteProtocolError,
    SessionId,
    StepResult,
)

__all__ = ["Inbox", "PushFailed", "PushLinks", "PushOut", "PushViolation"]

logger = logging.getLogger(__name__)


class PushFailed(Exception):
    """A session's push link failed; the message says how (for the error frame and logs)."""


class PushViolation(PushFailed):
    """The session's own pusher pushed a receipt that is not its own or does not verify."""


class Inbox:
    """Where the previous hop's pushes wait for the session that takes them as inputs."""

    def __init__(self, pusher: str, span_start: int) -> None:
        self.pusher = pusher  # the only peer whose pushes are accepted
        self.span_start = span_start  # a pushed receipt's span must end here
        self._send, self._receive = trio.open_memory_channel[StepResult](1)
        self._broken: str | None = None  # why no more pushes will come
        self.fed = False  # whether a push stream has bound it

    @property
    def broken(self) -> bool:
        """Whether no more pushes will be taken."""
        return self._broken is not None

    def put(self, result: StepResult) -> None:
        """Hand over one pushed step.

        Raises:
            PushFailed: the previous step's push was not taken yet, or the inbox is broken.
        """
        try:
            self._send.send_nowait(result)
        except trio.WouldBlock:
            raise PushFailed("pushed a step before the previous one was taken") from None
        except trio.ClosedResourceError:
            raise PushFailed(self._broken or "the inbox is closed") from None

    def break_(self, reason: str) -> None:
        """No more pushes will come; a waiting `take` fails with `reason` (once drained).
        The first reason is the one that counts."""
        if self._broken is None:
            self._broken = reason
            self._send.close()

    async def take(self, request: PushedStepRequest) -> StepResult:
        """Wait for the pushed input of `request` (the caller bounds the wait).

        Raises:
            PushFailed: the inbox broke, or the push is not of this step and positions.
        """
        try:
            result = await self._receive.receive()
        except trio.EndOfChannel:
            raise PushFailed(self._broken or "the inbox is closed") from None
        body = result.receipt.body
        if (body.step, body.position_start, body.position_count) != (
                request.step, request.position_start, request.position_count):
            raise PushFailed(
                f"pushed step {body.step} at positions {body.position_start}+"
                f"{body.position_count}; step {request.step} at {request.position_start}+"
                f"{request.position_count} was asked for")
        return result


class PushOut:
    """The stream on which a session pushes its step results to the next hop."""

    def __init__(self, framed: FramedStream, peer: str) -> None:
        self.framed = framed
        self.peer = peer

    async def send(self, payload: bytes) -> None:
        """Push one encoded `StepResult`.

        Raises:
            PushFailed: the stream is broken or the next hop does not read.
        """
        try:
            await self.framed.write(payload)
        except TransportError as exc:
            raise PushFailed(f"cannot push to {self.peer}: {exc}") from exc

    async def aclose(self) -> None:
        """End the stream (the next hop's inbox breaks); never raises."""
        await self.framed.close()


class PushLinks:
    """A node's push links: the inboxes of its pushed sessions, and the ``/darwin/push/1``
    handler that fills them; also opens the streams its own sessions push on."""

    def __init__(self, host: Host, limits: ForwardLimits, ledger: Ledger | None = None) -> None:
        self.host = host
        self.limits = limits
        self.ledger = ledger  # where a pusher's protocol violations are recorded
        self._inboxes: dict[tuple[SessionId, int], Inbox] = {}

    def inbox(self, session_id: SessionId, pusher: str, span_start: int) -> Inbox:
        """Register the inbox of a session that takes its inputs from `pusher`.

        Raises:
            PushFailed: a session with this id and first layer already takes pushes here.
        """
        key = (session_id, span_start)
        if key in self._inboxes:
            raise PushFailed("a session with this id already takes pushes for these layers")
        inbox = self._inboxes[key] = Inbox(pusher, span_start)
        return inbox

    def drop(self, session_id: SessionId, inbox: Inbox) -> None:
        """Forget a session's inbox (its session ended)."""
        key = (session_id, inbox.span_start)
        if self._inboxes.get(key) is inbox:
            del self._inboxes[key]
        inbox.break_("the session ended")

    async def connect(self, peer: str, addrs: Iterable[str]) -> PushOut:
        """Open a push stream to `peer` (the next hop).

        Raises:
            PushFailed: it cannot be reached or does not speak the push protocol.
        """
        limits = self.limits
        try:
            stream = await self.host.open_stream(peer, PUSH_PROTOCOL, addrs=addrs,
                                                 timeout=limits.push_dial_timeout)
        except (TransportError, ValueError) as exc:
            raise PushFailed(f"cannot open {PUSH_PROTOCOL} to {peer}: {exc}") from exc
        config = FrameConfig(max_frame_size=limits.max_frame_size,
                             frame_timeout=limits.frame_timeout, idle_timeout=None,
                             write_timeout=limits.write_timeout)
        return PushOut(FramedStream(stream, config), peer)

    async def __call__(self, stream: Stream) -> None:
        """Serve one push stream: deliver its frames to the inbox it binds (module rules)."""
        talk = Conversation(stream, self.limits)
        bound: Inbox | None = None
        reason = "the previous hop's push stream ended"
        try:
            while (message := await talk.next_message()) is not None:
                if not isinstance(message, StepResult):
                    reason = f"pushed a {message.KIND}"
                    await talk.refuse(ErrorCode.BAD_REQUEST, f"{reason}; only step results")
                    return
                try:
                    bound = self._bind(talk, bound, message)
                    _check_pushed(talk, message)
                    bound.put(message)
                except PushFailed as exc:
                    reason = str(exc)
                    if isinstance(exc, PushViolation) and bound is not None \
                            and not bound.broken:
                        await self._record_violation(talk.peer, reason)
                    await talk.refuse(ErrorCode.BAD_REQUEST, reason)
                    return
        finally:
            if bound is not None:
                bound.break_(reason)
            elif talk.refusal is not None:
                self._break_unfed(talk.peer, talk.refusal)

    def _break_unfed(self, peer: str, reason: str) -> None:
        """The peer's stream was refused before it named a session (its first frame was not a
        message): break every inbox still waiting for that peer's first push, since any of
        them may be the one it was meant for."""
        for inbox in self._inboxes.values():
            if inbox.pusher == peer and not inbox.fed:
                inbox.break_(f"the previous hop's push was refused: {reason}")

    async def _record_violation(self, peer: str, reason: str) -> None:
        """Append the violation to the ledger (worker thread); a ledger error is logged."""
        if self.ledger is None:
            return
        try:
            await trio.to_thread.run_sync(self.ledger.record_violation, peer,
                                       reason[:MAX_REASON_CHARS])
        except (LedgerError, sqlite3.Error) as exc:
            logger.warning("violation by %s not recorded: %s", peer, exc)

    def _bind(self, talk: Conversation, bound: Inbox | None, result: StepResult) -> Inbox:
        """The inbox `result` is for: the stream's peer must be its pusher, and a stream
        carries one session.

        Raises:
            PushFailed: no session here takes this peer's pushes for this id and layer.
        """
        body = result.receipt.body
        inbox = self._inboxes.get((body.session_id, body.span_end))
        talk.session = body.session_id.hex()
        if inbox is None or inbox.pusher != talk.peer:
            raise PushFailed(f"no session here takes pushes from {talk.peer} for this id "
                             f"and layer {body.span_end}")
        if bound is not None and inbox is not bound:
            raise PushFailed("a push stream carries one session")
        inbox.fed = True
        return inbox


def _check_pushed(talk: Conversation, result: StepResult) -> None:
    """Raises PushViolation: unless the pushed receipt is signed by the stream's peer."""
    if result.receipt.body.node_id != talk.peer:
        raise PushViolation(f"the pushed receipt is signed for {result.receipt.body.node_id}")
    try:
        result.receipt.verify()
    except RemoteProtocolError as exc:
        raise PushViolation(f"the pushed receipt does not verify: {exc}") from exc
