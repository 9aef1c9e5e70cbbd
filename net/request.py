"""One-shot exchanges: open a stream, send one request frame, read one answer frame, done.

Rules of this module (normative text: ``specs/transport.md`` section 3, "One-shot requests"):

- The whole exchange (dial, write, read) has one deadline, ``timeout``; the dial alone has
  ``dial_timeout`` within it (None: the host's own dial limit). Past the deadline
  :class:`RequestTimeout` is raised.
- The request is written under the peer's limit for it (``max_request``), the answer read
  under ours (``max_answer``, checked from its header before any body byte is read).
- After the whole answer frame the stream is half-closed (one request, one answer, then
  both sides close); on any failure, cancellation included, it is reset, shielded, so a
  timed-out exchange never leaves a stream behind.
- The answer is decoded by the caller's decoder (one of ``darwin.protocol``'s), in a worker
  thread when it is larger than ``DECODE_IN_THREAD`` bytes.
- Errors say what went wrong, as callers tell them apart: unreachable or a broken stream is
  the host's or the framing's :class:`TransportError` (``DialError``,
  ``ProtocolNotSupported``, ``StreamClosed``, ``FrameTooLarge``); too slow is
  :class:`RequestTimeout`; a bad answer is the decoder's ``RemoteProtocolError``. A peer id
  that does not parse is the host's ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

from darwin.net.framing import FrameConfig, FramedStream, TransportError
from darwin.net.host import Host

__all__ = ["DECODE_IN_THREAD", "Reply", "RequestTimeout", "request"]

T = TypeVar("T")

# Answers above this size are decoded in a worker thread (as forward frames are): the
# msgpack decode and the checks after it would otherwise stall every other stream.
DECODE_IN_THREAD = 256 * 1024
# Seconds a reset may take after a failure before we give up on it.
_RESET_TIMEOUT = 1.0


class RequestTimeout(TransportError):
    """A one-shot exchange did not complete within its deadline."""


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A decoded answer, and how long it took the peer to give it."""

    answer: T
    # Seconds from the start of the request's write to the end of the answer's read (the
    # dial is not included): a round trip for routing.
    round_trip: float


async def request(
    host: Host,
    peer: str,
    protocol: str,
    payload: bytes,
    decode: Callable[[bytes], T],
    *,
    max_request: int,
    max_answer: int,
    timeout: float,
    dial_timeout: float | None = None,
    addrs: Iterable[str] = (),
) -> Reply[T]:
    """Send ``payload`` to ``peer`` over a new ``protocol`` stream; its answer, decoded.

    Args:
        decode: turns the answer frame into a message (raises ``RemoteProtocolError``).
        max_request: the peer's limit on our request frame; a larger one is not sent.
        max_answer: the largest answer frame we read.
        timeout: seconds for the whole exchange, dial included.
        dial_timeout: seconds for the dial within it (None: the host's ``dial_timeout``).
        addrs: addresses to try for ``peer`` (hints from the DHT or a request).

    Raises:
        RequestTimeout: no whole answer within ``timeout``.
        TransportError: ``peer`` unreachable, the protocol refused, the stream broke, or a
            frame over its limit.
        RemoteProtocolError: the answer does not decode (whatever ``decode`` raises).
    """
    config = FrameConfig(max_frame_size=max_answer, max_write_size=max_request,
                         frame_timeout=None, idle_timeout=None, write_timeout=None)
    framed: FramedStream | None = None
    try:
        with trio.fail_after(timeout):
            stream = await host.open_stream(peer, protocol, addrs=addrs, timeout=dial_timeout)
            framed = FramedStream(stream, config)
            sent = trio.current_time()
            await framed.write(payload)
            data = await framed.read()
            round_trip = trio.current_time() - sent
            await framed.close()
    except BaseException as exc:
        if framed is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(_RESET_TIMEOUT):
                await framed.reset()
        if isinstance(exc, trio.TooSlowError):
            raise RequestTimeout(f"{protocol} to {peer}: no answer within {timeout} s") from None
        raise
    if len(data) > DECODE_IN_THREAD:
        return Reply(await trio.to_thread.run_sync(decode, data), round_trip)
    return Reply(decode(data), round_trip)
