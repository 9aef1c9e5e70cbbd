"""The server side of one ``/darwin/forward/1`` stream, as a state machine without I/O.

Rules (``specs/forward-protocol.md``):
- A stream carries one session: ``OpenSession`` first, then ``StepRequest`` frames, then
  ``CloseSession`` (or the stream ends). Anything else in a state is a ``Refusal``.
- Open is accepted only for the served model, without an adapter (until adapters land), for a
  span inside the served one, and for a ``max_length`` the node's policy allows.
- Steps run ``0, 1, 2, ...``; each starts at the position where the previous one ended and
  must fit in the session's ``max_length``. A refused step changes nothing, so the client may
  retry it.
- A session opened with ``push_from`` takes ``PushedStepRequest`` (its input comes from the
  previous hop's push); any other session takes ``StepRequest``. The other kind is refused.
- The driver calls `ServerSession.receive` with each decoded message and acts on the returned
  event; after running a step it calls `ServerSession.step_done`, or `step_failed` when the
  step could not run (the client may then retry it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import RemoteProtocolError
from .ids import ModelId
from .messages import (
    CloseSession,
    ErrorCode,
    Message,
    OpenSession,
    PushedStepRequest,
    SessionOpened,
    StepRequest,
)

AnyStepRequest = StepRequest | PushedStepRequest


class SessionState(Enum):
    """Where a forward stream is."""

    AWAIT_OPEN = "await_open"
    OPEN = "open"
    CLOSED = "closed"


class Refusal(RemoteProtocolError):
    """The client's message is not acceptable now; `code` goes into the error frame."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class ServePolicy:
    """What a node accepts on its forward streams."""

    model_id: ModelId  # the model the node serves
    span_start: int  # first layer it serves
    span_end: int  # end of its span (exclusive)
    max_length: int  # longest session it admits
    retention_s: int  # promised in SessionOpened and in every receipt


@dataclass(frozen=True)
class Opened:
    """Event: a session was admitted; send `reply` and allocate its state."""

    request: OpenSession
    reply: SessionOpened


@dataclass(frozen=True)
class RunStep:
    """Event: run this step, then call `ServerSession.step_done`."""

    request: AnyStepRequest


@dataclass(frozen=True)
class Closed:
    """Event: the client closed the session."""


Event = Opened | RunStep | Closed


class ServerSession:
    """One forward stream's protocol state."""

    def __init__(self, policy: ServePolicy) -> None:
        self.policy = policy
        self.state = SessionState.AWAIT_OPEN
        self.opened: OpenSession | None = None
        self.next_step = 0
        self.position = 0
        self._running: AnyStepRequest | None = None

    def receive(self, message: Message) -> Event:
        """Take a decoded client message and say what to do.

        Raises:
            Refusal: the message is not acceptable in this state.
        """
        if self.state is SessionState.CLOSED:
            raise Refusal(ErrorCode.BAD_REQUEST, "the session is closed")
        if self.state is SessionState.AWAIT_OPEN:
            if not isinstance(message, OpenSession):
                raise Refusal(ErrorCode.BAD_REQUEST,
                              f"expected open_session, got {message.KIND}")
            return self._open(message)
        if isinstance(message, StepRequest | PushedStepRequest):
            return RunStep(self._check_step(message))
        if isinstance(message, CloseSession):
            self._check_session_id(message.session_id)
            self.state = SessionState.CLOSED
            return Closed()
        raise Refusal(ErrorCode.BAD_REQUEST, f"unexpected {message.KIND} in an open session")

    def step_done(self, request: AnyStepRequest) -> None:
        """Advance past a step that ran; only the step `receive` returned may be reported."""
        assert request is self._running, "step_done for a step that was not started"
        self._running = None
        self.next_step += 1
        self.position += request.position_count

    def step_failed(self, request: AnyStepRequest) -> None:
        """Forget a step that `receive` returned but that could not run; nothing advances."""
        assert request is self._running, "step_failed for a step that was not started"
        self._running = None

    def _open(self, request: OpenSession) -> Opened:
        policy = self.policy
        if request.model_id != policy.model_id:
            raise Refusal(ErrorCode.UNKNOWN_MODEL, "this node serves another model")
        if request.adapter_id is not None:
            raise Refusal(ErrorCode.ADAPTER_UNAVAILABLE, "this node serves no adapter")
        if not policy.span_start <= request.span_start < request.span_end <= policy.span_end:
            raise Refusal(ErrorCode.SPAN_UNAVAILABLE,
                          f"span [{request.span_start}, {request.span_end}) is outside the "
                          f"served [{policy.span_start}, {policy.span_end})")
        if request.max_length > policy.max_length:
            raise Refusal(ErrorCode.LENGTH_EXCEEDED,
                          f"max_length {request.max_length} exceeds {policy.max_length}")
        self.state = SessionState.OPEN
        self.opened = request
        reply = SessionOpened(session_id=request.session_id, span_start=request.span_start,
                              span_end=request.span_end, max_length=request.max_length,
                              retention_s=policy.retention_s)
        return Opened(request, reply)

    def _check_step(self, request: AnyStepRequest) -> AnyStepRequest:
        assert self.opened is not None
        self._check_session_id(request.session_id)
        pushed = self.opened.push_from is not None
        if pushed != isinstance(request, PushedStepRequest):
            raise Refusal(ErrorCode.BAD_REQUEST,
                          "this session takes its input from the previous hop's push"
                          if pushed else "this session takes its input from the client")
        if self._running is not None:
            raise Refusal(ErrorCode.BAD_REQUEST, "a step is already running")
        if request.step != self.next_step:
            raise Refusal(ErrorCode.BAD_REQUEST,
                          f"step {request.step} out of order, expected {self.next_step}")
        if request.position_start != self.position:
            raise Refusal(ErrorCode.BAD_REQUEST,
                          f"step starts at position {request.position_start}, "
                          f"the session is at {self.position}")
        if self.position + request.position_count > self.opened.max_length:
            raise Refusal(ErrorCode.LENGTH_EXCEEDED,
                          f"{request.position_count} more tokens pass max_length "
                          f"{self.opened.max_length}")
        self._running = request
        return request

    def _check_session_id(self, session_id: bytes) -> None:
        assert self.opened is not None
        if session_id != self.opened.session_id:
            raise Refusal(ErrorCode.UNKNOWN_SESSION, "message names another session")
