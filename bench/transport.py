"""Latency and throughput of Darwin's transport: framed streams over Noise + yamux.

Usage:
    python bench/transport.py                 # both stacks, both modes, 3 repetitions
    python bench/transport.py --quick         # fewer samples, one repetition
    python bench/transport.py --reps 5 --rtts 2000

What is measured, per stack and per mode:
- ``rtt 4 KiB``: round trip of one 4 KiB frame echoed back (a decode-step
  activation), p50 and p99 over all samples after a warm-up;
- ``cpu/rtt``: CPU time the *client* process spends per round trip;
- ``4 MiB`` / ``16 MiB``: time from the start of writing one frame of that size
  until a small acknowledgement of its complete arrival comes back (a prefill
  activation), median over repetitions, and the resulting MiB/s;
- ``dial``: connect + open the first stream to a fresh peer.

Stacks (each run in fresh processes, because libp2p reads some knobs globally):
- ``raw-tcp``: the same framing over a bare trio TCP socket (the floor);
- ``libp2p-defaults``: py-libp2p 0.8.1 as it ships: the same ``darwin.net.host``
  code and stack with none of ``darwin.net.libp2p_workarounds`` installed;
- ``darwin``: ``darwin.net.host`` with its workarounds.

Modes: ``2-proc`` (client and server in two processes, what a swarm does) and
``1-proc`` (both hosts in one trio loop, sharing one core).

The repetitions of the stacks are interleaved so that a noisy machine penalises
them alike. Results are printed as a table; nothing is written to disk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import trio

from darwin.net.framing import FrameConfig, FramedStream, StreamClosed

PROTOCOL = "/darwin/bench/1"
ECHO, ACK = b"E", b"A"
SMALL = 4 * 1024
BIG_SIZES = (4 * 1024 * 1024, 16 * 1024 * 1024)
LIMITS = FrameConfig(max_frame_size=32 * 1024 * 1024, frame_timeout=60, write_timeout=60)
STACKS = ("raw-tcp", "libp2p-defaults", "darwin")
MODES = ("2-proc", "1-proc")


# ------------------------------------------------------------------ the two ends


class _TcpStream:
    """A trio TCP stream with the read/write shape the framing expects."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    async def read(self, n: int | None = None) -> bytes:
        return await self._stream.receive_some(n)

    async def write(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def close(self) -> None:
        await self._stream.aclose()


async def _serve_stream(stream) -> None:  # type: ignore[no-untyped-def]
    framed = FramedStream(stream, LIMITS)
    try:
        while True:
            frame = await framed.read()
            await framed.write(frame if frame[:1] == ECHO else ACK)
    except StreamClosed:
        pass


def _use_libp2p_defaults() -> None:
    """Undo darwin.net.host's tuning so the same code measures py-libp2p as shipped."""
    from libp2p.network.config import ConnectionConfig

    import darwin.net.host as host_module

    host_module.connection_config = ConnectionConfig
    host_module.apply_process_fixes = lambda: None


@asynccontextmanager
async def _server(stack: str, seed: bytes) -> AsyncIterator[str]:
    """Serve the bench protocol; yield the address to dial."""
    if stack == "raw-tcp":
        async with trio.open_nursery() as nursery:

            async def handle(sock: trio.SocketStream) -> None:
                await _serve_stream(_TcpStream(sock))

            listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
            port = listeners[0].socket.getsockname()[1]
            yield f"127.0.0.1:{port}"
            nursery.cancel_scope.cancel()
        return
    from darwin.net.host import open_host

    async with open_host(seed) as host:
        host.set_stream_handler(PROTOCOL, _serve_stream)
        yield host.listen_addrs[0]


@asynccontextmanager
async def _client(stack: str, addr: str) -> AsyncIterator[tuple[object, float]]:
    """Connect to ``addr``; yield (stream, seconds to dial and open the stream)."""
    if stack == "raw-tcp":
        start = time.perf_counter()
        host_part, port = addr.rsplit(":", 1)
        sock = await trio.open_tcp_stream(host_part, int(port))
        yield _TcpStream(sock), time.perf_counter() - start
        await sock.aclose()
        return
    from darwin.net.host import open_host

    async with open_host(b"\x01" * 32) as host:
        start = time.perf_counter()
        peer = await host.connect(addr)
        stream = await host.open_stream(peer, PROTOCOL)
        yield stream, time.perf_counter() - start
        await stream.close()


# ----------------------------------------------------------------- measurements


async def _measure(stream, rtts: int, bigs: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    framed = FramedStream(stream, LIMITS)
    small = ECHO + os.urandom(SMALL - 1)
    for _ in range(max(20, rtts // 20)):  # warm-up: windows grow, caches fill
        await framed.write(small)
        await framed.read()
    samples = []
    cpu0 = time.process_time()
    for _ in range(rtts):
        t0 = time.perf_counter()
        await framed.write(small)
        await framed.read()
        samples.append(time.perf_counter() - t0)
    cpu_per_rtt = (time.process_time() - cpu0) / max(rtts, 1)
    big_results: dict[str, list[float]] = {}
    for size in BIG_SIZES:
        payload = ACK + os.urandom(size - 1)
        times = []
        for _ in range(bigs):
            t0 = time.perf_counter()
            await framed.write(payload)
            await framed.read()
            times.append(time.perf_counter() - t0)
        big_results[str(size)] = times
    return {"rtt": samples, "cpu_per_rtt": cpu_per_rtt, "big": big_results}


async def _run_one_proc(stack: str, rtts: int, bigs: int) -> dict[str, object]:
    async with _server(stack, b"\x02" * 32) as addr, _client(stack, addr) as (stream, dial):
        result = await _measure(stream, rtts, bigs)
    result["dial"] = dial
    return result


async def _run_client(stack: str, rtts: int, bigs: int) -> dict[str, object]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, __file__, "_serve", "--stack", stack],
        stdout=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        line = b""
        with trio.fail_after(60):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)  # type: ignore[union-attr]
                if not chunk:
                    raise RuntimeError("bench server exited before listening")
                line += chunk
        addr = line.decode().split()[1]
        async with _client(stack, addr) as (stream, dial):
            result = await _measure(stream, rtts, bigs)
        result["dial"] = dial
        return result
    finally:
        proc.kill()
        await proc.wait()


async def _serve_forever(stack: str) -> None:
    async with _server(stack, b"\x02" * 32) as addr:
        print(f"listening {addr}", flush=True)
        await trio.sleep_forever()


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_serve", "_run"])
    parser.add_argument("--stack", choices=STACKS, required=True)
    parser.add_argument("--mode", choices=MODES, default="2-proc")
    parser.add_argument("--rtts", type=int, default=1000)
    parser.add_argument("--bigs", type=int, default=5)
    args = parser.parse_args(argv)
    if args.stack == "libp2p-defaults":
        _use_libp2p_defaults()
    if args.role == "_serve":
        trio.run(_serve_forever, args.stack)
        return 0
    run = _run_client if args.mode == "2-proc" else _run_one_proc
    print(json.dumps(trio.run(run, args.stack, args.rtts, args.bigs)), flush=True)
    return 0


# ------------------------------------------------------------------ orchestration


@dataclass
class _Row:
    rtt: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    dial: list[float] = field(default_factory=list)
    big: dict[str, list[float]] = field(default_factory=dict)

    def add(self, result: dict[str, object]) -> None:
        self.rtt += result["rtt"]  # type: ignore[arg-type]
        self.cpu.append(result["cpu_per_rtt"])  # type: ignore[arg-type]
        self.dial.append(result["dial"])  # type: ignore[arg-type]
        for size, times in result["big"].items():  # type: ignore[attr-defined]
            self.big.setdefault(size, []).extend(times)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _print_table(rows: dict[tuple[str, str], _Row]) -> None:
    header = (
        f"{'mode':<7} {'stack':<16} {'dial ms':>8} {'rtt4K p50':>10} {'p99':>7} "
        f"{'cpu/rtt':>8} {'4MiB ms':>8} {'MiB/s':>6} {'16MiB ms':>9} {'MiB/s':>6}"
    )
    print(header)
    print("-" * len(header))
    for (mode, stack), row in rows.items():
        cells = [
            f"{mode:<7} {stack:<16}",
            f"{statistics.median(row.dial) * 1e3:8.1f}",
            f"{_percentile(row.rtt, 0.50) * 1e3:10.3f}",
            f"{_percentile(row.rtt, 0.99) * 1e3:7.3f}",
            f"{statistics.median(row.cpu) * 1e3:8.3f}",
        ]
        for size in BIG_SIZES:
            seconds = statistics.median(row.big[str(size)])
            cells.append(f"{seconds * 1e3:8.1f} {size / 2**20 / seconds:6.1f}")
        print(" ".join(cells))
    print("times in ms; rtt p50/p99 pooled over all samples; big frames: median of all sends")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("_"):
        return _child_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--rtts", type=int, default=1000, help="4 KiB round trips per run")
    parser.add_argument("--bigs", type=int, default=5, help="sends per big size per run")
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--quick", action="store_true", help="1 rep, 300 rtts, 2 bigs")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.rtts, args.bigs = 1, 300, 2
    stacks, modes = args.stacks.split(","), args.modes.split(",")
    rows = {(m, s): _Row() for m in modes for s in stacks}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PY_YAMUX_")}
    for rep in range(args.reps):
        for mode in modes:
            for stack in stacks:
                cmd = [sys.executable, __file__, "_run", "--stack", stack, "--mode", mode]
                cmd += ["--rtts", str(args.rtts), "--bigs", str(args.bigs)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    print(out.stderr, file=sys.stderr)
                    return 1
                rows[(mode, stack)].add(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"rep {rep + 1}/{args.reps} {mode} {stack} done", file=sys.stderr)
    _print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
