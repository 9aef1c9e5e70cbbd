"""Verdict gossip: signed ledger records over a GossipSub topic per model.

Rules of this module (normative text: ``specs/gossip.md``):

- The topic of model *M* is ``darwin/verdicts/1/<M as lowercase hex>``
  (:func:`verdict_topic`); a message is one ``Record.to_wire()``.
- Every received message passes :class:`~darwin.gossip.policy.GossipPolicy` inside the
  topic's pubsub validator, so a message we refuse is neither appended, nor delivered, nor
  forwarded to our mesh. Each drop is counted in ``stats`` under its reason and logged at
  debug with the forwarder and the origin.
- An accepted verdict is appended with ``Ledger.append_signed`` (which checks the signature
  again and refuses duplicates) in a worker thread, in arrival order. An accepted fraud-proof
  notice (a peer's ``fraud_proof`` or ``accusation_refuted`` record) is never appended: it
  goes to the ``on_fraud_notice`` hook, whose owner re-checks the proof it names and records
  the outcome as its own entry.
- Our own messages are checked before they are sent (``publish`` raises on a record we would
  refuse) and are not rate-limited.
- Waiting is event-driven: ``wait_until`` wakes on every change of ``stats``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import trio

from darwin.gossip.policy import Accepted, DropReason, GossipConfig, GossipPolicy
from darwin.ledger import (
    DuplicateEntryError,
    Entry,
    EntryKind,
    InvalidEntryError,
    Ledger,
    Record,
    Verdict,
)
from darwin.net.host import Host
from darwin.net.pubsub import HostPubsub, Subscription

__all__ = [
    "VERDICT_TOPIC_PREFIX",
    "FraudNoticeHook",
    "Publish",
    "VerdictGossip",
    "open_verdict_gossip",
    "publish_or_log",
    "verdict_topic",
]

logger = logging.getLogger(__name__)

VERDICT_TOPIC_PREFIX = "darwin/verdicts/1/"
_NOTICE_QUEUE = 64

# Called with a fraud-proof notice (a peer's signed fraud_proof or accusation_refuted record)
# and the peer that published it; the callee re-checks the proof before recording anything.
FraudNoticeHook = Callable[[Record, str], Awaitable[None]]
# Broadcasts one of our records (``VerdictGossip.publish``).
Publish = Callable[[Record], Awaitable[None]]

# Counters of ``VerdictGossip.stats``, beside one per DropReason.
ACCEPTED = "accepted"  # passed every check (verdicts and notices)
APPENDED = "appended"  # verdicts written to the ledger
NOTICES = "notices"  # fraud-proof notices handed to the hook
OVERLOADED = "overloaded"  # accepted, but the append or notice queue was full
STAT_KEYS = (ACCEPTED, APPENDED, NOTICES, OVERLOADED, *(str(r) for r in DropReason))


async def publish_or_log(publish: Publish | None, record: Record) -> None:
    """Broadcast one of our records when we gossip (``publish`` set).

    A failure is logged, never raised: the record is in our ledger already, and catch-up
    serves it to whoever missed the message.
    """
    if publish is None:
        return
    try:
        await publish(record)
    except Exception as exc:
        logger.warning("could not publish our %s about %s: %s", record.kind, record.subject,
                       exc)


def verdict_topic(model_id: bytes) -> str:
    """The gossip topic of a model: ``darwin/verdicts/1/<model id hex>``."""
    if not isinstance(model_id, bytes) or not model_id:
        raise ValueError("model_id must be non-empty bytes")
    return VERDICT_TOPIC_PREFIX + model_id.hex()


class VerdictGossip:
    """Verdict gossip for one model; obtain one with :func:`open_verdict_gossip`.

    Attributes:
        topic: the model's gossip topic.
        stats: counters by name (``STAT_KEYS``): accepted, appended, notices, overloaded, and
            one per drop reason (forged, oversized, malformed, duplicate, rate_limited,
            wrong_kind). Read-only for callers.
    """

    def __init__(self, pubsub: HostPubsub, ledger: Ledger, topic: str, config: GossipConfig,
                 on_fraud_notice: FraudNoticeHook | None) -> None:
        self._pubsub = pubsub
        self.ledger = ledger
        self.topic = topic
        self.policy = GossipPolicy(config)
        self._on_fraud_notice = on_fraud_notice
        self._me = pubsub.peer_id
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._changed = trio.Event()
        self._appends_in, self._appends_out = trio.open_memory_channel[tuple[Record, str]](
            config.append_queue)
        self._notices_in, self._notices_out = trio.open_memory_channel[tuple[Record, str]](
            _NOTICE_QUEUE)

    # ------------------------------------------------------------------------ public

    async def publish(self, record: Record) -> None:
        """Broadcast a signed record (a verdict, or a fraud-proof notice) on the topic.

        It need not be ours: a node may pass on a verdict it holds. Our own verdicts are
        appended first (``publish_own_verdict``).

        Raises:
            ValueError: the record is not a gossip kind or is over the size limit.
            InvalidEntryError: its signature does not verify.
        """
        data = self.policy.check_outgoing(record)
        await self._pubsub.publish(self.topic, data)
        logger.debug("published %s by %s about %s on %s", record.kind, record.signer,
                     record.subject, self.topic)

    async def publish_own_verdict(self, subject: str, verdict: Verdict) -> Entry:
        """Append our verdict about ``subject`` to the ledger, then broadcast its record.

        Raises:
            InvalidEntryError: the subject or verdict is invalid (nothing appended or sent).
        """
        entry = await trio.to_thread.run_sync(self.ledger.append, EntryKind.VERDICT, subject,
                                              verdict)
        await self.publish(entry.record)
        return entry

    async def wait_until(self, predicate: Callable[[Mapping[str, int]], bool]) -> None:
        """Return once ``predicate(stats)`` holds; it is re-checked on every change.

        Bound it with ``trio.fail_after`` (it waits forever otherwise).
        """
        while not predicate(self.stats):
            await self._changed.wait()

    # ------------------------------------------------------------------ the pipeline

    def validate(self, forwarder: str, origin: str, data: bytes) -> bool:
        """The topic's pubsub validator: accept, queue and count, or drop and count."""
        if forwarder == self._me:
            return True  # our own publish, checked by check_outgoing
        verdict = self.policy.check(data, forwarder=forwarder, origin=origin,
                                    now=trio.current_time(), known=self._known)
        if not isinstance(verdict, Accepted):
            logger.debug("dropped gossip on %s from %s (origin %s): %s, %s", self.topic,
                         forwarder, origin, verdict.reason, verdict.detail)
            self._count(str(verdict.reason))
            return False
        queue = self._notices_in if verdict.is_notice else self._appends_in
        try:
            queue.send_nowait((verdict.record, origin))
        except trio.WouldBlock:
            logger.warning("gossip queue full on %s: dropped a %s from %s", self.topic,
                           verdict.record.kind, origin)
            self._count(OVERLOADED)
            return True  # valid: still forward it; catch-up recovers it here
        self._count(ACCEPTED)
        return True

    def _known(self, record: Record) -> bool:
        """Whether the ledger holds ``record`` (our own records are held by definition)."""
        return record.signer == self.ledger.owner or self.ledger.contains(record)

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] += n
        self._changed.set()
        self._changed = trio.Event()

    async def _append_forever(self) -> None:
        """Append accepted verdicts in arrival order, a batch per worker-thread trip."""
        async for first in self._appends_out:
            batch = [first]
            while True:
                try:
                    batch.append(self._appends_out.receive_nowait())
                except trio.WouldBlock:
                    break
            outcomes = await trio.to_thread.run_sync(self._append_batch, batch)
            for outcome in outcomes:
                self._count(outcome)

    def _append_batch(self, batch: list[tuple[Record, str]]) -> list[str]:
        """In a worker thread: append each record; the stat each outcome counts under."""
        outcomes = []
        for record, origin in batch:
            try:
                self.ledger.append_signed(record)
                outcomes.append(APPENDED)
            except DuplicateEntryError:
                outcomes.append(str(DropReason.DUPLICATE))
            except InvalidEntryError as exc:  # the policy checked it: a bug if it happens
                logger.warning("ledger refused a gossiped record from %s: %s", origin,
                               exc.reason)
                outcomes.append(str(DropReason.FORGED))
        return outcomes

    async def _notify_forever(self) -> None:
        """Hand fraud-proof notices to the hook, one at a time; a failing hook is logged."""
        async for record, origin in self._notices_out:
            if self._on_fraud_notice is not None:
                try:
                    await self._on_fraud_notice(record, origin)
                except Exception:
                    logger.exception("fraud notice hook failed on a notice from %s", origin)
            self._count(NOTICES)

    async def _drain(self, subscription: Subscription) -> None:
        """Empty the subscription: what it delivers was already queued by ``validate``."""
        async for _ in subscription:
            pass


@asynccontextmanager
async def open_verdict_gossip(
    host: Host,
    ledger: Ledger,
    model_id: bytes,
    config: GossipConfig | None = None,
    *,
    on_fraud_notice: FraudNoticeHook | None = None,
) -> AsyncIterator[VerdictGossip]:
    """Join the verdict topic of ``model_id`` and serve it until the block exits.

    Args:
        host: a host opened with ``HostConfig.pubsub`` set.
        ledger: where accepted verdicts are appended (normally owned by the host's key).
        model_id: the model whose verdicts travel on the topic.
        config: the acceptance limits (``GossipConfig()`` when None).
        on_fraud_notice: receives fraud-proof notices to re-check; None ignores them (they
            are still validated and forwarded).

    Records accepted but not yet appended when the block exits are lost; ledger sync
    (``darwin.gossip.ledger_sync``) recovers them from peers.

    Raises:
        RuntimeError: the host runs no pubsub.
        ValueError: this host already serves the topic.
    """
    pubsub = host.pubsub
    gossip = VerdictGossip(pubsub, ledger, verdict_topic(model_id), config or GossipConfig(),
                           on_fraud_notice)
    pubsub.set_validator(gossip.topic, gossip.validate)
    try:
        async with pubsub.subscribe(gossip.topic) as subscription, \
                trio.open_nursery() as nursery:
            nursery.start_soon(gossip._drain, subscription)
            nursery.start_soon(gossip._append_forever)
            nursery.start_soon(gossip._notify_forever)
            logger.info("gossiping verdicts on %s", gossip.topic)
            try:
                yield gossip
            finally:
                nursery.cancel_scope.cancel()
    finally:
        pubsub.remove_validator(gossip.topic)
