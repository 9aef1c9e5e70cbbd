"""Misbehaving peers on real hosts: each gets a typed error; honest streams carry on.

The server reads with a 64 KiB limit and a 0.5 s frame deadline and reports what
ended each stream on a channel, so the tests wait on events, never on sleeps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
from transport_support import TEST_PROTOCOL, seed, swarm

from darwin.net.framing import (
    FrameConfig,
    FramedStream,
    FrameError,
    FrameTimeout,
    FrameTooLarge,
    StreamClosed,
    encode_header,
)
from darwin.net.host import Host, HostConfig, open_host

LIMITS = FrameConfig(max_frame_size=64 * 1024, frame_timeout=0.5, idle_timeout=10)


@dataclass
class Server:
    host: Host
    outcomes: trio.MemoryReceiveChannel[FrameError]


@asynccontextmanager
async def echo_server_and_client() -> AsyncIterator[tuple[Server, Host]]:
    """A server that echoes frames under LIMITS, and a client connected to it."""
    send, receive = trio.open_memory_channel[FrameError](math.inf)

    async def handler(stream) -> None:  # type: ignore[no-untyped-def]
        framed = FramedStream(stream, LIMITS)
        try:
            while True:
                await framed.write(await framed.read())
        except FrameError as exc:
            send.send_nowait(exc)
            if not isinstance(exc, StreamClosed) or exc.mid_frame:
                await framed.reset()

    async with swarm(2, dial_timeout=3.0, dht_timeout=3.0) as (server, client):
        server.set_stream_handler(TEST_PROTOCOL, handler)
        yield Server(server, receive), client


async def _echo_until(stream, stop: trio.Event, progress: trio.MemorySendChannel[int]) -> None:  # type: ignore[no-untyped-def]
    """An honest session: echo numbered frames back to back until told to stop."""
    count = 0
    while not stop.is_set():
        payload = b"honest %d" % count
        await stream.write(payload)
        assert await stream.read() == payload
        count += 1
        progress.send_nowait(count)


async def _attack_beside_an_honest_stream(attack, expected: type[FrameError]) -> FrameError:  # type: ignore[no-untyped-def]
    """Run ``attack(stream)`` on a second stream of the same connection as an honest one."""
    async with echo_server_and_client() as (server, client):
        honest = FramedStream(await client.open_stream(server.host.peer_id, TEST_PROTOCOL))
        stop = trio.Event()
        progress_in, progress = trio.open_memory_channel[int](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_echo_until, honest, stop, progress_in)
            seen = await progress.receive()  # the honest session is under way
            bad = await client.open_stream(server.host.peer_id, TEST_PROTOCOL)
            await attack(bad)
            outcome = await server.outcomes.receive()
            # the honest session completes three more round trips after the attack
            with contextlib.suppress(trio.WouldBlock):
                while True:
                    seen = progress.receive_nowait()
            assert [await progress.receive() for _ in range(3)] == [seen + 1, seen + 2, seen + 3]
            stop.set()
        await honest.close()
        assert isinstance(outcome, expected), outcome
        return outcome


async def test_oversize_frame_is_refused_and_the_stream_reset() -> None:
    async def attack(stream) -> None:  # type: ignore[no-untyped-def]
        await stream.write(encode_header(10 * 1024 * 1024) + b"x" * 1000)
        with pytest.raises(StreamClosed):
            await FramedStream(stream).read()

    with trio.fail_after(20):
        outcome = await _attack_beside_an_honest_stream(attack, FrameTooLarge)
    assert outcome.size == 10 * 1024 * 1024  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "garbage",
    [b"\xde\xad\xbe\xef" * 64, encode_header(3) + b"abc" + b"\xff" * 32],
    ids=["random-bytes", "valid-frame-then-garbage"],
)
async def test_garbage_is_refused(garbage: bytes) -> None:
    async def attack(stream) -> None:  # type: ignore[no-untyped-def]
        await stream.write(garbage)

    with trio.fail_after(20):
        await _attack_beside_an_honest_stream(attack, FrameTooLarge)


async def test_half_open_peer_that_closes_mid_frame() -> None:
    async def attack(stream) -> None:  # type: ignore[no-untyped-def]
        await stream.write(encode_header(100) + b"0123456789")
        await stream.close()  # our half: the server sees EOF inside the frame

    with trio.fail_after(20):
        outcome = await _attack_beside_an_honest_stream(attack, StreamClosed)
    assert outcome.mid_frame and outcome.received == 4 + 10  # type: ignore[attr-defined]


async def test_peer_that_resets_mid_frame() -> None:
    async def attack(stream) -> None:  # type: ignore[no-untyped-def]
        await stream.write(encode_header(100) + b"01234")
        await stream.reset()

    with trio.fail_after(20):
        await _attack_beside_an_honest_stream(attack, StreamClosed)


async def test_stalled_peer_hits_the_frame_deadline() -> None:
    async def attack(stream) -> None:  # type: ignore[no-untyped-def]
        await stream.write(encode_header(100) + b"0123456789")  # ...and nothing more

    with trio.fail_after(20):
        outcome = await _attack_beside_an_honest_stream(attack, FrameTimeout)
    assert outcome.received == 4 + 10  # type: ignore[attr-defined]


async def test_peer_vanishing_mid_frame_does_not_disturb_other_peers() -> None:
    with trio.fail_after(20):
        async with echo_server_and_client() as (server, client):
            honest = FramedStream(await client.open_stream(server.host.peer_id, TEST_PROTOCOL))
            joining = HostConfig(bootstrap=(server.host.listen_addrs[0],))
            async with open_host(seed(9), joining) as vanishing:
                doomed = await vanishing.open_stream(server.host.peer_id, TEST_PROTOCOL)
                await doomed.write(encode_header(1000) + b"partial")
            # the whole host is gone, its connection closed mid-frame
            outcome = await server.outcomes.receive()
            assert isinstance(outcome, StreamClosed) and outcome.mid_frame
            await honest.write(b"still served")
            assert await honest.read() == b"still served"
