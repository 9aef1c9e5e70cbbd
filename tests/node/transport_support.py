"""Shared helpers of the transport tests: deterministic identities, host groups, fake streams."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from darwin.net.host import Host, HostConfig, open_host

TEST_PROTOCOL = "/darwin/test/1"


def seed(i: int) -> bytes:
    """A fixed 32-byte ed25519 seed per index, so peer ids (and DHT distances) repeat."""
    return bytes([i]) * 32


@asynccontextmanager
async def swarm(n: int, **config: object) -> AsyncIterator[list[Host]]:
    """Start ``n`` hosts on 127.0.0.1; hosts 1.. join through host 0, one after another."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_host(seed(1), HostConfig(**config)))  # type: ignore[arg-type]
        hosts = [first]
        joined = HostConfig(bootstrap=(first.listen_addrs[0],), **config)  # type: ignore[arg-type]
        for i in range(2, n + 1):
            hosts.append(await stack.enter_async_context(open_host(seed(i), joined)))
        yield hosts


class FakeStream:
    """A scripted in-memory stream with libp2p's ``read(n)`` / ``write`` shape.

    The test feeds bytes (``feed``) and ends the stream (``feed_eof``) or makes
    the next read raise (``feed_error``); ``read(n)`` returns at most ``n`` bytes
    and at most ``max_chunk`` per call. ``consumed`` counts the bytes handed out,
    so a test can prove that a frame body was never read.
    """

    def __init__(self, max_chunk: int = 1 << 30) -> None:
        self._send, self._recv = trio.open_memory_channel[bytes | BaseException | None](math.inf)
        self._buffer = bytearray()
        self._ended: BaseException | None = None
        self._eof = False
        self.max_chunk = max_chunk
        self.consumed = 0
        self.reads = 0
        self.written = bytearray()
        self.write_error: BaseException | None = None
        self.write_blocks = False

    def feed(self, data: bytes) -> None:
        self._send.send_nowait(data)

    def feed_eof(self) -> None:
        self._send.send_nowait(None)

    def feed_error(self, error: BaseException) -> None:
        self._send.send_nowait(error)

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        while not self._buffer and not self._eof:
            item = await self._recv.receive()
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._buffer += item
        take = min(len(self._buffer), n if n is not None else len(self._buffer), self.max_chunk)
        data = bytes(self._buffer[:take])
        del self._buffer[:take]
        self.consumed += len(data)
        return data

    async def write(self, data: bytes) -> None:
        if self.write_blocks:
            await trio.sleep_forever()
        if self.write_error is not None:
            raise self.write_error
        self.written += data
        await trio.lowlevel.checkpoint()


class MemoryByteStream:
    """One end of a trio in-memory stream pair, adapted to ``read(n)`` / ``write``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def read(self, n: int | None = None) -> bytes:
        return await self._stream.receive_some(n)

    async def write(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def close(self) -> None:
        await self._stream.aclose()
