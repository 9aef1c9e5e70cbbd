"""The node as a whole: info answers, DHT announcements, --blocks auto, identity, startup errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio
from node_support import (
    QUICK_HOST,
    HonestSession,
    client_frames,
    expect_end,
    expect_error,
    node_and_client,
    node_config,
    receive,
    send,
)

import darwin
from darwin.home import IDENTITY_FILE, load_or_create_identity
from darwin.net.host import HostConfig
from darwin.net.protocols import INFO_PROTOCOL, block_provider_key
from darwin.node.server import StartupError, start_node
from darwin.protocol import DType, ErrorCode, IdentityFileError, InfoRequest, NodeInfo


async def test_info_answers_what_the_node_serves_and_its_load(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            session = await HonestSession.open(client, node)
            stream = client_frames(await client.open_stream(node.peer_id, INFO_PROTOCOL))
            await send(stream, InfoRequest())
            info = await receive(stream)
            await expect_end(stream)
            assert info == NodeInfo(
                peer_id=node.identity.peer_id,
                model_id=node.model_id,
                span_start=0,
                span_end=4,
                dtype=DType.FLOAT32,
                load=0.25,
                max_sessions=4,
                version=darwin.__version__,
            )
            await session.close()


async def test_info_refuses_anything_but_a_request(tiny_llama: Path, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with node_and_client(node_config(tiny_llama, tmp_path)) as (node, client):
            for garbage in (b"\x93\x01\x02\x03", b"x" * 10_000):
                stream = client_frames(await client.open_stream(node.peer_id, INFO_PROTOCOL))
                await stream.write(garbage)
                await expect_error(stream, ErrorCode.BAD_REQUEST)
                await expect_end(stream)


async def test_every_served_block_is_announced_in_the_dht(tiny_llama: Path, tmp_path: Path) -> None:
    with trio.fail_after(30):
        config = node_config(tiny_llama, tmp_path, blocks=(1, 3))
        async with node_and_client(config) as (node, client):
            key = node.model_id.hex()
            for block in range(4):
                found = await client.find_providers(block_provider_key(key, block), timeout=3)
                assert [p.peer_id for p in found] == ([node.peer_id] if block in (1, 2) else [])


async def test_blocks_auto_serves_what_the_swarm_lacks(tiny_llama: Path, tmp_path: Path) -> None:
    with trio.fail_after(30):
        first = node_config(tiny_llama, tmp_path / "a", blocks=(0, 2))
        async with start_node(first) as node:
            host = HostConfig(bootstrap=(node.listen_addr,), **QUICK_HOST)  # type: ignore[arg-type]
            second = node_config(tiny_llama, tmp_path / "b", blocks=None, auto_blocks=2, host=host)
            async with start_node(second) as chooser:
                assert chooser.span == (2, 4)


async def test_the_identity_persists_in_home_and_is_the_host_key(
    tiny_llama: Path, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with start_node(node_config(tiny_llama, tmp_path)) as node:
            assert node.peer_id == node.identity.peer_id
        assert load_or_create_identity(tmp_path) == node.identity
        assert (tmp_path / IDENTITY_FILE).stat().st_mode & 0o777 == 0o600


def test_a_damaged_identity_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    (tmp_path / IDENTITY_FILE).write_text("not a key\n")
    (tmp_path / IDENTITY_FILE).chmod(0o600)
    with pytest.raises(IdentityFileError):
        load_or_create_identity(tmp_path)


UNREACHABLE = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWNyCHWPoh8E32gGDCVRh1xTECgBCYxDsA8hcZDdtYpf4C"


@pytest.mark.parametrize(
    "changes, message, code",
    [
        ({"model_path": Path("/nonexistent/model")}, "cannot serve model", 2),
        ({"blocks": (2, 9)}, "not inside the model's 4 blocks", 2),
        (
            {"host": HostConfig(bootstrap=(UNREACHABLE,), **QUICK_HOST)},  # type: ignore[arg-type]
            "no bootstrap peer reachable",
            1,
        ),
    ],
    ids=["bad-model", "bad-span", "no-bootstrap"],
)
async def test_startup_errors_are_one_readable_line(
    tiny_llama: Path, tmp_path: Path, changes: dict[str, object], message: str, code: int
) -> None:
    config = dataclasses.replace(node_config(tiny_llama, tmp_path), **changes)  # type: ignore[arg-type]
    with trio.fail_after(30), pytest.raises(StartupError, match=message) as raised:
        async with start_node(config):
            pass
    assert raised.value.exit_code == code and "\n" not in str(raised.value)
