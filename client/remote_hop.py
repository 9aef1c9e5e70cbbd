"""A hop over the network: one `/darwin/forward/1` stream carrying one session on one node.

Rules (``specs/forward-protocol.md``):
- The protocol's rules (what may be sent and answered when, step numbers and positions,
  receipts checked against the exchange, error frames) are those of the sans-I/O
  `darwin.protocol.forward_client.ClientSession`; `RemoteHop` dials, writes what it says to
  send, reads, decodes, and bounds every wait.
- Every wait is bounded (`HopConfig`); every frame read is bounded in size before it is read
  and decoded under the protocol's limits.
- Whatever makes the hop unusable (dial failure, closed or reset stream, timeout, an error frame
  other than a refused step, a malformed or mismatched answer) raises `HopFailed`, and the
  stream is reset: the caller routes around the node. What is the node's own fault (a
  malformed, mismatched or out-of-order answer, a receipt that does not check) is a
  `HopViolation`; after a receipt that does not check the stream still works and is closed
  politely. An error frame refusing
  a step (``bad_request``, ``length_exceeded``, ``unknown_session``) raises `StepRefused`.
- A hop opened with `HopLinks` pushes its results to the next hop and/or takes its inputs
  from the previous hop's pushes (``specs/forward-protocol.md``, "Pushed activations"). A
  step may be sent (`request`, or `request_pushed` for a pushed one) and read (`result`)
  apart, so a client can ask every hop of a route before the first one answers. A hop that
  pushes answers with its receipt alone (`StepReceipt`). An error frame ``push_failed``
  raises `LinkFailed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import trio

from darwin.client.session import HopFailed, HopViolation, LinkFailed, StepRefused
from darwin.model.torch_wire import from_wire, to_wire, wire_dtype
from darwin.net.framing import FrameConfig, FramedStream, TransportError
from darwin.net.host import Host
from darwin.net.protocols import FORWARD_PROTOCOL
from darwin.protocol import (
    AdapterId,
    ErrorCode,
    Message,
    ModelId,
    OpenSession,
    PeerId,
    Receipt,
    ReceiptError,
    RemoteProtocolError,
    SessionId,
    SignatureError,
    decode,
)
from darwin.protocol.forward_client import Aborted, Answered, ClientSession, Event, Refused

logger = logging.getLogger(__name__)

MAX_FORWARD_FRAME = 64 * 2**20  # forward-protocol.md, "Limits"


@dataclass(frozen=True)
class HopConfig:
    """Time and size bounds of one remote hop."""

    open_timeout: float = 10.0  # seconds to dial, negotiate the protocol and get SessionOpened
    step_timeout: float = 120.0  # seconds from sending a step to holding its whole result
    close_timeout: float = 2.0  # seconds to say CloseSession before the stream is reset
    max_frame_size: int = MAX_FORWARD_FRAME  # largest frame read or written


@dataclass(frozen=True)
class HopTarget:
    """Where a hop runs: a node, how to reach it, and the blocks it should run for us."""

    peer_id: str
    addrs: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True)
class HopLinks:
    """The push links of one hop: who pushes its inputs, where it pushes its results."""

    push_from: str | None = None  # the previous hop's peer id
    push_to: HopTarget | None = None  # the next hop


@dataclass(frozen=True)
class SessionTerms:
    """What every hop of one inference session is opened with."""

    session_id: SessionId
    model_id: ModelId
    max_length: int  # positions the session needs: prompt plus generated tokens
    adapter_id: AdapterId | None = None


class RemoteHop:
    """One session on one node, spoken over one forward stream: the I/O around a
    `ClientSession`, which holds the protocol's rules."""

    def __init__(self, target: HopTarget, framed: FramedStream, config: HopConfig) -> None:
        self.target = target
        self.framed = framed
        self.config = config
        self.machine = ClientSession(PeerId(target.peer_id))
        self.closed = False

    @property
    def span(self) -> tuple[int, int]:
        return (self.target.start, self.target.end)

    @property
    def peer_id(self) -> PeerId:
        return PeerId(self.target.peer_id)

    @classmethod
    async def open(cls, host: Host, target: HopTarget, terms: SessionTerms,
                   config: HopConfig = HopConfig(), links: HopLinks = HopLinks()) -> RemoteHop:
        """Open a forward stream to `target` and start the session on it.

        Raises:
            LinkFailed: the node could not set up its push link.
            HopFailed: the node is unreachable, slow, refused the session, or answered with
                anything but the `SessionOpened` we asked for.
        """
        peer = target.peer_id
        try:
            stream = await host.open_stream(peer, FORWARD_PROTOCOL, addrs=target.addrs,
                                            timeout=config.open_timeout)
        except (TransportError, ValueError) as exc:
            raise HopFailed(peer, f"cannot open {FORWARD_PROTOCOL}: {exc}") from exc
        frame_config = FrameConfig(max_frame_size=config.max_frame_size,
                                   frame_timeout=config.step_timeout, idle_timeout=None,
                                   write_timeout=config.step_timeout)
        hop = cls(target, FramedStream(stream, frame_config), config)
        push_to = links.push_to
        request = hop.machine.open(OpenSession(
            session_id=terms.session_id, model_id=terms.model_id, adapter_id=terms.adapter_id,
            span_start=target.start, span_end=target.end, max_length=terms.max_length,
            push_from=None if links.push_from is None else PeerId(links.push_from),
            push_to=None if push_to is None else PeerId(push_to.peer_id),
            push_addrs=() if push_to is None else push_to.addrs))
        await hop._take(await hop._exchange(request, config.open_timeout, "open"))
        logger.debug("opened session %s on %s for blocks [%d, %d)",
                     terms.session_id.hex(), peer, target.start, target.end)
        return hop

    async def step(self, step: int, hidden: torch.Tensor) -> tuple[torch.Tensor, Receipt]:
        """Run one step (hidden states (batch, seq, hidden)) and return the output and receipt.

        Raises:
            HopFailed: the hop cannot go on (see the module rules).
            StepRefused: the node refused this step as malformed or out of order.
        """
        assert not self.machine.pushes, "a pushing hop's output goes to the next hop"
        await self.request(step, hidden)
        output, receipt = await self.result(step, hidden)
        assert output is not None
        return output, receipt

    async def request(self, step: int, hidden: torch.Tensor) -> None:
        """Send step `step` (read the answer with `result`; raises `HopFailed`)."""
        await self._send(self.machine.step(step, to_wire(hidden)), f"step {step}")

    async def request_pushed(self, step: int, like: torch.Tensor) -> None:
        """Ask for step `step` on the input the previous hop pushes, as long as `like`
        (read the answer with `result`).

        Raises:
            HopFailed: the stream broke or the node does not read.
        """
        request = self.machine.pushed_step(step, tuple(like.shape), wire_dtype(like.dtype))
        await self._send(request, f"step {step}")

    async def result(self, step: int,
                     like: torch.Tensor) -> tuple[torch.Tensor | None, Receipt]:
        """Read the answer to step `step`, whose output must have the shape and dtype of
        `like`: the output (None from a hop that pushes it to the next) and its receipt.

        Raises:
            HopFailed: the hop cannot go on (see the module rules).
            LinkFailed: the node says the step's push link failed.
            StepRefused: the node refused this step as malformed or out of order.
        """
        answered = await self._take(await self._receive(self.config.step_timeout,
                                                        f"step {step}"))
        assert isinstance(answered, Answered) and answered.request.step == step
        output = None if answered.hidden is None else from_wire(answered.hidden)
        return output, answered.receipt

    async def aclose(self) -> None:
        """Close the session politely if the stream still works; never raises."""
        if self.closed:
            return
        self.closed = True
        with trio.move_on_after(self.config.close_timeout) as scope:
            try:
                await self.framed.write(self.machine.close().to_wire())
            except TransportError:
                scope.cancel()
        if scope.cancelled_caught:
            await self.framed.reset()
        else:
            await self.framed.close()

    async def _take(self, reply: Message) -> Event:
        """Hand `reply` to the protocol state; what it refuses becomes the hop's failure.

        Raises:
            StepRefused: the node refused our step; the stream stays open.
            LinkFailed: the node lost its push link (``push_failed``).
            HopFailed: the node ended the session; HopViolation: its answer breaks the protocol; the
                stream is reset, unless only the receipt failed to check (it is closed later).
        """
        try:
            return self.machine.receive(reply)
        except Refused as refusal:
            raise StepRefused(refusal.reason) from None
        except (ReceiptError, SignatureError) as exc:
            step = self.machine.next_step
            raise HopViolation.at_step(self.peer_id, step, exc) from exc
        except Aborted as abort:
            await self._abort()
            failure = LinkFailed if abort.code is ErrorCode.PUSH_FAILED else HopFailed
            raise failure(self.peer_id, abort.reason) from None
        except RemoteProtocolError as exc:
            await self._abort()
            raise HopViolation(self.peer_id, exc.reason) from None

    async def _exchange(self, request: Message, timeout: float, what: str) -> Message:
        """Send one frame and read one answer within `timeout` seconds.

        Raises:
            HopFailed: the stream broke, the time ran out, or the answer is not a message.
        """
        with trio.move_on_after(timeout) as scope:
            await self._send(request, what)
            return await self._receive(scope.deadline - trio.current_time(), what)
        await self._abort()
        raise HopFailed(self.peer_id, f"no answer to {what} within {timeout} s")

    async def _send(self, request: Message, what: str) -> None:
        """Write one frame within the step timeout (raises `HopFailed`)."""
        timeout = self.config.step_timeout
        try:
            with trio.fail_after(timeout):
                await self.framed.write(request.to_wire())
                return
        except trio.TooSlowError:
            reason = f"did not take {what} within {timeout} s"
        except TransportError as exc:
            reason = f"stream failed during {what}: {exc}"
        await self._abort()
        raise HopFailed(self.peer_id, reason)

    async def _receive(self, timeout: float, what: str) -> Message:
        """Read one answer within `timeout` seconds.

        Raises:
            HopFailed: the stream broke, the time ran out, or the answer is not a message.
        """
        try:
            with trio.fail_after(timeout):
                return decode(await self.framed.read())
        except trio.TooSlowError:
            reason = f"no answer to {what} within {timeout} s"
        except TransportError as exc:
            reason = f"stream failed during {what}: {exc}"
        except RemoteProtocolError as exc:
            await self._abort()
            raise HopViolation(self.peer_id, f"sent a malformed answer to {what}: {exc}") from None
        await self._abort()
        raise HopFailed(self.peer_id, reason)

    async def _abort(self) -> None:
        self.closed = True
        await self.framed.reset()
