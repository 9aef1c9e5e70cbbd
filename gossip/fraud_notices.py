"""Fraud-proof notices: fetch the proof a peer told us about, re-check it, record what we found.

Rules of this module (normative text: ``specs/gossip.md`` §4.2); nodes and clients share it:

- A notice is a peer's signed ``fraud_proof`` or ``accusation_refuted`` record (from gossip
  or ledger-sync catch-up): "I checked the proof named ``proof_hash`` against ``subject``"
  (and found it held, or not: either way we check it ourselves). It is never appended. We
  fetch the proof's bytes over ``/darwin/proof/1`` from the peer that handed us the notice,
  then from the record's signer; check that they hash to ``proof_hash``; decode them; and
  re-check the proof with our own checkpoint (``recheck_fraud_proof``: one layer loaded, in a
  worker thread, one check at a time).
- What we found becomes our own entry, appended after the bytes are stored (so that we can
  serve every proof our ledger names):

  - the proof holds: ``fraud_proof`` confirmed, accuser = the verdict's signer (the subject
    is banned);
  - the evidence is genuine and the layer recomputes (a false accusation):
    ``accusation_refuted`` against the verdict's signer;
  - it cannot be re-run here (another model, an adapter) but its signatures hold:
    ``fraud_proof`` unconfirmed.

  Nothing is appended when the bytes cannot be had (``unavailable``: a later notice retries),
  are not a proof or its signed parts do not hold (``worthless``: anyone can write a proof
  naming someone else, so it blames nobody), or the proof accuses another peer than the
  notice names (``mismatched``).
- Our own ``accusation_refuted`` is published (``publish``, the node's gossip) as a notice in
  turn: the liar's signed ``fail`` travels as a verdict, so its refutation must travel too.
  A client sets no ``publish``; a failed publish is logged (catch-up serves the entry).
- Each proof hash is handled once: a hash that our ledger names (read when the service opens,
  then kept), that our store holds, that is in flight, or that was recently found worthless
  or mismatched is a ``duplicate``.
- Bounded: ``submit`` (the gossip hook) only queues (``queue`` deep; past it a notice is
  ``overloaded`` and catch-up brings it back); ``workers`` tasks fetch at once. A bad notice
  is counted in ``stats`` and logged with its peer, never raised.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

import trio

from darwin.gossip.proof_exchange import ProofExchangeConfig, fetch_proof
from darwin.gossip.proof_store import ProofStore
from darwin.gossip.verdicts import Publish, publish_or_log
from darwin.ledger import (
    AccusationRefuted,
    Entry,
    EntryKind,
    FraudStatus,
    InvalidEntryError,
    Ledger,
    Record,
)
from darwin.ledger import FraudProof as FraudProofEntry
from darwin.model import Checkpoint
from darwin.net.framing import TransportError
from darwin.net.host import Host
from darwin.protocol import FraudProof, ModelId, RemoteProtocolError
from darwin.verifier import FraudCheck, LayerRecomputer, RecomputeConfig, recheck_fraud_proof

__all__ = ["FraudNotices", "NoticeConfig", "NoticeOutcome", "ProofCheck", "Publish",
           "open_fraud_notices", "proof_checker"]

logger = logging.getLogger(__name__)

# Re-runs a proof against what we hold: its outcome, or None when it cannot be re-run here.
ProofCheck = Callable[[FraudProof], FraudCheck | None]


class NoticeOutcome(StrEnum):
    """What handling one notice came to; the value is its counter in ``stats``."""

    CONFIRMED = "confirmed"  # fraud_proof confirmed appended
    REFUTED = "refuted"  # accusation_refuted appended
    UNCONFIRMED = "unconfirmed"  # fraud_proof unconfirmed appended
    WORTHLESS = "worthless"  # not a proof, or its signatures do not hold: nothing appended
    MISMATCHED = "mismatched"  # the proof accuses someone else than the notice: nothing
    UNAVAILABLE = "unavailable"  # no peer gave us the bytes: nothing (a later notice retries)
    DUPLICATE = "duplicate"  # this proof was handled already, or is being handled
    OVERLOADED = "overloaded"  # the queue was full: dropped (catch-up brings it back)
    INVALID = "invalid"  # not a signed fraud_proof or accusation_refuted record
    FAILED = "failed"  # our own failure (checkpoint, disk, ledger): logged, retried later


_RECORDED = {NoticeOutcome.CONFIRMED: EntryKind.FRAUD_PROOF,
             NoticeOutcome.UNCONFIRMED: EntryKind.FRAUD_PROOF,
             NoticeOutcome.REFUTED: EntryKind.ACCUSATION_REFUTED}


def proof_checker(checkpoint: Checkpoint, model_id: ModelId) -> ProofCheck:
    """Re-checks proofs against ``checkpoint``, loading the accused layer alone (cached)."""
    recomputer = LayerRecomputer(checkpoint, RecomputeConfig(cached_layers=1))
    return partial(recheck_fraud_proof, checkpoint=checkpoint, model_id=model_id,
                   recomputer=recomputer)


@dataclass(frozen=True)
class NoticeConfig:
    """How a node or client takes in fraud-proof notices."""

    # The /darwin/proof/1 exchange (largest proof fetched, timeout per peer).
    fetch: ProofExchangeConfig = field(default_factory=ProofExchangeConfig)
    # Notices waiting for a worker (node); past it they are dropped as overloaded.
    queue: int = 64
    # Notices fetched at once; checks still run one at a time.
    workers: int = 2
    # Hashes found worthless or mismatched that we remember (least recent forgotten).
    remembered: int = 4096

    def __post_init__(self) -> None:
        if self.queue < 1 or self.workers < 1 or self.remembered < 1:
            raise ValueError("queue, workers and remembered must be at least 1")


class FraudNotices:
    """Takes in fraud-proof notices for one ledger; open one with ``FraudNotices.open``.

    Attributes:
        stats: a counter per ``NoticeOutcome`` value. Read-only for callers.
        publish: where our own ``accusation_refuted`` records are broadcast; None (a client)
            keeps them in the ledger. A node sets it once its gossip is open, which itself
            needs ``submit``.
    """

    def __init__(self, host: Host, ledger: Ledger, store: ProofStore, check: ProofCheck,
                 config: NoticeConfig, handled: set[bytes]) -> None:
        self.host, self.ledger, self.store = host, ledger, store
        self.config = config
        self.publish: Publish | None = None
        self._check = check
        self._handled = handled  # proof hashes our ledger names
        self._in_flight: set[bytes] = set()
        self._rejected: OrderedDict[bytes, None] = OrderedDict()
        self._checking = trio.CapacityLimiter(1)
        self.stats: dict[str, int] = dict.fromkeys(map(str, NoticeOutcome), 0)
        self._changed = trio.Event()
        self._queue_in, self._queue_out = trio.open_memory_channel[
            tuple[Record, str, bytes]](config.queue)

    @classmethod
    def open(cls, host: Host, ledger: Ledger, store: ProofStore, check: ProofCheck,
             config: NoticeConfig = NoticeConfig()) -> FraudNotices:
        """Read the proof hashes our ledger already names (blocking: a worker thread).

        Raises:
            CorruptLedgerError: a stored entry does not decode.
        """
        handled = set()
        for entry in ledger.entries(kinds=(EntryKind.FRAUD_PROOF, EntryKind.ACCUSATION_REFUTED)):
            body = entry.record.body
            if isinstance(body, FraudProofEntry | AccusationRefuted):
                handled.add(body.proof_hash)
        return cls(host, ledger, store, check, config, handled)

    # ------------------------------------------------------------------------ public

    async def handle(self, record: Record, peer: str) -> NoticeOutcome:
        """Fetch, re-check and record one notice that ``peer`` handed us; the outcome."""
        claimed = self._claim(record)
        if isinstance(claimed, NoticeOutcome):
            return self._count(claimed, record, peer)
        return await self._settle_claimed(record, peer, claimed)

    async def submit(self, record: Record, peer: str) -> None:
        """Queue one notice for the workers (``serve``); never blocks (the gossip hook)."""
        claimed = self._claim(record)
        if isinstance(claimed, NoticeOutcome):
            self._count(claimed, record, peer)
            return
        try:
            self._queue_in.send_nowait((record, peer, claimed))
        except trio.WouldBlock:
            self._in_flight.discard(claimed)
            self._count(NoticeOutcome.OVERLOADED, record, peer)

    async def serve(self) -> None:
        """Run the workers that settle submitted notices, until cancelled."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.config.workers):
                nursery.start_soon(self._work)

    async def wait_until(self, predicate: Callable[[Mapping[str, int]], bool]) -> None:
        """Return once ``predicate(stats)`` holds (bound it with ``trio.fail_after``)."""
        while not predicate(self.stats):
            await self._changed.wait()

    # ------------------------------------------------------------------ the pipeline

    def _claim(self, record: Record) -> bytes | NoticeOutcome:
        """The notice's proof hash, now in flight; or why it is not handled."""
        try:
            record.check_signature()
            body = record.body
        except InvalidEntryError:
            return NoticeOutcome.INVALID
        if not isinstance(body, FraudProofEntry | AccusationRefuted):
            return NoticeOutcome.INVALID
        digest = body.proof_hash
        if (digest in self._handled or digest in self._in_flight or digest in self._rejected
                or self.store.contains(digest)):
            return NoticeOutcome.DUPLICATE
        self._in_flight.add(digest)
        return digest

    async def _work(self) -> None:
        async for record, peer, digest in self._queue_out:
            await self._settle_claimed(record, peer, digest)

    async def _settle_claimed(self, record: Record, peer: str, digest: bytes) -> NoticeOutcome:
        try:
            outcome = await self._settle(record, peer, digest)
        except Exception:
            logger.exception("fraud notice from %s about %s failed", peer, record.subject)
            outcome = NoticeOutcome.FAILED
        finally:
            self._in_flight.discard(digest)
        if outcome in (NoticeOutcome.WORTHLESS, NoticeOutcome.MISMATCHED):
            self._reject(digest)
        return self._count(outcome, record, peer)

    async def _settle(self, record: Record, peer: str, digest: bytes) -> NoticeOutcome:
        data = await self._fetch(record, peer, digest)
        if data is None:
            return NoticeOutcome.UNAVAILABLE
        try:
            proof = await trio.to_thread.run_sync(FraudProof.from_wire, data)
        except RemoteProtocolError as exc:
            logger.info("proof %s from %s is not a fraud proof: %s", digest.hex(), peer,
                        exc.reason)
            return NoticeOutcome.WORTHLESS
        if str(proof.challenge.node_id) != record.subject:
            logger.info("proof %s accuses %s, the notice from %s names %s", digest.hex(),
                        proof.challenge.node_id, peer, record.subject)
            return NoticeOutcome.MISMATCHED
        check = await trio.to_thread.run_sync(self._check, proof, limiter=self._checking)
        outcome = _outcome(check)
        logger.info("fraud notice from %s: proof %s against %s by %s: %s (%s)", peer,
                    digest.hex()[:16], record.subject, proof.verdict.body.verifier, outcome,
                    "cannot be re-run here" if check is None else check.reason)
        if outcome in _RECORDED:
            entry = await trio.to_thread.run_sync(self._record, data, proof, outcome)
            self._handled.add(digest)
            if outcome is NoticeOutcome.REFUTED:
                await publish_or_log(self.publish, entry.record)
        return outcome

    async def _fetch(self, record: Record, peer: str, digest: bytes) -> bytes | None:
        """The proof's bytes from ``peer``, else the record's signer; None if neither gives them."""
        for holder in dict.fromkeys((peer, str(record.signer))):
            if holder == self.host.peer_id:
                continue
            try:
                return await fetch_proof(self.host, holder, digest, self.config.fetch)
            except TransportError as exc:
                logger.info("proof %s from %s: %s", digest.hex()[:16], holder, exc)
        return None

    def _record(self, data: bytes, proof: FraudProof, outcome: NoticeOutcome) -> Entry:
        """Store the bytes, then append our entry (worker thread); the entry.

        Raises:
            OSError, LedgerError: the store or the ledger cannot be written.
        """
        digest = self.store.put(data)
        subject, accuser = str(proof.challenge.node_id), str(proof.verdict.body.verifier)
        if outcome is NoticeOutcome.REFUTED:
            return self.ledger.append(EntryKind.ACCUSATION_REFUTED, subject,
                                      AccusationRefuted(accuser, digest))
        status = (FraudStatus.CONFIRMED if outcome is NoticeOutcome.CONFIRMED
                  else FraudStatus.UNCONFIRMED)
        return self.ledger.append(EntryKind.FRAUD_PROOF, subject,
                                  FraudProofEntry(status, digest, accuser))

    def _reject(self, digest: bytes) -> None:
        self._rejected[digest] = None
        while len(self._rejected) > self.config.remembered:
            self._rejected.popitem(last=False)

    def _count(self, outcome: NoticeOutcome, record: Record, peer: str) -> NoticeOutcome:
        if outcome is NoticeOutcome.OVERLOADED:
            logger.warning("fraud notice queue full: dropped a notice from %s about %s", peer,
                           record.subject)
        elif outcome in (NoticeOutcome.INVALID, NoticeOutcome.DUPLICATE):
            logger.debug("fraud notice from %s about %s: %s", peer, record.subject, outcome)
        self.stats[str(outcome)] += 1
        self._changed.set()
        self._changed = trio.Event()
        return outcome


def _outcome(check: FraudCheck | None) -> NoticeOutcome:
    if check is None:
        return NoticeOutcome.UNCONFIRMED
    if check.confirmed:
        return NoticeOutcome.CONFIRMED
    return NoticeOutcome.REFUTED if check.false_accusation else NoticeOutcome.WORTHLESS


@asynccontextmanager
async def open_fraud_notices(host: Host, ledger: Ledger, store: ProofStore, check: ProofCheck,
                             config: NoticeConfig = NoticeConfig(),
                             ) -> AsyncIterator[FraudNotices]:
    """A ``FraudNotices`` whose workers run until the block exits (queued notices are lost).

    Raises:
        CorruptLedgerError: the ledger cannot be read.
    """
    notices = await trio.to_thread.run_sync(FraudNotices.open, host, ledger, store, check,
                                            config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notices.serve)
        try:
            yield notices
        finally:
            nursery.cancel_scope.cancel()
