"""A serving node: load a span, start the host, serve forward, info and challenges, announce.

Rules:
- `start_node` is an async context manager. On entry everything is ready: the identity is
  loaded, the span loaded, both handlers set and every block announced. On exit the host stops,
  which ends every stream; each handler then releases its session.
- Startup runs what needs no network first (identity, checkpoint, model id, an explicit span
  checked against the model), so a bad argument fails before a port is opened.
- A failure a user can cause at startup is a `StartupError`: one readable line and an exit code
  (2: an argument, the model or the home directory; 1: the network).
- Every committed step goes into the node's `RetentionStore`, which answers
  ``/darwin/challenge/1``; the store is closed (spill files removed) on exit.
- With ``verify`` set the node is also a verifier (``/darwin/verify/1``, announced under
  ``verifier_key``); with ``serve_blocks`` off it is only that.
- Every node runs GossipSub (``HostConfig.pubsub``; a config without it gets the default
  ``PubsubConfig()``), opens its ledger (``<home>/ledger.sqlite``, one `Ledger` for the node's
  lifetime, shared by every writer), gossips verdicts on its model's topic
  (``open_verdict_gossip``) and serves ``/darwin/ledger-sync/1`` from that ledger. A verifier
  publishes every verdict it signs, and for a ``fail`` its fraud_proof notice.
- Every node keeps fraud proofs in ``<home>/fraud-proofs`` and serves them over
  ``/darwin/proof/1``. Fraud-proof notices (gossip) go to the node's `FraudNotices`, which
  fetches each proof, re-checks it with the node's checkpoint (one layer) and records the
  outcome in the ledger (``specs/gossip.md`` §4.2); an ``accusation_refuted`` it records is
  published on the model's topic in turn.
- A node that joins through bootstrap peers catches up from them in the background
  (``/darwin/ledger-sync/1``, resuming at the cursors kept in ``<home>/sync-cursors.json``):
  the verdicts it missed are appended, the fraud-proof notices handled as gossiped ones.
- The span, the challenge handler and the verifier are built honest, then passed through
  `darwin.node.adversaries.compose`, the one place a test-only ``--cheat`` wraps its part.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import trio

from darwin.gossip.fraud_notices import FraudNotices, open_fraud_notices, proof_checker
from darwin.gossip.ledger_sync import LedgerSyncHandler, catch_up_with
from darwin.gossip.proof_exchange import ProofHandler
from darwin.gossip.proof_store import PROOFS_DIR, ProofStore
from darwin.gossip.sync_cursors import SyncCursors
from darwin.gossip.verdicts import VerdictGossip, open_verdict_gossip
from darwin.home import LEDGER_FILE, load_or_create_identity, model_cache_dir
from darwin.ledger import Ledger, LedgerError
from darwin.model import Checkpoint, ModelError, SpanRunner, model_id
from darwin.net.host import BootstrapError, Host, StreamHandler, open_host
from darwin.net.protocols import (
    CHALLENGE_PROTOCOL,
    FORWARD_PROTOCOL,
    INFO_PROTOCOL,
    LEDGER_SYNC_PROTOCOL,
    PROOF_PROTOCOL,
    PUSH_PROTOCOL,
    VERIFY_PROTOCOL,
    verifier_key,
)
from darwin.net.pubsub import PubsubConfig
from darwin.node.adversaries import compose, load_settings
from darwin.node.announce import announce_span, provider_counts
from darwin.node.block_selection import choose_span
from darwin.node.config import NodeConfig, VerifyConfig
from darwin.node.serving.challenge_handler import ChallengeHandler
from darwin.node.serving.committed_span import CommitConfig
from darwin.node.serving.forward_handler import ForwardHandler
from darwin.node.serving.info_handler import InfoHandler
from darwin.node.serving.push import PushLinks
from darwin.node.serving.retention import RetentionStore
from darwin.node.serving.served_span import ServedSpan
from darwin.node.serving.sessions import SessionLimits, SessionTable
from darwin.node.verifying.verify_handler import Judge, VerifyHandler
from darwin.protocol import Identity, IdentityFileError, ModelId
from darwin.protocol.forward_session import ServePolicy
from darwin.verifier import Verifier

__all__ = ["Node", "StartupError", "start_node"]

logger = logging.getLogger(__name__)

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class StartupError(Exception):
    """The node cannot start; ``str(exc)`` is the line to show, ``exit_code`` the status."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Node:
    """A running node, as `start_node` yields it."""

    config: NodeConfig
    identity: Identity
    host: Host
    served: ServedSpan | None  # None: a verifier that serves no blocks
    sessions: SessionTable | None
    verifier: Verifier | None = None
    ledger: Ledger | None = None  # the node's ledger (<home>/ledger.sqlite), open while it runs
    gossip: VerdictGossip | None = None  # verdict gossip on the model's topic
    fraud_notices: FraudNotices | None = None  # re-checks the fraud proofs peers tell of

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    @property
    def listen_addr(self) -> str:
        """The first address we listen on, ``/ip4/.../tcp/PORT/p2p/PEERID``."""
        return self.host.listen_addrs[0]

    @property
    def span(self) -> tuple[int, int]:
        assert self.served is not None, "a verifier-only node serves no span"
        return self.served.span

    @property
    def model_id(self) -> ModelId:
        if self.served is not None:
            return self.served.model_id
        assert self.verifier is not None
        return self.verifier.model_id


@dataclass(frozen=True)
class Wiring:
    """What the node's parts are built from, once the host and ledger services run."""

    config: NodeConfig
    identity: Identity
    checkpoint: Checkpoint
    model_id: ModelId
    host: Host
    ledger: Ledger
    gossip: VerdictGossip
    proofs: ProofStore
    notices: FraudNotices


@asynccontextmanager
async def start_node(config: NodeConfig) -> AsyncIterator[Node]:
    """Start serving per ``config``; see the module rules.

    Raises:
        StartupError: a bad model, span or home directory, or no bootstrap peer reachable.
    """
    identity = _identity(config.home)
    checkpoint, mid = await trio.to_thread.run_sync(
        # trio-typing's stubs (a py-libp2p dependency) predate abandon_on_cancel
        partial(_open_model, config), abandon_on_cancel=True  # type: ignore[call-arg]
    )
    if config.blocks is not None:
        _check_span(config.blocks, checkpoint)
    host_config = config.host
    if host_config.pubsub is None:
        host_config = dataclasses.replace(host_config, pubsub=PubsubConfig())
    joined = False
    try:
        with _open_ledger(config, identity) as ledger:
            async with open_host(identity.seed, host_config) as host:
                joined = True
                async with _ledger_services(config, host, ledger, checkpoint, mid) as (
                        gossip, notices, proofs), \
                        _serve_node(Wiring(config, identity, checkpoint, mid, host, ledger,
                                           gossip, proofs, notices)) as node:
                    yield node
    except BootstrapError as exc:
        if joined:
            raise
        raise StartupError(str(exc), exit_code=1) from None


@asynccontextmanager
async def _ledger_services(
    config: NodeConfig, host: Host, ledger: Ledger, checkpoint: Checkpoint, mid: ModelId,
) -> AsyncIterator[tuple[VerdictGossip, FraudNotices, ProofStore]]:
    """Ledger sync, the proof store and its protocol, fraud notices, verdict gossip, and the
    catch-up from the bootstrap peers (in the background), until the block exits."""
    host.set_stream_handler(LEDGER_SYNC_PROTOCOL, LedgerSyncHandler(ledger, config.sync))
    proofs = _proof_store(config, host)
    async with open_fraud_notices(host, ledger, proofs, proof_checker(checkpoint, mid),
                                  config.notices) as notices, \
            open_verdict_gossip(host, ledger, mid, on_fraud_notice=notices.submit) as gossip, \
            trio.open_nursery() as nursery:
        notices.publish = gossip.publish
        nursery.start_soon(_catch_up, config, host, ledger, notices)
        try:
            yield gossip, notices, proofs
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def _serve_node(w: Wiring) -> AsyncIterator[Node]:
    """Load the span, compose the parts, set the handlers, announce; the running node."""
    config, host = w.config, w.host
    served = challenges = sessions = None
    if config.serve_blocks:
        span = config.blocks or await _auto_span(w)
        runner = await trio.to_thread.run_sync(  # abandon_on_cancel: as in start_node
            _load, w, span, abandon_on_cancel=True)  # type: ignore[call-arg]
        store = RetentionStore(w.identity, config.retention)
        served = ServedSpan(runner, w.identity, CommitConfig(w.model_id, config.retention_s),
                            store)
        challenges = ChallengeHandler(store, config.challenge)
    verifier = None
    if config.verify is not None:
        verifier = Verifier(w.identity, w.checkpoint, model_id=w.model_id)
    parts = compose(config.cheat, served, challenges, verifier, _TORCH_DTYPES[config.dtype])
    if parts.served is not None and parts.challenges is not None:
        sessions = SessionTable(_session_limits(config, parts.served))
        _serve(w, parts.served, parts.challenges, sessions)
    if parts.verifier is not None and config.verify is not None:
        _verify(w, parts.verifier, config.verify)
    try:
        if parts.served is not None:
            await announce_span(host, w.model_id, parts.served.span)
            logger.info("node %s serves blocks [%d, %d) of %s at %s", host.peer_id,
                        *parts.served.span, config.model_path, host.listen_addrs)
        if verifier is not None:
            await host.provide(verifier_key(w.model_id))
            logger.info("node %s verifies model %s", host.peer_id, w.model_id.hex()[:16])
        yield Node(config, w.identity, host, parts.served, sessions, verifier, w.ledger,
                   w.gossip, w.notices)
    finally:
        if served is not None:
            served.store.close()


def _open_ledger(config: NodeConfig, identity: Identity) -> Ledger:
    """The node's ledger, ``<home>/ledger.sqlite`` (a StartupError when it cannot be used)."""
    try:
        return Ledger.open(config.home / LEDGER_FILE, identity)
    except (LedgerError, OSError, sqlite3.Error) as exc:
        raise StartupError(f"cannot open the ledger in {config.home}: {exc}") from None


async def _catch_up(config: NodeConfig, host: Host, ledger: Ledger,
                    notices: FraudNotices) -> None:
    """Take in what the bootstrap peers hold that we missed (failures are logged)."""
    peers = [addr.rsplit("/p2p/", 1)[-1] for addr in config.host.bootstrap]
    peers = [peer for peer in dict.fromkeys(peers) if peer != host.peer_id]
    if not peers:
        return
    cursors = await trio.to_thread.run_sync(SyncCursors.load, config.home)
    await catch_up_with(host, peers, ledger, cursors, config.sync,
                        on_fraud_notice=notices.handle)


def _proof_store(config: NodeConfig, host: Host) -> ProofStore:
    """The node's proof store, served over ``/darwin/proof/1``: it keeps what it can serve."""
    exchange = config.notices.fetch
    store = ProofStore(config.home / PROOFS_DIR, max_bytes=exchange.max_proof_bytes)
    host.set_stream_handler(PROOF_PROTOCOL, ProofHandler(store, exchange))
    return store


def _verify(w: Wiring, verifier: Judge, config: VerifyConfig) -> None:
    """Serve ``/darwin/verify/1`` (``--verify``), publishing on the node's verdict gossip."""
    w.host.set_stream_handler(VERIFY_PROTOCOL, VerifyHandler(
        w.host, verifier, w.ledger, config, publish=w.gossip.publish, proofs=w.proofs))


def _identity(home: Path) -> Identity:
    try:
        return load_or_create_identity(home)
    except (IdentityFileError, OSError) as exc:
        raise StartupError(f"cannot use home directory {home}: {exc}") from None


def _open_model(config: NodeConfig) -> tuple[Checkpoint, ModelId]:
    """Open the checkpoint lazily and compute its model id (digests cached in the home)."""
    try:
        checkpoint = Checkpoint.open(config.model_path)
        return checkpoint, ModelId(model_id(checkpoint, cache_dir=model_cache_dir(config.home)))
    except (ModelError, OSError) as exc:
        raise StartupError(f"cannot serve model {config.model_path}: {exc}") from None


def _check_span(span: tuple[int, int], checkpoint: Checkpoint) -> None:
    start, end = span
    if not 0 <= start < end <= checkpoint.n_layers:
        raise StartupError(
            f"blocks {start}:{end} are not inside the model's "
            f"{checkpoint.n_layers} blocks (0:{checkpoint.n_layers})"
        )


async def _auto_span(w: Wiring) -> tuple[int, int]:
    """The span the swarm covers least (``--blocks auto``)."""
    n_layers = w.checkpoint.n_layers
    length = w.config.auto_blocks or (n_layers + 1) // 2
    counts = await provider_counts(w.host, w.model_id, n_layers, w.config.discovery_timeout)
    span: tuple[int, int] = choose_span(counts, length)
    logger.info("providers per block %s: choosing blocks [%d, %d)", counts, *span)
    return span


def _load(w: Wiring, span: tuple[int, int]) -> SpanRunner:
    """The span's runner, loaded as the node's test-only cheat, if any, needs it."""
    dtype, resident = load_settings(w.config.cheat, _TORCH_DTYPES[w.config.dtype],
                                    w.config.resident_blocks)
    try:
        return SpanRunner.load(w.checkpoint, *span, dtype=dtype, resident_blocks=resident)
    except ModelError as exc:
        raise StartupError(f"cannot load blocks {span[0]}:{span[1]}: {exc}") from None


def _session_limits(config: NodeConfig, served: ServedSpan) -> SessionLimits:
    budget = config.kv_budget_bytes
    if budget is None:
        budget = config.max_sessions * served.kv_bytes_per_row(*served.span, config.max_length)
    return SessionLimits(max_sessions=config.max_sessions, kv_budget_bytes=budget)


def _serve(w: Wiring, served: ServedSpan, challenges: StreamHandler,
           sessions: SessionTable) -> None:
    """Serve forward, push, info and challenge streams for ``served``."""
    config, host = w.config, w.host
    start, end = served.span
    policy = ServePolicy(
        model_id=served.model_id,
        span_start=start,
        span_end=end,
        max_length=config.max_length,
        retention_s=config.retention_s,
    )
    compute = trio.CapacityLimiter(config.compute_threads)
    links = PushLinks(host, config.forward, w.ledger)
    host.set_stream_handler(PUSH_PROTOCOL, links)
    host.set_stream_handler(
        FORWARD_PROTOCOL,
        ForwardHandler(served, sessions, policy, config.forward, compute, links),
    )
    host.set_stream_handler(INFO_PROTOCOL, InfoHandler(served, sessions, config.info))
    host.set_stream_handler(CHALLENGE_PROTOCOL, challenges)
