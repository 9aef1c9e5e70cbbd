"""The gossip acceptance rules, without I/O: every rule has a message that breaks it."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from darwin.gossip.policy import (
    Accepted,
    Dropped,
    DropReason,
    GossipConfig,
    GossipPolicy,
    RateLimiter,
    TokenBucket,
)
from darwin.ledger import (
    AccusationRefuted,
    EntryKind,
    FraudProof,
    FraudStatus,
    Record,
    Success,
    Verdict,
)
from darwin.protocol import Identity

T0 = 1_700_000_000_000


def ident(label: str) -> Identity:
    return Identity.from_seed(hashlib.blake2b(label.encode(), digest_size=32).digest())


VERIFIER, SUBJECT, RELAY = ident("verifier"), ident("subject"), ident("relay")


def verdict(n: int = 0, signer: Identity = VERIFIER) -> Record:
    return Record.sign(signer, EntryKind.VERDICT, SUBJECT.peer_id,
                       Verdict("pass", {"step": n}), time_ms=T0 + n)  # type: ignore[arg-type]


def check(policy: GossipPolicy, data: bytes, *, now: float = 0.0,
          forwarder: str = RELAY.peer_id, origin: str = VERIFIER.peer_id,
          held: frozenset[bytes] = frozenset()) -> Accepted | Dropped:
    return policy.check(data, forwarder=forwarder, origin=origin, now=now,
                        known=lambda record: record.signature in held)


def reason(result: Accepted | Dropped) -> DropReason | None:
    return result.reason if isinstance(result, Dropped) else None


def test_a_valid_verdict_is_accepted_once() -> None:
    policy = GossipPolicy()
    record = verdict()
    result = check(policy, record.to_wire())
    assert isinstance(result, Accepted) and result.record == record and not result.is_notice
    assert reason(check(policy, record.to_wire())) is DropReason.DUPLICATE  # replay


def test_a_record_the_ledger_holds_is_a_duplicate() -> None:
    record = verdict()
    result = check(GossipPolicy(), record.to_wire(), held=frozenset({record.signature}))
    assert reason(result) is DropReason.DUPLICATE


def test_fraud_proofs_and_refutations_are_accepted_as_notices_unless_forged() -> None:
    policy = GossipPolicy()
    bodies = {EntryKind.FRAUD_PROOF: FraudProof(FraudStatus.CONFIRMED, b"\x07" * 32,
                                                VERIFIER.peer_id),
              EntryKind.ACCUSATION_REFUTED: AccusationRefuted(VERIFIER.peer_id, b"\x07" * 32)}
    for kind, body in bodies.items():
        record = Record.sign(RELAY, kind, SUBJECT.peer_id, body, time_ms=T0)
        forged = dataclasses.replace(record, time_ms=T0 + 1)
        assert reason(check(policy, forged.to_wire(), origin=RELAY.peer_id)) is \
            DropReason.FORGED, kind
        result = check(policy, record.to_wire(), origin=RELAY.peer_id)
        assert isinstance(result, Accepted) and result.is_notice, kind
        assert policy.check_outgoing(record) == record.to_wire()  # and may be published


def test_each_broken_rule_has_its_reason() -> None:
    policy = GossipPolicy()
    good = verdict()
    forged = dataclasses.replace(good, time_ms=good.time_ms + 1)  # signature no longer fits
    other_kind = Record.sign(VERIFIER, EntryKind.SUCCESS, SUBJECT.peer_id, Success(), time_ms=T0)
    big = b"\x00" * (policy.config.max_message_bytes + 1)
    assert reason(check(policy, big)) is DropReason.OVERSIZED
    assert reason(check(policy, b"\x93not a record")) is DropReason.MALFORMED
    assert reason(check(policy, b"")) is DropReason.MALFORMED
    assert reason(check(policy, other_kind.to_wire())) is DropReason.WRONG_KIND
    assert reason(check(policy, forged.to_wire())) is DropReason.FORGED
    assert isinstance(check(policy, good.to_wire()), Accepted)  # forgery did not poison it


def test_the_ledger_is_asked_only_after_the_cheap_checks() -> None:
    asked: list[Record] = []

    def known(record: Record) -> bool:
        asked.append(record)
        return False

    policy = GossipPolicy()
    for data in (b"\x00" * 10_000, b"junk"):
        policy.check(data, forwarder=RELAY.peer_id, origin=VERIFIER.peer_id, now=0.0,
                     known=known)
    assert asked == []


def test_an_origin_beyond_its_burst_is_rate_limited_until_it_refills() -> None:
    policy = GossipPolicy(GossipConfig(origin_rate=1.0, origin_burst=3))
    results = [reason(check(policy, verdict(n).to_wire(), now=0.0)) for n in range(5)]
    assert results == [None, None, None, DropReason.RATE_LIMITED, DropReason.RATE_LIMITED]
    assert reason(check(policy, verdict(5).to_wire(), now=1.0)) is None  # one token back
    assert reason(check(policy, verdict(6).to_wire(), now=1.0)) is DropReason.RATE_LIMITED
    # Another origin has its own bucket.
    other = verdict(7, signer=SUBJECT)
    assert reason(check(policy, other.to_wire(), now=1.0, origin=SUBJECT.peer_id)) is None


def test_garbage_spends_the_senders_tokens_too() -> None:
    policy = GossipPolicy(GossipConfig(origin_rate=1.0, origin_burst=2))
    assert reason(check(policy, b"junk")) is DropReason.MALFORMED
    assert reason(check(policy, b"junk")) is DropReason.MALFORMED
    assert reason(check(policy, verdict().to_wire())) is DropReason.RATE_LIMITED


def test_a_forwarder_relaying_many_origins_is_bounded_by_its_own_bucket() -> None:
    policy = GossipPolicy(GossipConfig(forwarder_rate=1.0, forwarder_burst=2))
    signers = [ident(f"sybil {i}") for i in range(3)]
    results = [reason(check(policy, verdict(i, s).to_wire(), origin=s.peer_id))
               for i, s in enumerate(signers)]
    assert results == [None, None, DropReason.RATE_LIMITED]


def test_outgoing_records_are_checked_and_then_count_as_seen() -> None:
    policy = GossipPolicy()
    record = verdict()
    assert policy.check_outgoing(record) == record.to_wire()
    assert reason(check(policy, record.to_wire())) is DropReason.DUPLICATE  # our echo
    with pytest.raises(ValueError):
        policy.check_outgoing(Record.sign(VERIFIER, EntryKind.SUCCESS, SUBJECT.peer_id,
                                          Success(), time_ms=T0))


def test_token_bucket_refills_to_its_burst_and_ignores_time_going_back() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, now=10.0)
    assert bucket.take(10.0) and bucket.take(10.0) and not bucket.take(10.0)
    assert bucket.take(10.5) and not bucket.take(10.5)  # 0.5 s at 2/s = one token
    assert not bucket.take(9.0)  # a clock going back refills nothing
    assert bucket.take(100.0) and bucket.take(100.0) and not bucket.take(100.0)  # capped


def test_rate_limiter_forgets_the_least_recent_key_beyond_its_size() -> None:
    limiter = RateLimiter(rate=1e-9, burst=1, max_keys=2)
    assert limiter.allow("a", 0.0) and limiter.allow("b", 0.0)
    assert not limiter.allow("a", 0.0)  # a used again: b is now the oldest
    assert limiter.allow("c", 0.0)  # evicts b
    assert not limiter.allow("a", 0.0) and limiter.allow("b", 0.0)  # b starts afresh


def test_recent_records_are_bounded() -> None:
    policy = GossipPolicy(GossipConfig(recent_records=2))
    records = [verdict(n) for n in range(3)]
    for record in records:
        assert isinstance(check(policy, record.to_wire()), Accepted)
    # The first was forgotten; only the ledger (``known``) would still refuse it.
    assert isinstance(check(policy, records[0].to_wire()), Accepted)
    assert reason(check(policy, records[2].to_wire())) is DropReason.DUPLICATE


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        GossipConfig(origin_rate=0)
    with pytest.raises(ValueError):
        GossipConfig(origin_burst=0)
