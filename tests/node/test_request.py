"""One-shot requests between real hosts: decoded answers, typed failures, no stream left behind.

Each responder reports on a channel how its stream ended, so the tests wait on events, never
on sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from transport_support import TEST_PROTOCOL, swarm

from darwin.net.framing import FramedStream, FrameTooLarge, StreamClosed, encode_header
from darwin.net.host import Host, ProtocolNotSupported, Stream
from darwin.net.request import DECODE_IN_THREAD, RequestTimeout, request
from darwin.protocol import InfoRequest, RemoteProtocolError

QUICK = {"dial_timeout": 3.0, "dht_timeout": 3.0}
ASK = InfoRequest().to_wire()
Respond = Callable[[FramedStream], Awaitable[None]]


@asynccontextmanager
async def responder(respond: Respond) -> AsyncIterator[tuple[Host, Host, trio.Event]]:
    """A host answering TEST_PROTOCOL with ``respond``, an asker, and an event set once the
    responder's stream has ended after ``respond`` (the asker closed or reset it)."""
    ended = trio.Event()

    async def handler(stream: Stream) -> None:
        framed = FramedStream(stream)
        await respond(framed)
        with pytest.raises(StreamClosed):
            await framed.read()
        ended.set()

    async with swarm(2, **QUICK) as (server, client):
        server.set_stream_handler(TEST_PROTOCOL, handler)
        yield server, client, ended


async def ask(client: Host, server: Host, decode: Callable[[bytes], object] = bytes,
              payload: bytes = ASK, max_answer: int = 1 << 20, timeout: float = 5.0,
              ) -> object:
    reply = await request(client, server.peer_id, TEST_PROTOCOL, payload, decode,
                          max_request=1024, max_answer=max_answer, timeout=timeout)
    return reply.answer


async def echo(framed: FramedStream) -> None:
    await framed.write(await framed.read())


async def test_the_answer_comes_back_decoded_and_the_stream_ends() -> None:
    with trio.fail_after(20):
        async with responder(echo) as (server, client, ended):
            reply = await request(client, server.peer_id, TEST_PROTOCOL, ASK,
                                  InfoRequest.from_wire, max_request=1024, max_answer=1024,
                                  timeout=5.0, addrs=server.listen_addrs)
            assert reply.answer == InfoRequest()
            assert 0 < reply.round_trip < 5.0
            await ended.wait()


async def test_a_silent_peer_times_out_and_its_stream_is_reset() -> None:
    async def silent(framed: FramedStream) -> None:
        await framed.read()  # the request, never answered

    with trio.fail_after(20):
        async with responder(silent) as (server, client, ended):
            started = trio.current_time()
            with pytest.raises(RequestTimeout, match=r"no answer within 0\.5 s"):
                await ask(client, server, timeout=0.5)
            assert 0.5 <= trio.current_time() - started < 3.0
            await ended.wait()


async def test_a_cancelled_request_still_resets_its_stream() -> None:
    async def silent(framed: FramedStream) -> None:
        await framed.read()

    with trio.fail_after(20):
        async with responder(silent) as (server, client, ended):
            with trio.move_on_after(0.5) as scope:
                await ask(client, server, timeout=10.0)
            assert scope.cancelled_caught
            await ended.wait()


async def test_an_answer_that_does_not_decode_is_the_decoders_error() -> None:
    async def garbage(framed: FramedStream) -> None:
        await framed.read()
        await framed.write(b"\xc1 not msgpack")

    with trio.fail_after(20):
        async with responder(garbage) as (server, client, ended):
            with pytest.raises(RemoteProtocolError):
                await ask(client, server, InfoRequest.from_wire)
            await ended.wait()


async def test_an_oversized_answer_is_refused_from_its_header() -> None:
    async def oversized(framed: FramedStream) -> None:
        await framed.read()
        await framed.stream.write(encode_header(10_000) + b"x" * 100)  # the rest never comes

    with trio.fail_after(20):
        async with responder(oversized) as (server, client, ended):
            with pytest.raises(FrameTooLarge) as info:
                await ask(client, server, max_answer=9_999)
            assert info.value.size == 10_000
            await ended.wait()


async def test_a_request_over_the_peers_limit_is_not_sent() -> None:
    async def nothing(framed: FramedStream) -> None:
        return None

    with trio.fail_after(20):
        async with responder(nothing) as (server, client, ended):
            with pytest.raises(FrameTooLarge):
                await ask(client, server, payload=b"x" * 1025)
            await ended.wait()  # the stream ended without a frame


async def test_an_unreachable_protocol_is_a_transport_error_not_a_timeout() -> None:
    with trio.fail_after(20):
        async with swarm(2, **QUICK) as (server, client):
            with pytest.raises(ProtocolNotSupported):
                await ask(client, server)


async def test_large_answers_are_decoded_in_a_worker_thread() -> None:
    threads: list[bool] = []

    def decode(data: bytes) -> int:
        threads.append(threading.current_thread() is threading.main_thread())
        return len(data)

    async def sized(framed: FramedStream) -> None:
        size = int(await framed.read())
        await framed.write(b"s" * size)

    with trio.fail_after(20):
        async with responder(sized) as (server, client, _):
            for size in (DECODE_IN_THREAD, DECODE_IN_THREAD + 1):
                answer = await ask(client, server, decode, b"%d" % size)
                assert answer == size
    assert threads == [True, False]
