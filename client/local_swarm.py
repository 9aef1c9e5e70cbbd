"""A swarm of `darwin-node join` processes on 127.0.0.1, for the demo, the tests and the bench.

Rules:
- Each node is a real subprocess (``python -m darwin.node join``) in its own process group, so
  a Ctrl-C in the terminal reaches only us and we stop the nodes in order.
- A node is ready when it prints its ``listening MULTIADDR`` line; we wait for that line with a
  deadline, never by sleeping. A node that exits first, or stays silent, is an error that
  quotes the tail of its log.
- The first node started without a bootstrap address starts the swarm; later ones join
  through it. Nodes given together start concurrently.
- `LocalSwarm.stop` (also on leaving the ``with`` block, whatever happened) terminates every
  process it started, then kills whatever did not exit in time. On Linux a node also gets
  SIGTERM if the process that started it dies without stopping it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

READY_PREFIX = "listening "


class LocalSwarmError(Exception):
    """A local node did not start."""


@dataclass(frozen=True)
class LocalSwarmConfig:
    """How local nodes are started."""

    start_timeout: float = 90.0  # seconds for a node to print its listening line
    stop_timeout: float = 10.0  # seconds a node gets to exit after SIGTERM before SIGKILL
    max_length: int | None = None  # --max-length of every node (None: the node's default)
    max_sessions: int | None = None  # --max-sessions of every node
    extra_args: tuple[str, ...] = ()  # more arguments for every node
    env: tuple[tuple[str, str], ...] = ()  # environment variables set for every node


@dataclass
class LocalNode:
    """One running node process."""

    name: str
    blocks: str  # as given to --blocks
    home: Path
    log_path: Path
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    address: str = ""  # the listening multiaddr, once ready

    @property
    def peer_id(self) -> str:
        return self.address.rsplit("/p2p/", 1)[-1]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the node and wait until it is gone (it gets no chance to say goodbye)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=30)

    def stop(self, timeout: float) -> None:
        """SIGTERM the node; SIGKILL it if it has not exited after `timeout` seconds."""
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("node %s did not stop in %s s; killing it", self.name, timeout)
            self.kill()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class LocalSwarm:
    """Starts and stops local node processes serving one model; a context manager."""

    def __init__(self, model: Path, root: Path, config: LocalSwarmConfig = LocalSwarmConfig()
                 ) -> None:
        self.model = model
        self.root = root
        self.config = config
        self.nodes: list[LocalNode] = []

    @property
    def bootstrap(self) -> tuple[str, ...]:
        """The address everybody joins through: the first node's."""
        return (self.nodes[0].address,) if self.nodes else ()

    def start(self, blocks: list[str], names: list[str] | None = None,
              args: tuple[str, ...] = ()) -> list[LocalNode]:
        """Start one node per ``--blocks`` value, concurrently, and wait until all listen.

        ``args`` are more ``darwin-node join`` arguments for these nodes (``--verify``, ...);
        an empty ``blocks`` value starts a node without ``--blocks`` (a verifier only).

        Raises:
            LocalSwarmError: a node exited or stayed silent past ``start_timeout``.
        """
        names = names or [f"node{len(self.nodes) + i}" for i in range(len(blocks))]
        started = [self._spawn(name, span, self.bootstrap, args)
                   for name, span in zip(names, blocks, strict=True)]
        self.nodes.extend(started)
        deadline = time.monotonic() + self.config.start_timeout
        for node in started:
            node.address = self._wait_ready(node, deadline)
        return started

    def node(self, peer_id: str) -> LocalNode:
        """The node with this peer id (KeyError otherwise)."""
        for node in self.nodes:
            if node.peer_id == peer_id:
                return node
        raise KeyError(peer_id)

    def stop(self) -> None:
        """Stop every node this swarm started (never raises)."""
        for node in self.nodes:
            if node.alive:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.stop(self.config.stop_timeout)
            except Exception:  # keep stopping the others
                logger.exception("could not stop node %s", node.name)

    def __enter__(self) -> LocalSwarm:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _spawn(self, name: str, blocks: str, bootstrap: tuple[str, ...],
               args: tuple[str, ...] = ()) -> LocalNode:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "darwin.node", "join", "--model", str(self.model),
                "--listen", "/ip4/127.0.0.1/tcp/0", "--home", str(home)]
        if blocks:
            argv += ["--blocks", blocks]
        if bootstrap:
            argv += ["--bootstrap", *bootstrap]
        if self.config.max_length is not None:
            argv += ["--max-length", str(self.config.max_length)]
        if self.config.max_sessions is not None:
            argv += ["--max-sessions", str(self.config.max_sessions)]
        argv += list(self.config.extra_args) + list(args)
        log_path = home / "node.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", **dict(self.config.env)}
        with log_path.open("w") as log:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                       stdin=subprocess.DEVNULL, text=True, env=env,
                                       start_new_session=True, preexec_fn=_die_with_parent)
        node = LocalNode(name, blocks, home, log_path, process)
        threading.Thread(target=_pump, args=(process, node.lines), daemon=True,
                         name=f"stdout-{name}").start()
        logger.debug("started node %s (pid %d) for blocks %s", name, process.pid, blocks)
        return node

    def _wait_ready(self, node: LocalNode, deadline: float) -> str:
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = node.lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise LocalSwarmError(
                    f"node {node.name} did not listen within {self.config.start_timeout} s; "
                    f"its log ends:\n{node.log_tail()}") from None
            if line is None:
                node.process.wait(timeout=10)
                raise LocalSwarmError(
                    f"node {node.name} exited with code {node.process.returncode} before it "
                    f"listened; its log ends:\n{node.log_tail()}")
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX):].strip()


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the process that started us dies,
    so a node never outlives a demo or a test run that was killed outright."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1  # PR_SET_PDEATHSIG in <sys/prctl.h>
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    """Move a node's stdout into a queue, line by line, until it ends (then put None)."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)
    lines.put(None)
