"""``/darwin/ledger-sync/1``: catch up on the verdicts a node missed while it was offline.

Rules of this module (normative text: ``specs/gossip.md`` §5):

- One request per stream: the asker sends a ``SyncRequest`` frame ("your gossip records
  after your seq ``since``, at most ``max``"), the responder answers with one ``SyncPage``
  frame (or an ``ErrorFrame``) and closes. ``since`` is a position in the *responder's*
  ledger; the page's ``next`` is where the asker resumes, so non-gossip entries are skipped.
- Only gossip kinds are served (verdicts, and fraud_proof and accusation_refuted entries as
  notices). The asker checks every record as gossip would: verdicts go through
  ``Ledger.append_signed`` (signature, duplicate), fraud-proof notices go to the caller's hook
  after their signature checked, never into the ledger.
- The responder rate-limits requests per peer (``BUSY`` past it) and reads its ledger in a
  worker thread. A page that breaks the protocol (more records than asked, ``next`` going
  backwards, undecodable) raises ``LedgerSyncError``; a bad *record* in a good page is
  counted and skipped.
- ``catch_up_with`` catches up from several peers, each from its cursor
  (``darwin.gossip.sync_cursors``), which moves only when that peer's catch-up completes.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import trio

from darwin.gossip.fetch import fetch
from darwin.gossip.policy import GOSSIP_KINDS, NOTICE_KINDS, DropReason, RateLimiter
from darwin.gossip.sync_cursors import SyncCursors
from darwin.ledger import DuplicateEntryError, InvalidEntryError, Ledger, Record
from darwin.ledger.record import MAX_RECORD_WIRE_BYTES
from darwin.net.framing import FrameConfig, FramedStream, TransportError
from darwin.net.host import Host, Stream, stream_peer_id
from darwin.net.protocols import LEDGER_SYNC_PROTOCOL
from darwin.protocol import ErrorCode, ErrorFrame, RemoteProtocolError
from darwin.protocol.schema import MapReader
from darwin.protocol.wire import PROTOCOL_VERSION, WireLimits, pack, unpack

__all__ = [
    "LedgerSyncError",
    "LedgerSyncHandler",
    "SyncConfig",
    "SyncPage",
    "SyncRequest",
    "SyncResult",
    "catch_up",
    "catch_up_with",
    "fetch_page",
]

logger = logging.getLogger(__name__)

MAX_PAGE = 256
_REQUEST_LIMIT = 256  # bytes: a request is a small map
_PAGE_LIMIT = MAX_PAGE * (MAX_RECORD_WIRE_BYTES + 8) + 1024
_PAGE_WIRE = WireLimits(max_message_bytes=_PAGE_LIMIT, max_array_len=MAX_PAGE,
                        max_objects=MAX_PAGE + 64)
_I64_MAX = 2**63 - 1


class LedgerSyncError(TransportError):
    """The responder broke the sync protocol or refused the request."""


@dataclass(frozen=True)
class SyncConfig:
    """Both sides of ledger sync."""

    # Records asked for per page (the responder serves at most MAX_PAGE).
    page_size: int = MAX_PAGE
    # Pages one catch_up fetches at most (bounds one call to page_size * max_pages records).
    max_pages: int = 64
    # Seconds for one request/response exchange, dial included.
    timeout: float = 10.0
    # Requests per second one peer may make of us, sustained, and at once.
    serve_rate: float = 1.0
    serve_burst: int = 10
    # Peers whose request buckets we keep.
    max_tracked_peers: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_PAGE or self.max_pages < 1:
            raise ValueError(f"page_size must be in [1, {MAX_PAGE}] and max_pages >= 1")
        if self.timeout <= 0 or self.serve_rate <= 0 or self.serve_burst < 1:
            raise ValueError("timeout, serve_rate and serve_burst must be positive")


# ------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class SyncRequest:
    """Asker -> responder: gossip records after seq ``since``, at most ``max``."""

    KIND: ClassVar[str] = "ledger_sync_request"
    since: int
    max: int

    def __post_init__(self) -> None:
        if not (isinstance(self.since, int) and 0 <= self.since <= _I64_MAX):
            raise ValueError("since must be an int in [0, 2**63)")
        if not (isinstance(self.max, int) and 1 <= self.max <= MAX_PAGE):
            raise ValueError(f"max must be an int in [1, {MAX_PAGE}]")

    def to_wire(self) -> bytes:
        return pack({"v": PROTOCOL_VERSION, "kind": self.KIND, "since": self.since,
                     "max": self.max})

    @classmethod
    def from_wire(cls, data: bytes) -> SyncRequest:
        """Raises RemoteProtocolError: malformed, or out of range."""
        reader = _reader(unpack(data, WireLimits(max_message_bytes=_REQUEST_LIMIT)),
                         cls.KIND, ("since", "max"))
        try:
            return cls(reader.integer("since"), reader.integer("max"))
        except ValueError as exc:
            raise RemoteProtocolError(f"{cls.KIND}: {exc}") from None


@dataclass(frozen=True)
class SyncPage:
    """Responder -> asker: records in seq order; resume after ``next``; ``more`` if cut."""

    KIND: ClassVar[str] = "ledger_sync_page"
    records: tuple[bytes, ...]  # Record.to_wire() each
    next: int
    more: bool

    def to_wire(self) -> bytes:
        return pack({"v": PROTOCOL_VERSION, "kind": self.KIND, "records": list(self.records),
                     "next": self.next, "more": self.more})

    @classmethod
    def from_wire(cls, data: bytes) -> SyncPage | ErrorFrame:
        """Decode a page, or the error frame the responder sent instead.

        Raises:
            RemoteProtocolError: anything else.
        """
        obj = unpack(data, _PAGE_WIRE)
        if isinstance(obj, dict) and obj.get("kind") == ErrorFrame.KIND:
            return ErrorFrame.from_obj(obj, _PAGE_WIRE)
        reader = _reader(obj, cls.KIND, ("records", "next", "more"))
        more = reader.value("more")
        if not isinstance(more, bool):
            raise RemoteProtocolError(f"{cls.KIND}.more: expected a bool")
        next_seq = reader.integer("next")
        if not 0 <= next_seq <= _I64_MAX:
            raise RemoteProtocolError(f"{cls.KIND}.next out of range")
        return cls(tuple(reader.array_of("records", bytes, "bytes")), next_seq, more)


def _reader(obj: object, kind: str, fields: tuple[str, ...]) -> MapReader:
    reader = MapReader(obj, ("v", "kind", *fields), kind)
    if reader.integer("v") != PROTOCOL_VERSION or reader.text("kind") != kind:
        raise RemoteProtocolError(f"{kind}: wrong version or kind")
    return reader


# ----------------------------------------------------------------------- responder


class LedgerSyncHandler:
    """Serves ``/darwin/ledger-sync/1`` from a ledger: ``host.set_stream_handler(
    LEDGER_SYNC_PROTOCOL, LedgerSyncHandler(ledger))``."""

    def __init__(self, ledger: Ledger, config: SyncConfig = SyncConfig()) -> None:
        self.ledger = ledger
        self.config = config
        self._limiter = RateLimiter(config.serve_rate, config.serve_burst,
                                    config.max_tracked_peers)
        self._frames = FrameConfig.bounded(_PAGE_LIMIT, config.timeout)

    def page(self, since: int, limit: int) -> SyncPage:
        """Our gossip records after ``since``, at most ``limit`` (reads the ledger: blocking)."""
        head = self.ledger.head().seq  # before the read: what it returns is at least this
        entries = list(itertools.islice(self.ledger.entries(since, kinds=GOSSIP_KINDS),
                                        limit + 1))
        more = len(entries) > limit
        entries = entries[:limit]
        last = entries[-1].seq if entries else since
        next_seq = last if more else max(last, head, since)
        return SyncPage(tuple(e.record.to_wire() for e in entries), next_seq, more)

    async def __call__(self, stream: Stream) -> None:
        """Answer one request (raises TransportError when the peer breaks the stream)."""
        peer = stream_peer_id(stream)
        framed = FramedStream(stream, self._frames)
        try:
            request = SyncRequest.from_wire(await framed.read())
        except RemoteProtocolError as exc:
            logger.info("ledger-sync request from %s refused: %s", peer, exc.reason)
            await framed.write(ErrorFrame(ErrorCode.BAD_REQUEST, exc.reason[:200]).to_wire())
            return
        if not self._limiter.allow(peer, trio.current_time()):
            logger.debug("ledger-sync request from %s refused: over its rate", peer)
            await framed.write(ErrorFrame(ErrorCode.BUSY, "too many sync requests").to_wire())
            return
        page = await trio.to_thread.run_sync(self.page, request.since, request.max)
        logger.debug("ledger-sync to %s: %d records after %d", peer, len(page.records),
                     request.since)
        await framed.write(page.to_wire())


# --------------------------------------------------------------------------- asker


async def fetch_page(host: Host, peer_id: str, since: int, config: SyncConfig = SyncConfig(),
                     ) -> SyncPage:
    """Ask ``peer_id`` for one page of its gossip records after its seq ``since``.

    Raises:
        LedgerSyncError: the peer refused, or its answer breaks the protocol.
        TransportError: the peer could not be reached or the stream failed.
    """
    asked = SyncRequest(since, config.page_size)
    answer: SyncPage = await fetch(
        host, peer_id, LEDGER_SYNC_PROTOCOL, asked.to_wire(), SyncPage.from_wire,
        what="ledger sync", error=LedgerSyncError, max_request=_REQUEST_LIMIT,
        max_answer=_PAGE_LIMIT, timeout=config.timeout)
    if len(answer.records) > asked.max or answer.next < since:
        raise LedgerSyncError(f"{peer_id} sent a page that breaks the protocol")
    return answer


@dataclass
class SyncResult:
    """What one ``catch_up`` did; ``next`` is where to resume with the same peer."""

    next: int
    appended: int = 0
    notices: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # DropReason value -> count


async def catch_up(
    host: Host,
    peer_id: str,
    ledger: Ledger,
    since: int = 0,
    config: SyncConfig = SyncConfig(),
    *,
    on_fraud_notice: Callable[[Record, str], Awaitable[object]] | None = None,
) -> SyncResult:
    """Fetch the gossip records ``peer_id`` holds after its seq ``since`` and take them in.

    Verdicts are appended with ``append_signed`` (which checks each signature first);
    fraud-proof notices with a valid signature go to ``on_fraud_notice(record, peer_id)``.
    Pages are fetched until the peer has no more or ``config.max_pages`` were read; keep
    ``result.next`` per peer to resume there next time.

    Raises:
        LedgerSyncError, TransportError: as ``fetch_page`` (records already appended stay).
    """
    result = SyncResult(next=since)
    for _ in range(config.max_pages):
        page = await fetch_page(host, peer_id, result.next, config)
        records = await trio.to_thread.run_sync(_take_page, ledger, page, result)
        for record in records:
            if on_fraud_notice is not None:
                await on_fraud_notice(record, peer_id)
            result.notices += 1
        result.next = page.next
        if not page.more:
            break
    logger.debug("caught up with %s: %s", peer_id, result)
    return result


async def catch_up_with(
    host: Host,
    peers: Sequence[str],
    ledger: Ledger,
    cursors: SyncCursors,
    config: SyncConfig = SyncConfig(),
    *,
    on_fraud_notice: Callable[[Record, str], Awaitable[object]] | None = None,
) -> int:
    """``catch_up`` from each of ``peers`` in turn, each from its cursor; verdicts appended.

    A peer that fails (unreachable, refusing, breaking the protocol) is logged and skipped;
    its cursor moves only when its catch-up completes.
    """
    appended = 0
    for peer in peers:
        try:
            result = await catch_up(host, peer, ledger, cursors.get(peer), config,
                                    on_fraud_notice=on_fraud_notice)
        except Exception as exc:
            logger.info("catch-up from %s failed: %s", peer, exc)
            continue
        await trio.to_thread.run_sync(cursors.set, peer, result.next)
        appended += result.appended
        logger.info("caught up from %s: %d verdicts, %d fraud-proof notices", peer,
                    result.appended, result.notices)
    return appended


def _take_page(ledger: Ledger, page: SyncPage, result: SyncResult) -> list[Record]:
    """In a worker thread: append the page's verdicts, count drops; return its notices."""
    notices: list[Record] = []
    for data in page.records:
        reason = _take_record(ledger, data, notices)
        if reason is None:
            result.appended += 1
        elif reason != _NOTICE:
            result.dropped[reason] = result.dropped.get(reason, 0) + 1
    return notices


_NOTICE = "notice"


def _take_record(ledger: Ledger, data: bytes, notices: list[Record]) -> str | None:
    """Append one synced verdict (None) or say why not (a DropReason value, or _NOTICE)."""
    try:
        record = Record.from_wire(data)
    except InvalidEntryError:
        return str(DropReason.MALFORMED)
    if record.kind not in GOSSIP_KINDS:
        return str(DropReason.WRONG_KIND)
    if record.signer == ledger.owner or ledger.contains(record):
        return str(DropReason.DUPLICATE)
    try:
        record.check_signature()
    except InvalidEntryError:
        return str(DropReason.FORGED)
    if record.kind in NOTICE_KINDS:
        notices.append(record)
        return _NOTICE
    try:
        ledger.append_signed(record)
    except DuplicateEntryError:
        return str(DropReason.DUPLICATE)
    return None
