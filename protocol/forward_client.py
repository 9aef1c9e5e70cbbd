"""The client side of one ``/darwin/forward/1`` stream, as a state machine without I/O.

Rules (``specs/forward-protocol.md``):
- A stream carries one session: the client sends `OpenSession` and waits for the
  `SessionOpened` that grants it (same session and span, at least the ``max_length`` asked);
  then one step at a time, each answered before the next is sent; then `CloseSession`.
- Steps are numbered ``0, 1, 2, ...``; each starts at the position where the previous one
  ended. Asking out of turn is our own bug (`LocalProtocolError`).
- A session opened with ``push_from`` is sent `PushedStepRequest` (its input is pushed by the
  previous hop), any other `StepRequest`. A session opened with ``push_to`` answers a step
  with `StepReceipt` (its output went on to the next hop), any other with `StepResult`, whose
  output has the shape and dtype of the step's input.
- Every answer's receipt is checked against this stream's exchange (node, model, adapter,
  session, step, span, positions, the input we sent, the output we got, the signature). A
  pushed input or a pushed-on output is known here only by the receipt's own hash: the route
  checks those links (`check_link`).
- An error frame refusing a step (``bad_request``, ``length_exceeded``, ``unknown_session``)
  raises `Refused`: the step changed nothing, the stream stays open. Any other error frame
  raises `Aborted`: the node ended the session. Any other wrong answer raises
  `RemoteProtocolError` (`ReceiptError` or `SignatureError` for a receipt that does not
  check). After `Aborted` or a wrong answer only `close` is left.
- The driver writes what `open`, `step`, `pushed_step` and `close` return, and hands
  `receive` each decoded answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .identity import PeerId
from .messages import (
    CloseSession,
    ErrorCode,
    ErrorFrame,
    Message,
    OpenSession,
    PushedStepRequest,
    SessionOpened,
    StepReceipt,
    StepRequest,
    StepResult,
)
from .receipt import Receipt
from .tensors import DType, WireTensor
from .trace import check_receipt

AnyStepRequest = StepRequest | PushedStepRequest

# Error codes with which a node refuses one step and keeps the session.
STEP_REFUSAL_CODES = frozenset(
    {ErrorCode.BAD_REQUEST, ErrorCode.LENGTH_EXCEEDED, ErrorCode.UNKNOWN_SESSION})


class ClientState(Enum):
    """Where the client's side of a forward stream is."""

    START = "start"  # nothing sent yet
    OPENING = "opening"  # OpenSession sent, its answer due
    OPEN = "open"  # a step may be sent
    STEPPING = "stepping"  # a step sent, its answer due
    FAILED = "failed"  # the node ended the session or broke the protocol; only close is left
    CLOSED = "closed"  # CloseSession sent


class Refused(LocalProtocolError):
    """The node refused our step (`code`): a bug on our side; nothing changed on either side
    and the stream stays open."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Aborted(ProtocolError):
    """The node ended the session with an error frame (`code`): it refused to open it, could
    not run a step, or lost its push link (``push_failed``, nobody's fault alone)."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class BrokenLink(RemoteProtocolError):
    """A pushed hop's input is not the output the previous hop's receipt names: either end
    of the link may have lied, so neither is to blame alone."""


@dataclass(frozen=True)
class Opened:
    """Event: the node granted the session."""

    reply: SessionOpened


@dataclass(frozen=True)
class Answered:
    """Event: a step ran and its receipt checks against this stream's exchange."""

    request: AnyStepRequest
    receipt: Receipt
    hidden: WireTensor | None  # the output; None from a hop that pushed it to the next


Event = Opened | Answered


@dataclass(frozen=True)
class _Pending:
    """The step whose answer is due, and the shape and dtype its output must have."""

    request: AnyStepRequest
    shape: tuple[int, ...]
    dtype: DType


class ClientSession:
    """The client's protocol state for one forward stream to `node`."""

    def __init__(self, node: PeerId) -> None:
        self.node = node
        self.state = ClientState.START
        self.request: OpenSession | None = None
        self.next_step = 0
        self.position = 0  # where the next step starts
        self._pending: _Pending | None = None

    @property
    def pushes(self) -> bool:
        """Whether the node pushes its outputs on and answers steps with receipts alone."""
        return self.request is not None and self.request.push_to is not None

    @property
    def pushed(self) -> bool:
        """Whether the node takes its inputs from the previous hop's pushes."""
        return self.request is not None and self.request.push_from is not None

    def open(self, request: OpenSession) -> OpenSession:
        """Start the session with `request`; returns it, to send."""
        self._require(ClientState.START, "open a session")
        self.request = request
        self.state = ClientState.OPENING
        return request

    def step(self, step: int, hidden: WireTensor) -> StepRequest:
        """The request for step `step` on `hidden` (batch, seq, hidden), to send."""
        self._check_next(step, pushed=False)
        assert self.request is not None
        request = StepRequest.create(self.request.session_id, step, self.position, hidden)
        self._send(_Pending(request, hidden.shape, hidden.dtype))
        return request

    def pushed_step(self, step: int, shape: tuple[int, ...], dtype: DType) -> PushedStepRequest:
        """The request for step `step` on the pushed input of `shape` and `dtype` (batch, seq,
        hidden), to send."""
        self._check_next(step, pushed=True)
        assert self.request is not None
        request = PushedStepRequest(self.request.session_id, step, self.position, shape[1])
        self._send(_Pending(request, shape, dtype))
        return request

    def close(self) -> CloseSession:
        """The request that ends the session, to send (or the stream is reset instead)."""
        if self.state is ClientState.CLOSED:
            raise LocalProtocolError("the session is already closed")
        if self.request is None:
            raise LocalProtocolError("no session was opened")
        self.state = ClientState.CLOSED
        self._pending = None
        return CloseSession(self.request.session_id)

    def receive(self, message: Message) -> Event:
        """Take the node's decoded answer to what we sent last.

        Raises:
            Refused: the node refused the step; send it again corrected, or give up.
            Aborted: the node ended the session with an error frame.
            RemoteProtocolError: the answer is not one the protocol allows here
                (`ReceiptError`, `SignatureError`: its receipt does not check).
        """
        if self.state is ClientState.OPENING:
            take: Callable[[Message], Event] = self._opened
        elif self.state is ClientState.STEPPING:
            take = self._answered
        else:
            raise RemoteProtocolError(f"sent {message.KIND} when no answer was due")
        try:
            return take(message)
        except Refused:
            raise
        except ProtocolError:
            self.state = ClientState.FAILED  # nothing but close is left
            raise

    def _opened(self, reply: Message) -> Opened:
        request = self.request
        assert request is not None
        if isinstance(reply, ErrorFrame):
            raise Aborted(reply.code, f"refused the session ({reply.code.value}: "
                                      f"{reply.message})")
        if not isinstance(reply, SessionOpened) or (
                reply.session_id, reply.span_start, reply.span_end) != (
                request.session_id, request.span_start, request.span_end):
            raise RemoteProtocolError(f"answered open_session with an unexpected {reply.KIND}")
        if reply.max_length < request.max_length:
            raise RemoteProtocolError(f"granted max_length {reply.max_length}, "
                                      f"{request.max_length} needed")
        self.state = ClientState.OPEN
        return Opened(reply)

    def _answered(self, reply: Message) -> Answered:
        pending = self._pending
        assert pending is not None and self.request is not None
        request = pending.request
        if isinstance(reply, ErrorFrame):
            reason = f"step {request.step} ({reply.code.value}: {reply.message})"
            if reply.code in STEP_REFUSAL_CODES:
                self._pending = None
                self.state = ClientState.OPEN
                raise Refused(reply.code, f"{self.node} refused {reason}")
            raise Aborted(reply.code, f"failed {reason}")
        expected = StepReceipt if self.pushes else StepResult
        if not isinstance(reply, expected) or reply.step != request.step:
            raise RemoteProtocolError(
                f"answered step {request.step} with an unexpected {reply.KIND}")
        hidden = reply.hidden if isinstance(reply, StepResult) else None
        if hidden is not None and (hidden.shape, hidden.dtype) != (pending.shape,
                                                                   pending.dtype):
            raise RemoteProtocolError(
                f"returned {hidden.dtype.value} {list(hidden.shape)} for "
                f"{pending.dtype.value} {list(pending.shape)}")
        body = reply.receipt.body
        check_receipt(
            reply.receipt, expected_node=self.node, model_id=self.request.model_id,
            session_id=self.request.session_id, step=request.step,
            span=(self.request.span_start, self.request.span_end),
            input_hash=request.input_hash if isinstance(request, StepRequest)
            else body.input_hash,
            output_hash=body.output_hash,  # a StepResult's is its hidden's digest
            adapter_id=self.request.adapter_id,
            positions=(request.position_start, request.position_count),
        )
        self._pending = None
        self.state = ClientState.OPEN
        self.next_step += 1
        self.position += request.position_count
        return Answered(request, reply.receipt, hidden)

    def _check_next(self, step: int, pushed: bool) -> None:
        self._require(ClientState.OPEN, "send a step")
        if pushed != self.pushed:
            raise LocalProtocolError("this session takes its input from the previous hop's "
                                     "push" if self.pushed else
                                     "this session takes its input from the client")
        if step != self.next_step:
            raise LocalProtocolError(f"step {step} out of order, expected {self.next_step}")

    def _send(self, pending: _Pending) -> None:
        self._pending = pending
        self.state = ClientState.STEPPING

    def _require(self, state: ClientState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {what} in state {self.state.value}")


def check_link(previous: Receipt, receipt: Receipt) -> None:
    """Check that a pushed hop's `receipt` takes as input the output `previous` names.

    Raises:
        BrokenLink: it does not (``specs/forward-protocol.md``, "Nobody is blamed for a link").
    """
    if receipt.body.input_hash != previous.body.output_hash:
        raise BrokenLink(f"step {receipt.body.step}: its input is not the output of "
                         f"{previous.body.node_id}")
