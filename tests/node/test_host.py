"""Real hosts on 127.0.0.1: identity, bootstrap, frames on a protocol, DHT, errors, shutdown."""

from __future__ import annotations

import pytest
import trio
from nacl.signing import SigningKey
from transport_support import TEST_PROTOCOL, seed, swarm

from darwin.net.framing import FramedStream, StreamClosed
from darwin.net.host import (
    BootstrapError,
    DialError,
    HostConfig,
    ProtocolNotSupported,
    open_host,
    public_key_from_peer_id,
    stream_peer_id,
)
from darwin.net.protocols import block_provider_key
from darwin.protocol import peer_id_from_public_key

QUICK = {"dial_timeout": 3.0, "dht_timeout": 3.0}


async def _echo(stream) -> None:  # type: ignore[no-untyped-def]
    """Echo frames until the client ends the stream."""
    framed = FramedStream(stream)
    try:
        while True:
            await framed.write(await framed.read())
    except StreamClosed:
        pass


# ---------------------------------------------------------------------- identity


def test_peer_id_is_the_receipt_signing_key() -> None:
    verify_key = bytes(SigningKey(seed(7)).verify_key)
    peer_id = peer_id_from_public_key(verify_key)
    assert peer_id.startswith("12D3KooW")  # identity multihash of an ed25519 key
    assert public_key_from_peer_id(peer_id) == verify_key


def test_public_key_from_peer_id_rejects_non_ed25519_ids() -> None:
    with pytest.raises(ValueError):
        public_key_from_peer_id("not-a-peer-id")
    # a sha2-256 (RSA-style) peer id embeds no key
    with pytest.raises(ValueError):
        public_key_from_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")


def test_block_provider_key_is_a_blake2b_multihash() -> None:
    key = block_provider_key("llama-270m@abc", 3)
    assert key[:4] == b"\xa0\xe4\x02\x20" and len(key) == 36
    assert key == block_provider_key("llama-270m@abc", 3)
    assert key != block_provider_key("llama-270m@abc", 4)
    assert block_provider_key("m1", 23) != block_provider_key("m12", 3)
    with pytest.raises(ValueError):
        block_provider_key("", 0)
    with pytest.raises(ValueError):
        block_provider_key("m", -1)


async def test_host_identity_comes_from_the_seed() -> None:
    with trio.fail_after(10):
        async with open_host(seed(7)) as host:
            assert host.public_key == bytes(SigningKey(seed(7)).verify_key)
            assert host.peer_id == peer_id_from_public_key(host.public_key)
            [addr] = host.listen_addrs
            assert addr.startswith("/ip4/127.0.0.1/tcp/")
            assert not addr.startswith("/ip4/127.0.0.1/tcp/0/")
            assert addr.endswith(f"/p2p/{host.peer_id}")


async def test_bad_seed_is_refused() -> None:
    with pytest.raises(ValueError):
        async with open_host(b"short"):
            pass


# ------------------------------------------------------------------------ streams


async def test_two_hosts_exchange_frames_after_bootstrap() -> None:
    with trio.fail_after(15):
        async with swarm(2, **QUICK) as (server, client):
            assert server.peer_id in client.connected_peers()
            seen: list[str] = []

            async def handler(stream) -> None:  # type: ignore[no-untyped-def]
                seen.append(stream_peer_id(stream))
                await _echo(stream)

            server.set_stream_handler(TEST_PROTOCOL, handler)
            stream = FramedStream(await client.open_stream(server.peer_id, TEST_PROTOCOL))
            for payload in (b"", b"step-0", bytes(4096), bytes(range(256)) * 4096):
                await stream.write(payload)
                assert await stream.read() == payload
            await stream.close()
            assert seen == [client.peer_id]


async def test_three_hosts_find_and_reach_each_other_through_the_dht() -> None:
    with trio.fail_after(20):
        async with swarm(3, **QUICK) as (boot, provider, seeker):
            # provider and seeker were only told about the bootstrap host
            provider.set_stream_handler(TEST_PROTOCOL, _echo)
            key = block_provider_key("model-a", 5)
            assert await provider.provide(key)
            [found] = await seeker.find_providers(key, timeout=5)
            assert found.peer_id == provider.peer_id
            assert found.addrs and all(a.startswith("/ip4/127.0.0.1/tcp/") for a in found.addrs)
            opened = await seeker.open_stream(found.peer_id, TEST_PROTOCOL, addrs=found.addrs)
            stream = FramedStream(opened)
            await stream.write(b"hello provider")
            assert await stream.read() == b"hello provider"
            await stream.close()
            assert await seeker.find_providers(block_provider_key("model-a", 6), timeout=5) == []
            del boot


async def test_dht_with_two_hosts_where_the_bootstrap_host_provides() -> None:
    with trio.fail_after(15):
        async with swarm(2, **QUICK) as (boot, other):
            key = block_provider_key("model-b", 0)
            await boot.provide(key)
            found = await other.find_providers(key, timeout=5)
            assert [p.peer_id for p in found] == [boot.peer_id]


async def test_dht_with_four_hosts_and_two_providers() -> None:
    with trio.fail_after(25):
        async with swarm(4, **QUICK) as (_, early, late, seeker):
            key = block_provider_key("model-c", 1)
            await early.provide(key)
            await late.provide(key)
            expected = {early.peer_id, late.peer_id}
            assert {p.peer_id for p in await seeker.find_providers(key, timeout=5)} == expected
            # a provider sees its fellow provider too, not only itself
            found = {p.peer_id for p in await late.find_providers(key, timeout=5)}
            assert found == expected
            assert len(await seeker.find_providers(key, timeout=5, count=1)) == 1


async def test_dht_client_mode_host_can_search_but_serves_no_records() -> None:
    with trio.fail_after(15):
        async with open_host(seed(1), HostConfig(**QUICK)) as server:
            key = block_provider_key("model-d", 2)
            await server.provide(key)
            client_config = HostConfig(
                bootstrap=(server.listen_addrs[0],), dht_server=False, **QUICK
            )
            async with open_host(seed(2), client_config) as client:
                found = await client.find_providers(key, timeout=5)
                assert [p.peer_id for p in found] == [server.peer_id]


# ------------------------------------------------------------------------- errors


async def test_unreachable_peer_raises_dial_error() -> None:
    with trio.fail_after(15):
        async with open_host(seed(1)) as closed_host:
            gone = closed_host.listen_addrs[0]  # listening no more once this block ends
        async with open_host(seed(2), HostConfig(**QUICK)) as host:
            with pytest.raises(DialError):
                await host.connect(gone)
            with pytest.raises(DialError):
                await host.open_stream(closed_host.peer_id, TEST_PROTOCOL)
            with pytest.raises(DialError):
                await host.connect(host.listen_addrs[0])  # ourselves
            with pytest.raises(ValueError):
                await host.connect("/ip4/127.0.0.1/tcp/1")  # no /p2p part
            with pytest.raises(ValueError):
                await host.open_stream("nonsense", TEST_PROTOCOL)


async def test_unreachable_bootstrap_raises_bootstrap_error() -> None:
    with trio.fail_after(15):
        async with open_host(seed(1)) as gone_host:
            gone = gone_host.listen_addrs[0]
        with pytest.raises(BootstrapError):
            async with open_host(seed(2), HostConfig(bootstrap=(gone,), **QUICK)):
                pytest.fail("joined through a dead bootstrap peer")


async def test_unknown_protocol_raises_protocol_not_supported() -> None:
    with trio.fail_after(15):
        async with swarm(2, **QUICK) as (server, client):
            with pytest.raises(ProtocolNotSupported):
                await client.open_stream(server.peer_id, "/darwin/unknown/1")
            server.set_stream_handler(TEST_PROTOCOL, _echo)
            server.remove_stream_handler(TEST_PROTOCOL)
            with pytest.raises(ProtocolNotSupported):
                await client.open_stream(server.peer_id, TEST_PROTOCOL)


async def test_a_failing_handler_resets_its_stream_and_nothing_else() -> None:
    with trio.fail_after(15):
        async with swarm(2, **QUICK) as (server, client):

            async def buggy(stream) -> None:  # type: ignore[no-untyped-def]
                await FramedStream(stream).read()
                raise RuntimeError("handler bug")

            server.set_stream_handler("/darwin/buggy/1", buggy)
            server.set_stream_handler(TEST_PROTOCOL, _echo)
            honest = FramedStream(await client.open_stream(server.peer_id, TEST_PROTOCOL))
            bad = FramedStream(await client.open_stream(server.peer_id, "/darwin/buggy/1"))
            await bad.write(b"boom")
            with pytest.raises(StreamClosed):  # reset (yamux may report it as a plain end)
                await bad.read()
            for i in range(3):
                await honest.write(b"still here %d" % i)
                assert await honest.read() == b"still here %d" % i
            again = FramedStream(await client.open_stream(server.peer_id, TEST_PROTOCOL))
            await again.write(b"new stream")
            assert await again.read() == b"new stream"


async def test_body_exceptions_leave_open_host_unwrapped() -> None:
    with trio.fail_after(10), pytest.raises(KeyError, match="from the body"):
        async with open_host(seed(1)):
            raise KeyError("from the body")


# ----------------------------------------------------------------------- shutdown


async def test_shutdown_is_bounded_with_busy_handlers_and_open_streams() -> None:
    with trio.fail_after(15):
        handler_started = trio.Event()

        async def stuck(stream) -> None:  # type: ignore[no-untyped-def]
            handler_started.set()
            await trio.sleep_forever()  # a handler that never returns by itself

        async with swarm(2, **QUICK) as (server, client):
            server.set_stream_handler(TEST_PROTOCOL, stuck)
            stream = FramedStream(await client.open_stream(server.peer_id, TEST_PROTOCOL))
            await stream.write(b"x")
            await handler_started.wait()
            closing_started = trio.current_time()
        assert trio.current_time() - closing_started < 5


def _all_tasks() -> set[trio.lowlevel.Task]:
    tasks: set[trio.lowlevel.Task] = set()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        tasks.add(task)
        pending += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
    return tasks


async def test_no_task_outlives_the_hosts() -> None:
    before = _all_tasks()
    with trio.fail_after(15):
        async with swarm(3, **QUICK) as hosts:
            hosts[0].set_stream_handler(TEST_PROTOCOL, _echo)
            stream = FramedStream(await hosts[2].open_stream(hosts[0].peer_id, TEST_PROTOCOL))
            await stream.write(b"x")
            assert await stream.read() == b"x"
            await hosts[1].provide(block_provider_key("model-e", 0))
            assert len(_all_tasks()) > len(before)
    assert _all_tasks() == before  # listeners (system tasks) included


async def test_client_sees_the_stream_end_when_the_server_shuts_down() -> None:
    with trio.fail_after(15):
        async with open_host(seed(1), HostConfig(**QUICK)) as client:
            async with open_host(seed(2), HostConfig(**QUICK)) as server:
                server.set_stream_handler(TEST_PROTOCOL, _echo)
                await client.connect(server.listen_addrs[0])
                stream = FramedStream(await client.open_stream(server.peer_id, TEST_PROTOCOL))
                await stream.write(b"before")
                assert await stream.read() == b"before"
            with pytest.raises(StreamClosed):
                await stream.read()
