"""The ``darwin-node`` command: ``darwin-node join ...`` serves a span until SIGINT or SIGTERM.

``--verify`` adds the verifier role; ``--verify`` without ``--blocks`` is a verifier that serves
no blocks. ``--cheat MODE`` (hidden, TEST ONLY: node/adversaries.py) makes the node misbehave.

Rules:
- argv is read here and nowhere else; it becomes one `NodeConfig`, then ``trio.run``.
- The only line on stdout is ``listening MULTIADDR`` (the full ``/ip4/.../tcp/PORT/p2p/PEERID``),
  printed and flushed once the node is ready: handlers set, blocks announced. Logs go to stderr.
- A startup failure is one readable line on stderr, never a traceback: exit code 2 for an
  argument, the model or the home directory, 1 for the network or anything unexpected.
- SIGINT or SIGTERM, at any time, stops the node cleanly: exit code 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import multiaddr
import trio

from darwin import heap
from darwin.net.host import HostConfig
from darwin.net.pubsub import PubsubConfig
from darwin.node.config import (
    DTYPES,
    MIB,
    Cheat,
    NodeConfig,
    RetentionConfig,
    VerifyConfig,
)

logger = logging.getLogger(__name__)

DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/0"
_LOG_LEVELS = ("debug", "info", "warning", "error")


def _blocks(text: str) -> tuple[int, int] | None:
    """``A:B`` -> (A, B); ``auto`` -> None."""
    if text == "auto":
        return None
    start, sep, end = text.partition(":")
    if not sep or not start.isdigit() or not end.isdigit() or int(start) >= int(end):
        raise argparse.ArgumentTypeError(f"expected A:B with 0 <= A < B, or auto; got {text!r}")
    return (int(start), int(end))


def _multiaddr(text: str) -> str:
    try:
        multiaddr.Multiaddr(text)
    except Exception as exc:
        raise argparse.ArgumentTypeError(f"not a multiaddr: {text!r} ({exc})") from None
    return text


def _peer_multiaddr(text: str) -> str:
    if "/p2p/" not in _multiaddr(text):
        raise argparse.ArgumentTypeError(f"a bootstrap address must end in /p2p/PEERID: {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darwin-node", description="A Darwin node: serves blocks of a model."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    join = commands.add_parser("join", help="serve a span of a model's blocks in a swarm")
    join.add_argument("--model", required=True, help="local Hugging Face checkpoint directory")
    join.add_argument(
        "--blocks",
        type=_blocks,
        default=argparse.SUPPRESS,
        metavar="A:B|auto",
        help="blocks to serve, A..B-1, or auto: the span the swarm covers least "
        "(required unless --verify: a verifier may serve no blocks)",
    )
    join.add_argument(
        "--num-blocks",
        type=int,
        metavar="N",
        help="how many blocks --blocks auto serves (default: half the model)",
    )
    join.add_argument(
        "--listen",
        action="append",
        type=_multiaddr,
        metavar="MULTIADDR",
        help=f"address to listen on, repeatable (default {DEFAULT_LISTEN})",
    )
    join.add_argument(
        "--bootstrap",
        nargs="+",
        action="extend",
        type=_peer_multiaddr,
        default=[],
        metavar="MULTIADDR",
        help="peers to join through; none starts a new swarm",
    )
    join.add_argument("--home", required=True, help="directory of the node's key and caches")
    join.add_argument("--max-sessions", type=int, default=16, metavar="N")
    join.add_argument(
        "--max-length",
        type=int,
        default=2048,
        metavar="N",
        help="longest session admitted, in tokens",
    )
    join.add_argument(
        "--kv-budget-mib",
        type=float,
        metavar="MIB",
        help="KV-cache memory all sessions may reserve (default: max-sessions "
        "full-length sessions)",
    )
    join.add_argument(
        "--resident-blocks",
        type=int,
        metavar="K",
        help="stream weights, keeping at most K blocks in memory",
    )
    join.add_argument("--dtype", choices=DTYPES, default="float32")
    _add_verification_arguments(join)
    join.add_argument("--log-level", choices=_LOG_LEVELS, default="info")
    return parser


def _add_verification_arguments(join: argparse.ArgumentParser) -> None:
    """Retention of activations for challenges, the verifier role, and the test-only cheats."""
    join.add_argument(
        "--retention-s",
        type=int,
        default=600,
        metavar="S",
        help="seconds every receipt promises its activations are kept for challenges",
    )
    join.add_argument(
        "--retention-memory-mib",
        type=float,
        default=512,
        metavar="MIB",
        help="activations kept in memory; older steps spill to --retention-dir",
    )
    join.add_argument(
        "--retention-disk-mib",
        type=float,
        default=8192,
        metavar="MIB",
        help="activations kept on disk; past it whole sessions are evicted, oldest first",
    )
    join.add_argument(
        "--retention-dir",
        metavar="DIR",
        help="where activations spill (default HOME/retention)",
    )
    join.add_argument(
        "--verify",
        action="store_true",
        help="also act as a verifier for this model (/darwin/verify/1)",
    )
    join.add_argument(
        "--challenge-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="verifier: seconds a challenged node has to reveal (else: unresponsive)",
    )
    join.add_argument("--cheat", choices=[mode.value for mode in Cheat],  # TEST ONLY
                      help=argparse.SUPPRESS)


def _config(args: argparse.Namespace) -> NodeConfig:
    """Raises ValueError: for a value out of range or a missing --blocks."""
    host = HostConfig(
        listen=tuple(args.listen or [DEFAULT_LISTEN]), bootstrap=tuple(args.bootstrap),
        pubsub=PubsubConfig(),
    )
    budget = None if args.kv_budget_mib is None else int(args.kv_budget_mib * MIB)
    serve = "blocks" in args
    if not serve and not args.verify:
        raise ValueError("--blocks is required (unless --verify: a verifier only)")
    home = Path(args.home)
    retention = RetentionConfig(
        memory_bytes=int(args.retention_memory_mib * MIB),
        disk_bytes=int(args.retention_disk_mib * MIB),
        directory=Path(args.retention_dir) if args.retention_dir else home / "retention",
    )
    verify = VerifyConfig(challenge_timeout=args.challenge_timeout) if args.verify else None
    return NodeConfig(
        serve_blocks=serve,
        retention_s=args.retention_s,
        retention=retention,
        verify=verify,
        cheat=None if args.cheat is None else Cheat(args.cheat),
        model_path=Path(args.model),
        home=home,
        blocks=getattr(args, "blocks", None),
        auto_blocks=args.num_blocks,
        host=host,
        max_sessions=args.max_sessions,
        max_length=args.max_length,
        kv_budget_bytes=budget,
        resident_blocks=args.resident_blocks,
        dtype=args.dtype,
    )


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("darwin").setLevel(level.upper())


async def _stop_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for signum in signals:
        logger.info("%s received, shutting down", signal.Signals(signum).name)
        scope.cancel()
        return


async def _serve_until_signal(config: NodeConfig) -> None:
    from darwin.node.server import start_node  # torch and transformers load here, not at --help

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope)
            async with start_node(config) as node:
                heap.settle()
                print(f"listening {node.listen_addr}", flush=True)
                await trio.sleep_forever()


def _fail(message: str, code: int) -> int:
    print(f"darwin-node: error: {message}", file=sys.stderr, flush=True)
    return code


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested one-member groups (trio's nurseries wrap errors)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: list[str] | None = None) -> int:
    """Run ``darwin-node``; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed usage or help
        return exc.code if isinstance(exc.code, int) else 2
    _configure_logging(args.log_level)
    try:
        config = _config(args)
    except ValueError as exc:
        return _fail(str(exc), 2)
    try:
        trio.run(_serve_until_signal, config)
    except BaseException as raised:
        return _exit_code(_single(raised))
    return 0


def _exit_code(exc: BaseException) -> int:
    from darwin.node.server import StartupError

    if isinstance(exc, StartupError):
        return _fail(str(exc), exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if not isinstance(exc, Exception):
        raise exc
    logger.debug("the node failed", exc_info=exc)
    return _fail(f"{type(exc).__name__}: {exc}", 1)
