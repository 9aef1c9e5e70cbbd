"""``darwin-node join``: the listening line, a reachable node, a clean exit on SIGTERM, and
startup errors as one line on stderr."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from node_support import QUICK_HOST, client_frames, expect_end, receive, send
from transport_support import seed

from darwin.net.host import HostConfig, open_host
from darwin.net.protocols import INFO_PROTOCOL
from darwin.node import cli
from darwin.protocol import InfoRequest, NodeInfo

LISTENING = re.compile(r"listening (/ip4/127\.0\.0\.1/tcp/\d+/p2p/(12D3KooW\w+))")


async def _read_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            break
        data += chunk
    return data.decode()


async def test_join_prints_listening_serves_and_exits_cleanly_on_sigterm(
    tiny_llama: Path, tmp_path: Path
) -> None:
    argv = [
        sys.executable,
        "-m",
        "darwin.node",
        "join",
        "--model",
        str(tiny_llama),
        "--blocks",
        "1:3",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--home",
        str(tmp_path),
    ]
    with (tmp_path / "stderr.log").open("wb") as log:
        process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=log)
    try:
        assert process.stdout is not None
        with trio.fail_after(60):
            line = await _read_line(process.stdout)
        match = LISTENING.fullmatch(line.rstrip("\n"))
        assert match, line
        addr, peer_id = match.groups()
        with trio.fail_after(20):
            joined = HostConfig(bootstrap=(addr,), dht_server=False, **QUICK_HOST)  # type: ignore[arg-type]
            async with open_host(seed(97), joined) as client:
                stream = client_frames(await client.open_stream(peer_id, INFO_PROTOCOL))
                await send(stream, InfoRequest())
                info = await receive(stream)
                await expect_end(stream)
        assert isinstance(info, NodeInfo) and (info.span_start, info.span_end) == (1, 3)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0
        assert await process.stdout.receive_some() == b""  # nothing but the one line
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/nonexistent/model", "--blocks", "0:2"], "cannot serve model"),
        (["--blocks", "0:9"], "not inside the model's 4 blocks"),
        (["--blocks", "3:1"], "expected A:B"),
        (["--blocks", "0:2", "--bootstrap", "/ip4/127.0.0.1/tcp/1"], "must end in /p2p/"),
        (["--blocks", "0:2", "--max-sessions", "0"], "max-sessions must be at least 1"),
    ],
    ids=["bad-model", "span-outside", "bad-span", "bootstrap-without-peer", "bad-limit"],
)
def test_startup_errors_are_one_line_and_exit_2(
    args: list[str],
    message: str,
    tiny_llama: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "_configure_logging", lambda level: None)
    argv = ["join", "--model", str(tiny_llama), "--home", str(tmp_path), *args]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err and "Traceback" not in captured.err
    assert (
        captured.err.strip()
        .splitlines()[-1]
        .startswith(("darwin-node: error:", "usage:", "darwin-node join: error:"))
    )
