"""The configuration of a serving node: one frozen dataclass per component, passed whole.

Rules:
- Only the CLI reads argv; everything below it receives a `NodeConfig`.
- Construction validates what can be checked without the model (ranges, dtype names); what
  needs the checkpoint (the span against ``n_layers``) is checked at startup.
- Defaults of the forward limits are the normative ones of ``specs/forward-protocol.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from darwin.gossip.fraud_notices import NoticeConfig
from darwin.gossip.ledger_sync import SyncConfig
from darwin.net.host import HostConfig
from darwin.net.pubsub import PubsubConfig

__all__ = ["DTYPES", "ChallengeLimits", "Cheat", "ForwardLimits", "InfoLimits",
           "NodeConfig", "RetentionConfig", "VerifyConfig"]

DTYPES = ("float32", "float16", "bfloat16")
MIB = 2**20


@dataclass(frozen=True)
class ForwardLimits:
    """Bounds on one ``/darwin/forward/1`` stream."""

    # Largest frame accepted or sent, in bytes (header checked before the body is read).
    max_frame_size: int = 64 * MIB
    # Seconds from the first byte of a frame to its last; a half-sent frame is dropped after it.
    frame_timeout: float = 60.0
    # Seconds a session may stay without any frame before the node closes it.
    idle_timeout: float = 300.0
    # Seconds allowed to write one frame to a client that does not read.
    write_timeout: float = 60.0
    # Seconds a step of a pushed session waits for its input from the previous hop (less than
    # the client's step timeout, so the client hears why rather than timing out).
    push_timeout: float = 100.0
    # Seconds to reach the next hop and open the push stream when a session is opened.
    push_dial_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.max_frame_size < 1024:
            raise ValueError("max_frame_size must be at least 1024 bytes")
        for name in ("frame_timeout", "idle_timeout", "write_timeout", "push_timeout",
                     "push_dial_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True)
class InfoLimits:
    """Bounds on one ``/darwin/info/1`` exchange."""

    # Largest request frame accepted, in bytes (an InfoRequest is a few dozen).
    max_frame_size: int = 4096
    # Seconds the client has to send its whole request, and we to write the answer.
    timeout: float = 10.0


@dataclass(frozen=True)
class RetentionConfig:
    """Budgets of the retention store."""

    # Bytes of activations held in memory; past it the oldest steps spill to `directory`.
    memory_bytes: int = 512 * 2**20
    # Bytes of activations held on disk; past it whole sessions are evicted, oldest first.
    disk_bytes: int = 8 * 2**30
    # Directory for spill files (owned by the store: stale spill files are removed at start);
    # None: no spilling, sessions are evicted once memory is full.
    directory: Path | None = None


class Cheat(enum.Enum):
    """TEST ONLY: a misbehaviour of ``darwin-node join --cheat MODE`` (the value is MODE).

    What each does: ``specs/verification.md`` section 10; how: node/adversaries.py.
    """

    NOISE = "noise"
    SKIP = "skip"
    WEIGHTS = "weights"
    BF16 = "bf16"
    MISMATCH = "mismatch"
    REPLAY = "replay"
    REFUSE = "refuse"
    INCONSISTENT = "inconsistent"
    FALSE_FAIL = "false-fail"


@dataclass(frozen=True)
class ChallengeLimits:
    """Bounds on one ``/darwin/challenge/1`` exchange (node side)."""

    # Seconds the verifier has to send its whole challenge, and we to write the reveal.
    timeout: float = 30.0


@dataclass(frozen=True)
class VerifyConfig:
    """The verifier role (``darwin-node join --verify``)."""

    # Seconds a challenged node has to answer before the verdict is ``unresponsive``.
    challenge_timeout: float = 60.0
    # Seconds a client has to send its whole verify request, and we to write the answer.
    request_timeout: float = 30.0
    # Largest verify request accepted, in bytes (receipts only: no tensors).
    max_request_bytes: int = 16 * MIB

    def __post_init__(self) -> None:
        if not self.challenge_timeout > 0 or not self.request_timeout > 0:
            raise ValueError("verifier timeouts must be positive")


@dataclass(frozen=True)
class NodeConfig:
    """Everything `darwin.node.server.start_node` needs."""

    # Local Hugging Face checkpoint directory to serve.
    model_path: Path
    # Directory of the node's persistent state: its identity key, the model-id digest cache.
    home: Path
    # Blocks [start, end) to serve; None picks the span the swarm covers least (--blocks auto).
    blocks: tuple[int, int] | None = None
    # How many blocks --blocks auto serves; None: half the model, rounded up.
    auto_blocks: int | None = None
    # Where to listen and whom to join through (the host's own config). Every node runs
    # GossipSub for verdict gossip: a host config without ``pubsub`` gets ``PubsubConfig()``.
    host: HostConfig = field(default_factory=lambda: HostConfig(pubsub=PubsubConfig()))
    # Most forward sessions open at once.
    max_sessions: int = 16
    # Longest session (prompt plus generated tokens) the node admits.
    max_length: int = 2048
    # Bytes all sessions' KV caches may reserve together; None: max_sessions full-length
    # sessions of one batch row over the whole span.
    kv_budget_bytes: int | None = None
    # Blocks kept in memory at once (streaming-weights mode); None keeps the whole span.
    resident_blocks: int | None = None
    # The dtype the node computes in and accepts on the wire.
    dtype: str = "float32"
    # Seconds the node promises (in every receipt) to keep a step's activations for a challenge.
    retention_s: int = 600
    # Steps computed at once; torch already uses every core for one step.
    compute_threads: int = 1
    # Seconds for each per-block provider lookup when choosing a span automatically.
    discovery_timeout: float = 5.0
    # Bounds on forward streams.
    forward: ForwardLimits = field(default_factory=ForwardLimits)
    # Bounds on info exchanges.
    info: InfoLimits = field(default_factory=InfoLimits)
    # Whether the node serves blocks at all (False: a verifier only, ``--verify`` alone).
    serve_blocks: bool = True
    # Budgets of the store that keeps committed activations for challenges.
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    # Bounds on challenge exchanges.
    challenge: ChallengeLimits = field(default_factory=ChallengeLimits)
    # The verifier role: None serves no ``/darwin/verify/1``.
    verify: VerifyConfig | None = None
    # Fraud-proof notices: the /darwin/proof/1 exchange (served and fetched) and the queue.
    notices: NoticeConfig = field(default_factory=NoticeConfig)
    # Ledger sync: what we serve, and the catch-up from the bootstrap peers at startup.
    sync: SyncConfig = field(default_factory=SyncConfig)
    # TEST ONLY: a deliberate misbehaviour, for the adversarial suite and demo.
    cheat: Cheat | None = None

    def __post_init__(self) -> None:
        """Raises ValueError: for a value out of range."""
        if self.blocks is not None:
            start, end = self.blocks
            if not 0 <= start < end:
                raise ValueError(f"blocks {start}:{end} is not a non-empty range A:B with 0 <= A")
        if self.auto_blocks is not None and self.auto_blocks < 1:
            raise ValueError("the number of blocks must be at least 1")
        for name in ("max_sessions", "max_length", "compute_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        if self.kv_budget_bytes is not None and self.kv_budget_bytes < 0:
            raise ValueError("the KV-cache budget cannot be negative")
        if self.resident_blocks is not None and self.resident_blocks < 1:
            raise ValueError("resident-blocks must be at least 1")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.cheat is not None and not isinstance(self.cheat, Cheat):
            raise ValueError(f"cheat must be a Cheat, got {self.cheat!r}")
        if not self.serve_blocks and self.verify is None:
            raise ValueError("a node that serves no blocks must be a verifier (--verify)")
        if not 0 <= self.retention_s < 2**32:
            raise ValueError("retention must be between 0 and 2^32 - 1 seconds")
