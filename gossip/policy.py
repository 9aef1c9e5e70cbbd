"""What a node accepts from verdict gossip: pure rules, no I/O, no clock of its own.

Rules of this module (normative text: ``specs/gossip.md`` §3):

- A gossiped message is one ledger record in its wire form (``Record.to_wire``). It is
  accepted only if, checked in this order (cheapest first, and rate limiting before any
  decoding, so a flood costs the flooder its tokens and us almost nothing):

  1. ``oversized``: it is at most ``max_message_bytes`` (no valid record is larger);
  2. ``rate_limited``: its forwarder, then its origin, has a token in its bucket;
  3. ``malformed``: ``Record.from_wire`` decodes it;
  4. ``wrong_kind``: its kind is a gossip kind (``verdict``, appended to the ledger;
     ``fraud_proof`` and ``accusation_refuted``, *notices* naming a proof for the node to
     re-check, never appended);
  5. ``duplicate``: it is not a record we already hold or accepted recently;
  6. ``forged``: its signer's signature verifies.

- The *forwarder* is the libp2p peer that handed us the message (Noise-authenticated); the
  *origin* is the peer that published it (pubsub's signed ``from``). Both are rate-limited
  with a token bucket per peer; the forwarder's is larger because one honest relay carries
  the verdicts of many origins.
- ``GossipPolicy`` holds state (buckets, the recently accepted records) but does no I/O:
  the time is an argument, and "do we already hold it" is a function the caller passes in
  (the ledger's ``contains``). The same object runs under the tests and in the node.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from darwin.ledger import EntryKind, InvalidEntryError, Record
from darwin.ledger.record import MAX_RECORD_WIRE_BYTES

__all__ = [
    "GOSSIP_KINDS",
    "NOTICE_KINDS",
    "Accepted",
    "DropReason",
    "Dropped",
    "GossipConfig",
    "GossipPolicy",
    "RateLimiter",
    "TokenBucket",
    "record_key",
]

# Kinds appended to the ledger when they pass (a verifier's verdict, signed by it).
APPENDED_KINDS = frozenset({EntryKind.VERDICT})
# Kinds passed to the node as notices: a peer's statement that it checked a fraud proof and
# found it held (fraud_proof) or did not (accusation_refuted). Our ledger only records either
# after *we* re-checked the proof (specs/ledger.md §4).
NOTICE_KINDS = frozenset({EntryKind.FRAUD_PROOF, EntryKind.ACCUSATION_REFUTED})
GOSSIP_KINDS = APPENDED_KINDS | NOTICE_KINDS


class DropReason(StrEnum):
    """Why a gossiped message was dropped; the value is the key in ``VerdictGossip.stats``."""

    OVERSIZED = "oversized"
    RATE_LIMITED = "rate_limited"
    MALFORMED = "malformed"
    WRONG_KIND = "wrong_kind"
    DUPLICATE = "duplicate"
    FORGED = "forged"


@dataclass(frozen=True)
class GossipConfig:
    """Limits of verdict gossip; one per node, passed whole (reasons in specs/gossip.md)."""

    # Largest message accepted, in bytes: the largest valid record's wire form, so anything
    # bigger is refused before it is parsed.
    max_message_bytes: int = MAX_RECORD_WIRE_BYTES
    # Messages per second one origin may publish, sustained. A verdict costs its verifier a
    # challenge round trip and a layer recomputation (tens of ms at least), and each verifier
    # publishes only its own, so 5/s is far above an honest verifier's pace.
    origin_rate: float = 5.0
    # Messages one origin may publish at once after being quiet (a verifier that batches).
    origin_burst: int = 50
    # Messages per second one forwarder may hand us, sustained: it relays many origins, but
    # only its first deliveries reach the validator (copies are dropped as already seen).
    forwarder_rate: float = 100.0
    # Messages one forwarder may hand us at once.
    forwarder_burst: int = 1000
    # Peers whose buckets we keep (least recently seen forgotten first); bounds memory
    # against a flood of fresh keys, which the forwarder bucket bounds in rate.
    max_tracked_peers: int = 4096
    # Records remembered as recently accepted (signer, signature): catches a replay while
    # its first copy waits to be appended, and repeated fraud notices (never in the ledger).
    recent_records: int = 16384
    # Accepted records waiting to be appended to the ledger; past it they are dropped as
    # "overloaded" (the ledger-sync catch-up recovers them).
    append_queue: int = 1024

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1 or self.origin_rate <= 0 or self.forwarder_rate <= 0:
            raise ValueError("max_message_bytes and the rates must be positive")
        if min(self.origin_burst, self.forwarder_burst, self.max_tracked_peers,
               self.recent_records, self.append_queue) < 1:
            raise ValueError("bursts, tracked peers, recent records and queue must be >= 1")


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; a message takes one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        """Take a token at time ``now`` (seconds, monotonic); False when there is none."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class RateLimiter:
    """A token bucket per key, for at most ``max_keys`` keys (least recently used evicted).

    A key seen again after eviction starts with a full bucket; eviction needs
    ``max_keys`` other keys in between, which the caller bounds with a coarser limiter.
    """

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Whether ``key`` may send one more message at ``now``."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)


def record_key(record: Record) -> tuple[str, bytes]:
    """What makes two records the same record: signer and signature (as the ledger does)."""
    return (record.signer, record.signature)


@dataclass(frozen=True)
class Accepted:
    """The message holds a valid record of a gossip kind that we did not have."""

    record: Record

    @property
    def is_notice(self) -> bool:
        """Whether it is a notice (it names a proof to re-check; never appended)."""
        return self.record.kind in NOTICE_KINDS


@dataclass(frozen=True)
class Dropped:
    """The message was refused; ``detail`` is for the debug log only."""

    reason: DropReason
    detail: str


class GossipPolicy:
    """The acceptance rules, with the state they need (buckets, recently accepted records)."""

    def __init__(self, config: GossipConfig = GossipConfig()) -> None:
        self.config = config
        self._forwarders = RateLimiter(config.forwarder_rate, config.forwarder_burst,
                                       config.max_tracked_peers)
        self._origins = RateLimiter(config.origin_rate, config.origin_burst,
                                    config.max_tracked_peers)
        self._recent: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    def check(self, data: bytes, *, forwarder: str, origin: str, now: float,
              known: Callable[[Record], bool]) -> Accepted | Dropped:
        """Decide on one received message (rules in the module docstring, in that order).

        Args:
            data: the message's payload.
            forwarder: the peer that handed it to us.
            origin: the peer that published it.
            now: monotonic seconds (the buckets' clock).
            known: whether we already hold a record (the ledger's ``contains``); called
                only for records that passed every cheaper check.

        An accepted record is remembered as recent, so a copy of it is a duplicate even
        before it reaches the ledger. Never raises on hostile input.
        """
        if len(data) > self.config.max_message_bytes:
            return Dropped(DropReason.OVERSIZED, f"{len(data)} bytes")
        if not self._forwarders.allow(forwarder, now):
            return Dropped(DropReason.RATE_LIMITED, f"forwarder {forwarder} over its rate")
        if not self._origins.allow(origin, now):
            return Dropped(DropReason.RATE_LIMITED, f"origin {origin} over its rate")
        try:
            record = Record.from_wire(data)
        except InvalidEntryError as exc:
            return Dropped(DropReason.MALFORMED, exc.reason)
        if record.kind not in GOSSIP_KINDS:
            return Dropped(DropReason.WRONG_KIND, str(record.kind))
        key = record_key(record)
        if key in self._recent or known(record):
            return Dropped(DropReason.DUPLICATE, f"record by {record.signer}")
        try:
            record.check_signature()
        except InvalidEntryError as exc:
            return Dropped(DropReason.FORGED, f"record claims {record.signer}: {exc.reason}")
        self.remember(record)
        return Accepted(record)

    def check_outgoing(self, record: Record) -> bytes:
        """The wire form of a record we are about to publish.

        Raises:
            ValueError: it is not a gossip kind or its wire form is over the size limit.
            InvalidEntryError: its signature does not verify.
        """
        if record.kind not in GOSSIP_KINDS:
            raise ValueError(f"{record.kind} records are not gossiped")
        data = record.to_wire()
        if len(data) > self.config.max_message_bytes:
            raise ValueError(f"record is {len(data)} bytes, over the gossip limit")
        record.check_signature()
        self.remember(record)
        return data

    def remember(self, record: Record) -> None:
        """Count ``record`` as recently accepted (a later copy is a duplicate)."""
        key = record_key(record)
        self._recent[key] = None
        self._recent.move_to_end(key)
        if len(self._recent) > self.config.recent_records:
            self._recent.popitem(last=False)
