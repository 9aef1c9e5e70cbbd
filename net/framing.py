"""Length-prefixed frames over a libp2p stream, and the node's transport errors.

Rules of this module (normative text: ``specs/transport.md``, section "Framing"):

- A frame is a 4-byte big-endian unsigned length ``n`` followed by exactly ``n``
  payload bytes. ``n = 0`` is a valid, empty frame. There is no other header:
  what the payload means is decided by the protocol id of the stream.
- Every reader has a hard limit. The declared length is checked against it
  before any body byte is requested, so a peer cannot make us read or allocate
  more than the limit by lying in the header. (A :class:`FramedStream` asks for
  up to ``READ_AHEAD`` bytes when it needs a header, taking at most what the
  muxer already holds; it never waits for body bytes of a refused frame.)
- One API: a stream is read and written only through its :class:`FramedStream`
  (it keeps read-ahead bytes for the next frame), under one :class:`FrameConfig`.
- A read has two clocks: ``idle_timeout`` bounds the wait for the first byte of a
  frame (an idle session may legitimately wait long), ``frame_timeout`` bounds the
  time from that first byte to the last one (a peer that starts a frame must finish
  it). Either raises :class:`FrameTimeout`.
- End of stream exactly at a frame boundary raises :class:`StreamClosed` with
  ``received == 0``; end of stream inside a frame (a half-open or truncating
  peer) raises it with the number of bytes of the frame that did arrive.
- Every failure is a :class:`TransportError`; a caller that catches that one
  base class never sees a libp2p exception escape from here.

The codec (:func:`encode_header`, :func:`decode_header`) is synchronous and does
no I/O; :class:`FramedStream` is the thin async shell.
"""

from __future__ import annotations

import contextlib
import math
import struct
from dataclasses import dataclass
from typing import Protocol

import trio
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.stream.exceptions import StreamReset
from libp2p.stream_muxer.exceptions import MuxedStreamReset

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER_SIZE",
    "MAX_ENCODABLE_SIZE",
    "READ_AHEAD",
    "ByteStream",
    "FrameConfig",
    "FrameError",
    "FrameTimeout",
    "FrameTooLarge",
    "FramedStream",
    "StreamClosed",
    "TransportError",
    "close_quietly",
    "decode_header",
    "encode_header",
    "reset_quietly",
]

HEADER_SIZE = 4
MAX_ENCODABLE_SIZE = 2**32 - 1
# Big enough for a 1024-token prefill of a 4096-wide fp32 model (16 MiB) plus its
# envelope; every protocol passes its own, usually smaller, limit.
DEFAULT_MAX_FRAME_SIZE = 32 * 1024 * 1024
# How much a FramedStream asks for when it needs a header (see FramedStream.read).
READ_AHEAD = 64 * 1024
# Above this size the header is written separately instead of being copied in
# front of the payload (a 16 MiB concatenation costs more than one extra
# yamux frame); below it one write keeps a small frame in one yamux/Noise frame.
_COALESCE_LIMIT = 64 * 1024
_HEADER = struct.Struct(">I")
_RESETS = (StreamReset, MuxedStreamReset)

Buffer = bytes | bytearray | memoryview


class TransportError(Exception):
    """Base class of every error raised by the node's transport layer."""


class FrameError(TransportError):
    """A frame could not be read or written."""


class FrameTooLarge(FrameError):
    """A frame is larger than the limit; raised before its body is read."""

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {max_size} bytes")
        self.size = size
        self.max_size = max_size


class StreamClosed(FrameError):
    """The stream ended, was reset, or failed before a whole frame was transferred.

    Attributes:
        received: bytes of the current frame (header included) that had arrived;
            0 means the stream ended cleanly at a frame boundary.
        reset: True when the transport reported a reset rather than an end of
            stream. Best effort only: py-libp2p's yamux reports a peer's reset as
            a plain end of stream once it has dropped the stream's bookkeeping.
    """

    def __init__(self, message: str, *, received: int = 0, reset: bool = False) -> None:
        super().__init__(message)
        self.received = received
        self.reset = reset

    @property
    def mid_frame(self) -> bool:
        """True when the stream ended inside a frame (a truncating peer)."""
        return self.received > 0


class FrameTimeout(FrameError):
    """A frame did not start, or did not complete, within its deadline."""

    def __init__(self, message: str, *, received: int = 0) -> None:
        super().__init__(message)
        self.received = received


class ByteStream(Protocol):
    """What the framing needs from a stream (a libp2p ``INetStream`` fits)."""

    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


def encode_header(size: int) -> bytes:
    """Return the 4-byte header announcing a payload of ``size`` bytes.

    Raises:
        FrameTooLarge: ``size`` does not fit in 32 bits.
    """
    if not 0 <= size <= MAX_ENCODABLE_SIZE:
        raise FrameTooLarge(size, MAX_ENCODABLE_SIZE)
    return _HEADER.pack(size)


def decode_header(header: bytes, max_size: int) -> int:
    """Return the payload length that ``header`` announces.

    Raises:
        FrameTooLarge: the announced length exceeds ``max_size``.
    """
    (size,) = _HEADER.unpack(header)
    if size > max_size:
        raise FrameTooLarge(size, max_size)
    return int(size)


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else trio.current_time() + timeout


async def _read_some(stream: ByteStream, n: int, received: int) -> bytes:
    """One ``stream.read(n)``; libp2p's errors and EOF become :class:`StreamClosed`."""
    try:
        data = await stream.read(n)
    except BaseLibp2pError as exc:
        reset = isinstance(exc, _RESETS)
        what = "reset" if reset else "closed"
        raise StreamClosed(
            f"stream {what} after {received} bytes of a frame", received=received, reset=reset
        ) from exc
    if not data:
        raise StreamClosed(f"stream closed after {received} bytes of a frame", received=received)
    return data


@dataclass(frozen=True)
class FrameConfig:
    """Limits of one framed stream; each protocol picks its own."""

    # Largest payload read, in bytes (the header is checked first); also the largest
    # written, unless max_write_size says otherwise.
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    # Seconds from the first byte of a frame to its last (None: unbounded).
    frame_timeout: float | None = 30.0
    # Seconds to wait for the next frame to begin (None: wait forever).
    idle_timeout: float | None = None
    # Seconds allowed for writing one frame (None: unbounded).
    write_timeout: float | None = 30.0
    # Largest payload written, where the peer's limit differs from ours (None: max_frame_size).
    max_write_size: int | None = None

    def __post_init__(self) -> None:
        for size in (self.max_frame_size, self.max_write_size):
            if size is not None and not 0 <= size <= MAX_ENCODABLE_SIZE:
                raise ValueError(f"frame size limit out of range: {size}")

    @property
    def write_limit(self) -> int:
        """Largest payload :meth:`FramedStream.write` sends."""
        return self.max_frame_size if self.max_write_size is None else self.max_write_size

    @classmethod
    def bounded(cls, max_frame_size: int, timeout: float,
                max_write_size: int | None = None) -> FrameConfig:
        """Limits of a one-request stream: waiting for, reading and writing a frame each
        bounded by the same `timeout`."""
        return cls(max_frame_size=max_frame_size, frame_timeout=timeout, idle_timeout=timeout,
                   write_timeout=timeout, max_write_size=max_write_size)


class FramedStream:
    """A stream read and written one frame at a time, under one :class:`FrameConfig`.

    It reads ahead (up to ``READ_AHEAD`` bytes that the muxer already holds) and keeps
    the surplus for the next frame, which halves the libp2p reads per small frame; so once
    a stream is wrapped, read it only through its ``FramedStream``. It does not own a task;
    closing or resetting it closes or resets the underlying stream. After any
    :class:`FrameError` other than a clean ``StreamClosed`` the stream is out of sync and
    should be reset.
    """

    def __init__(self, stream: ByteStream, config: FrameConfig = FrameConfig()) -> None:
        self.stream = stream
        self.config = config
        self._pending = bytearray()

    async def read(self) -> bytes:
        """Read one whole frame and return its payload.

        Header reads ask for up to ``READ_AHEAD`` bytes, so a small frame arrives in one
        ``read`` (each libp2p read costs a trip through NetStream's, yamux's and its
        window's locks); what comes beyond the frame stays for the next call. Body bytes
        are never requested before the header has passed the limit, nor beyond the end of
        the frame.

        Raises:
            FrameTooLarge: the header announces more than ``max_frame_size`` bytes.
            StreamClosed: the stream ended or was reset (``received`` says where).
            FrameTimeout: ``idle_timeout`` passed before the first byte, or
                ``frame_timeout`` between the first byte and the last; reset the stream.
        """
        cfg, stream, pending = self.config, self.stream, self._pending
        if not pending:
            idle = cfg.idle_timeout
            try:
                with trio.fail_after(math.inf if idle is None else idle):
                    pending += await _read_some(stream, READ_AHEAD, 0)
            except trio.TooSlowError:
                raise FrameTimeout(f"no frame started within {idle} s") from None
        received = len(pending)
        try:
            with trio.fail_at(_deadline(cfg.frame_timeout)):
                while len(pending) < HEADER_SIZE:
                    pending += await _read_some(stream, READ_AHEAD, len(pending))
                    received = len(pending)
                end = HEADER_SIZE + decode_header(bytes(pending[:HEADER_SIZE]),
                                                  cfg.max_frame_size)
                if len(pending) >= end:
                    payload = bytes(pending[HEADER_SIZE:end])
                    del pending[:end]
                    return payload
                chunks = [bytes(pending[HEADER_SIZE:])]
                pending.clear()
                while received < end:
                    chunk = await _read_some(stream, end - received, received)
                    chunks.append(chunk)
                    received += len(chunk)
        except trio.TooSlowError:
            raise FrameTimeout(f"frame not completed within {cfg.frame_timeout} s",
                               received=received) from None
        return b"".join(chunks)

    async def write(self, payload: Buffer) -> None:
        """Write ``payload`` (bytes, bytearray or a contiguous memoryview) as one frame.

        Raises:
            FrameTooLarge: ``payload`` is larger than the config's ``write_limit`` (nothing
                is sent; the peer enforces its own limit and resets the stream past it).
            StreamClosed: the stream was closed or reset under us.
            FrameTimeout: ``write_timeout`` passed (flow control can stall a writer whose
                peer does not read); part of the frame may have been sent, so the stream
                must be reset, not reused.
        """
        body = memoryview(payload).cast("B")
        size = body.nbytes
        if size > self.config.write_limit:
            raise FrameTooLarge(size, self.config.write_limit)
        header = encode_header(size)
        timeout = self.config.write_timeout
        try:
            with trio.fail_at(_deadline(timeout)):
                if size <= _COALESCE_LIMIT:
                    await self.stream.write(header + body)
                else:
                    await self.stream.write(header)
                    await self.stream.write(body)  # type: ignore[arg-type]  # yamux slices it
        except trio.TooSlowError:
            raise FrameTimeout(f"frame of {size} bytes not written within {timeout} s") from None
        except BaseLibp2pError as exc:
            reset = isinstance(exc, _RESETS)
            raise StreamClosed(f"stream closed while writing a frame: {exc!r}",
                               reset=reset) from exc

    async def close(self) -> None:
        """Half-close our side (the peer reads end of stream); never raises."""
        await close_quietly(self.stream)

    async def reset(self) -> None:
        """Abort the stream in both directions; never raises."""
        await reset_quietly(self.stream)


_TEARDOWN_ERRORS = (BaseLibp2pError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)


async def close_quietly(stream: object) -> None:
    """Half-close ``stream`` if it can be; errors of a dead stream are ignored."""
    close = getattr(stream, "close", None)
    if close is not None:
        with contextlib.suppress(*_TEARDOWN_ERRORS):
            await close()


async def reset_quietly(stream: object) -> None:
    """Reset ``stream`` if it can be; errors of a dead stream are ignored."""
    reset = getattr(stream, "reset", None)
    if reset is not None:
        with contextlib.suppress(*_TEARDOWN_ERRORS):
            await reset()
