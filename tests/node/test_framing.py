"""Framing: the codec, read-ahead, limits checked before the body, EOF, deadlines."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from libp2p.network.stream.exceptions import StreamClosed as Libp2pStreamClosed
from libp2p.network.stream.exceptions import StreamEOF, StreamReset
from transport_support import FakeStream, MemoryByteStream

from darwin.net.framing import (
    HEADER_SIZE,
    MAX_ENCODABLE_SIZE,
    FrameConfig,
    FramedStream,
    FrameTimeout,
    FrameTooLarge,
    StreamClosed,
    TransportError,
    decode_header,
    encode_header,
)


def framed(stream: object, max_size: int = 1 << 21, *, timeout: float | None = None,
           idle_timeout: float | None = None) -> FramedStream:
    """``stream`` under one reader limit and the two read clocks."""
    config = FrameConfig(max_frame_size=max_size, frame_timeout=timeout,
                         idle_timeout=idle_timeout)
    return FramedStream(stream, config)  # type: ignore[arg-type]


def test_header_is_four_big_endian_bytes() -> None:
    assert encode_header(0) == b"\x00\x00\x00\x00"
    assert encode_header(0x01020304) == b"\x01\x02\x03\x04"
    assert encode_header(MAX_ENCODABLE_SIZE) == b"\xff\xff\xff\xff"
    assert decode_header(b"\x01\x02\x03\x04", 0x01020304) == 0x01020304


def test_header_limits() -> None:
    with pytest.raises(FrameTooLarge) as info:
        decode_header(encode_header(101), max_size=100)
    assert (info.value.size, info.value.max_size) == (101, 100)
    with pytest.raises(FrameTooLarge):
        encode_header(MAX_ENCODABLE_SIZE + 1)
    with pytest.raises(FrameTooLarge):
        encode_header(-1)


def test_every_error_is_a_transport_error() -> None:
    for exc in (FrameTooLarge(2, 1), StreamClosed("x"), FrameTimeout("x")):
        assert isinstance(exc, TransportError)


@pytest.mark.parametrize("size", [0, 1, 4096, 65_536 + 3, 1 << 20])
async def test_round_trip_over_a_byte_stream(size: int) -> None:
    left, right = trio.testing.memory_stream_pair()
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(framed(MemoryByteStream(left)).write, payload)
            assert await framed(MemoryByteStream(right)).read() == payload


async def test_short_reads_are_reassembled() -> None:
    stream = FakeStream(max_chunk=1)  # every read returns a single byte
    stream.feed(encode_header(5) + b"hello" + encode_header(2) + b"ok")
    reader = framed(stream)
    with trio.fail_after(5):
        assert await reader.read() == b"hello"
        assert await reader.read() == b"ok"
    assert stream.consumed == 2 * HEADER_SIZE + 7


async def test_oversize_is_refused_without_waiting_for_the_body() -> None:
    stream = FakeStream()
    stream.feed(encode_header(1000) + b"b" * 10)  # the other 990 bytes never come
    with trio.fail_after(5), pytest.raises(FrameTooLarge) as info:
        await framed(stream, 999).read()
    assert info.value.size == 1000
    assert stream.reads == 1  # the header's read, nothing asked for the body


async def test_oversize_header_arriving_in_pieces_is_still_refused_first() -> None:
    stream = FakeStream(max_chunk=1)
    stream.feed(b"\xff\xff\xff\xff" + b"garbage")
    with trio.fail_after(5), pytest.raises(FrameTooLarge):
        await framed(stream, 1 << 20).read()
    assert stream.consumed == HEADER_SIZE


async def test_clean_eof_between_frames() -> None:
    stream = FakeStream()
    stream.feed_eof()
    with trio.fail_after(5), pytest.raises(StreamClosed) as info:
        await framed(stream).read()
    assert info.value.received == 0
    assert not info.value.mid_frame
    assert not info.value.reset


@pytest.mark.parametrize(
    ("data", "received"),
    [(b"\x00\x00", 2), (encode_header(10) + b"12345", HEADER_SIZE + 5)],
    ids=["inside-header", "inside-body"],
)
async def test_eof_inside_a_frame(data: bytes, received: int) -> None:
    stream = FakeStream()
    stream.feed(data)
    stream.feed_eof()
    with trio.fail_after(5), pytest.raises(StreamClosed) as info:
        await framed(stream).read()
    assert info.value.mid_frame
    assert info.value.received == received


@pytest.mark.parametrize(
    ("error", "reset"),
    [(StreamReset(), True), (StreamEOF(), False), (Libp2pStreamClosed(), False)],
)
async def test_libp2p_read_errors_become_stream_closed(error: Exception, reset: bool) -> None:
    stream = FakeStream()
    stream.feed(encode_header(4) + b"ab")
    stream.feed_error(error)
    with trio.fail_after(5), pytest.raises(StreamClosed) as info:
        await framed(stream).read()
    assert info.value.reset is reset
    assert info.value.received == HEADER_SIZE + 2
    assert info.value.__cause__ is error


async def test_idle_timeout_bounds_the_wait_for_a_frame(autojump_clock: object) -> None:
    with trio.fail_after(1000):  # virtual seconds under autojump_clock
        stream = FakeStream()
        start = trio.current_time()
        with pytest.raises(FrameTimeout) as info:
            await framed(stream, idle_timeout=30, timeout=1).read()
        assert trio.current_time() - start == pytest.approx(30)
        assert info.value.received == 0


async def test_frame_timeout_starts_at_the_first_byte(autojump_clock: object) -> None:
    with trio.fail_after(1000):  # virtual seconds under autojump_clock
        stream = FakeStream()

        async def trickle() -> None:
            await trio.sleep(100)  # idle long before the frame: allowed without idle_timeout
            stream.feed(encode_header(8) + b"1234")  # ...then the body stalls

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            start = trio.current_time()
            with pytest.raises(FrameTimeout) as info:
                await framed(stream, timeout=5).read()
        assert trio.current_time() - start == pytest.approx(105)
        assert info.value.received == HEADER_SIZE + 4


async def test_slow_but_timely_frames_pass(autojump_clock: object) -> None:
    with trio.fail_after(1000):  # virtual seconds under autojump_clock
        stream = FakeStream()

        async def drip() -> None:
            for byte in encode_header(3) + b"abc":
                await trio.sleep(0.5)
                stream.feed(bytes([byte]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drip)
            assert await framed(stream, timeout=5).read() == b"abc"


async def test_writes_refuse_oversize_without_sending() -> None:
    with trio.fail_after(5):
        stream = FakeStream()
        with pytest.raises(FrameTooLarge):
            await framed(stream, 10).write(b"x" * 11)
        assert stream.written == b""


@pytest.mark.parametrize("payload", [b"abc", bytearray(b"abc"), memoryview(b"xabcx")[1:4]])
async def test_writes_accept_buffers(payload: bytes | bytearray | memoryview) -> None:
    with trio.fail_after(5):
        stream = FakeStream()
        await framed(stream).write(payload)
        assert stream.written == encode_header(3) + b"abc"


async def test_big_frames_are_written_without_copying_into_one_buffer() -> None:
    with trio.fail_after(5):
        stream = FakeStream()
        payload = b"p" * (1 << 20)
        await framed(stream).write(payload)
        assert stream.written == encode_header(1 << 20) + payload


async def test_write_errors_become_stream_closed() -> None:
    with trio.fail_after(5):
        stream = FakeStream()
        stream.write_error = StreamReset()
        with pytest.raises(StreamClosed) as info:
            await framed(stream).write(b"abc")
        assert info.value.reset


async def test_write_timeout(autojump_clock: object) -> None:
    with trio.fail_after(1000):  # virtual seconds under autojump_clock
        stream = FakeStream()
        stream.write_blocks = True  # a peer that never opens its window
        with pytest.raises(FrameTimeout):
            await FramedStream(stream, FrameConfig(write_timeout=2)).write(b"abc")


async def test_framed_stream_applies_its_config() -> None:
    stream = FakeStream()
    framed = FramedStream(stream, FrameConfig(max_frame_size=8))
    await framed.write(b"12345678")
    with pytest.raises(FrameTooLarge):
        await framed.write(b"123456789")
    stream.feed(bytes(stream.written))
    stream.feed(encode_header(9) + b"123456789")
    with trio.fail_after(5):
        assert await framed.read() == b"12345678"
        with pytest.raises(FrameTooLarge):
            await framed.read()


async def test_framed_stream_reads_ahead_but_returns_frames_in_order() -> None:
    stream = FakeStream()
    frames = [b"a" * 10, b"", b"c" * 5000, b"d"]
    stream.feed(b"".join(encode_header(len(f)) + f for f in frames))  # all in one chunk
    framed = FramedStream(stream)
    with trio.fail_after(5):
        assert [await framed.read() for _ in frames] == frames
    assert stream.reads == 1  # one libp2p read for four frames


async def test_framed_stream_never_requests_body_bytes_past_the_limit() -> None:
    stream = FakeStream(max_chunk=3)  # the muxer hands out 3 bytes at a time
    stream.feed(encode_header(1000) + b"b" * 1000)
    framed = FramedStream(stream, FrameConfig(max_frame_size=999))
    with trio.fail_after(5), pytest.raises(FrameTooLarge):
        await framed.read()
    assert stream.consumed == 6  # two reads of 3: the header and 2 bytes it came with


async def test_framed_stream_reads_big_bodies_exactly() -> None:
    stream = FakeStream()
    body = bytes(range(256)) * 1024
    stream.feed(encode_header(len(body)) + body[:100])
    stream.feed(body[100:] + encode_header(1) + b"z")
    framed = FramedStream(stream)
    with trio.fail_after(5):
        assert await framed.read() == body
        assert stream.consumed == HEADER_SIZE + len(body)  # the next frame stays unread
        assert await framed.read() == b"z"


async def test_the_write_limit_may_be_the_peers() -> None:
    stream = FakeStream()
    asymmetric = FramedStream(stream, FrameConfig(max_frame_size=4, max_write_size=8))
    await asymmetric.write(b"12345678")
    with pytest.raises(FrameTooLarge):
        await asymmetric.write(b"123456789")
    stream.feed(bytes(stream.written))
    with trio.fail_after(5), pytest.raises(FrameTooLarge):
        await asymmetric.read()


def test_frame_config_validates() -> None:
    with pytest.raises(ValueError):
        FrameConfig(max_frame_size=MAX_ENCODABLE_SIZE + 1)
    with pytest.raises(ValueError):
        FrameConfig(max_write_size=-1)
