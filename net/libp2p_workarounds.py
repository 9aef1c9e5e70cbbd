"""Workarounds for defects of py-libp2p 0.8.1, each in one function with its reason.

Rules of this module:

- One function per defect; its docstring says what py-libp2p does, why it hurts
  Darwin, and what we do instead. ``tests/node/test_libp2p_workarounds.py`` has a
  test per function that shows the original behaviour next to the fixed one, so
  an upgrade of py-libp2p tells us which workarounds can go.
- Process-wide fixes are installed by :func:`apply_process_fixes` (idempotent,
  called by ``open_host``); the others are called where they are needed.
- Nothing here is Darwin-specific policy except ``PROVIDER_RECORD_TTL``.
- Known defects we could not work around here are listed in
  ``specs/transport.md`` ("py-libp2p 0.8.1 defects").
"""

from __future__ import annotations

import logging
import os
from contextlib import suppress

import trio
from libp2p.abc import IHost, INetConn
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.io.trio import TrioTCPStream
from libp2p.kad_dht import KadDHT
from libp2p.kad_dht import provider_store as _kad_provider_store
from libp2p.network.config import ConnectionConfig
from libp2p.network.connection import swarm_connection as _swarm_connection
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH as NOISE_MAX_PLAINTEXT
from libp2p.stream_muxer.yamux import yamux as _yamux
from libp2p.stream_muxer.yamux.yamux import YamuxStream

__all__ = [
    "PROVIDER_RECORD_TTL",
    "apply_process_fixes",
    "close_network",
    "connection_config",
    "guard_pubsub_push",
    "query_providers",
    "stop_seen_cache_thread",
]

logger = logging.getLogger(__name__)

# How long nodes keep a provider record they store (see shorten_provider_ttl).
PROVIDER_RECORD_TTL = 30 * 60.0
# The methods we replace, as py-libp2p ships them (the tests show their behaviour).
ORIGINAL_TCP_READ = TrioTCPStream.read
ORIGINAL_WINDOW_UPDATE = YamuxStream._auto_tune_and_send_window_update


def apply_process_fixes() -> None:
    """Install every process-wide fix below; safe to call any number of times."""
    batch_yamux_window_updates()
    buffer_tcp_reads()
    fit_yamux_frames_in_noise()
    shorten_provider_ttl()
    tame_libp2p_logging()
    quiet_dht_eof_warning()


def connection_config() -> ConnectionConfig:
    """Workaround: every dial waits 250 ms after it has already succeeded.

    ``Swarm.dial_peer`` (Happy Eyeballs) starts a dial per address and then sleeps
    ``_HAPPY_EYEBALLS_DELAY`` (250 ms) unless ``max_connections_per_peer``
    connections are up — with the default of 3 it always sleeps, so every
    ``connect`` costs >= 250 ms. With a cap of 1 the first connection cancels
    the wait (dial on loopback: ~250 ms -> ~10 ms). One connection per peer is
    what Darwin wants anyway: yamux multiplexes every stream over it.
    """
    return ConnectionConfig(max_connections_per_peer=1)


async def batched_window_update(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """go-yamux's receive-window rule: one 16 MiB window, credit returned in halves."""
    async with self.window_lock:
        self.target_recv_window = _yamux.MAX_WINDOW_SIZE
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        consumed = self.target_recv_window - (self.recv_window + buffered)
        if consumed < self.target_recv_window // 2:
            return
        self.recv_window += consumed
    await self.send_window_update(consumed, skip_lock=True)


def batch_yamux_window_updates() -> None:
    """Workaround: yamux answers every read with a WINDOW_UPDATE frame, and stalls.

    ``YamuxStream._auto_tune_and_send_window_update`` runs after each read and,
    through its "partial slack" and ``PY_YAMUX_RELEASE_ON_READ`` (default on)
    branches, sends credit for whatever was read, so every 4 KiB frame costs a
    second Noise message, syscall and wake-up on each side (two with the
    default, because a frame is read as header then body). Meanwhile its window
    starts at 256 KiB and only grows after fast successive updates, and a writer
    that finds its window empty polls it every 10 ms (``YamuxStream.write``), so
    bulk transfers stall. We do what go-yamux does with its maximum window:
    grant the whole 16 MiB (``MAX_WINDOW_SIZE``) on the first read of a stream
    and then return credit only once half of it has been consumed. A reader
    that drains its stream can never stall its writer: when the writer's window
    is empty the reader, having consumed all of it, sends an update. (yamux does
    not enforce windows on receipt anyway; see the limitation test.)
    """
    YamuxStream._auto_tune_and_send_window_update = batched_window_update  # type: ignore[method-assign]


_TCP_READ_CHUNK = 256 * 1024


async def buffered_tcp_read(self: TrioTCPStream, n: int | None = None) -> bytes:
    """``TrioTCPStream.read`` that fetches up to 256 KiB per syscall and keeps the rest."""
    if n == 0:
        return b""
    async with self.read_lock:
        pending: bytearray | None = getattr(self, "_darwin_pending", None)
        if pending:
            take = len(pending) if n is None else min(n, len(pending))
            data = bytes(pending[:take])
            del pending[:take]
            return data
        try:
            data = await self.stream.receive_some(max(n or 0, _TCP_READ_CHUNK))
        except trio.BrokenResourceError as error:
            raise ConnectionClosedError(f"TCP reset: {error}", transport="tcp") from error
        except trio.ClosedResourceError:
            return b""  # closed locally: EOF, as the original does
        if n is not None and len(data) > n:
            self._darwin_pending = bytearray(data[n:])  # type: ignore[attr-defined]
            data = data[:n]
        return data


def buffer_tcp_reads() -> None:
    """Workaround: one ``recv`` syscall (and often an epoll wait) per tiny read.

    ``TrioTCPStream.read(n)`` is a bare ``receive_some(n)``, and Noise reads each
    message as ``read(2)`` (its length) then ``read(len)``; yamux then reads its
    12-byte header and body out of that. So every 64 KiB of payload costs four or
    more syscalls, each a scheduler round trip, and the receiving process, not
    the wire or the cipher, bounds throughput. We read up to 256 KiB at a time
    and serve small reads from the surplus (bounded, per connection, under the
    stream's own read lock). Of our fixes this one did most for bulk transfers
    (in A/B runs of ``bench/transport.py``, 16 MiB between two processes went
    from ~280 to ~100-150 ms).
    """
    TrioTCPStream.read = buffered_tcp_read  # type: ignore[method-assign]


def fit_yamux_frames_in_noise() -> None:
    """Workaround: every full yamux frame is split into two Noise messages.

    yamux writes DATA frames of up to 64 KiB including its 12-byte header
    (``MAX_MESSAGE_SIZE``), but a Noise transport message carries at most 65519
    plaintext bytes, so each full frame goes out as a 65519-byte message plus a
    17-byte one: twice the encryptions, writes and reads. Capping yamux frames at
    65519 bytes (a module constant read at call time; peers accept any size up
    to their window) makes each frame exactly one Noise message.
    """
    _yamux.MAX_MESSAGE_SIZE = NOISE_MAX_PLAINTEXT


def shorten_provider_ttl() -> None:
    """Workaround: provider records live 48 h and a key holds at most 20 of them.

    ``PROVIDER_RECORD_EXPIRATION_INTERVAL`` (48 h, a module constant read at call
    time) means a node that died keeps being returned as a provider for two days,
    and while its record lives it takes one of the 20 slots per key (k = 20).
    Darwin nodes re-announce every ``reprovide_interval``, so every Darwin process
    expires records after ``PROVIDER_RECORD_TTL`` instead; it is process-wide,
    which is right because the expiry is applied by the nodes *storing* records.
    """
    _kad_provider_store.PROVIDER_RECORD_EXPIRATION_INTERVAL = int(PROVIDER_RECORD_TTL)


def tame_libp2p_logging() -> None:
    """Workaround: py-libp2p takes over logging instead of leaving it to the application.

    Three things, all undone here so that the CLI's logging config decides:
    ``import libp2p`` (without ``LIBP2P_DEBUG``) detaches the ``libp2p`` logger
    (``propagate = False``, no handler: warnings reach stderr through the
    last-resort handler); ``network/auto_connector.py`` pins its logger at INFO,
    so it would chatter once propagating; and ``swarm_connection.py`` logs through
    the *root* logger (``logging.debug(...)``), which calls ``basicConfig()`` and
    installs a stderr handler on the application's root logger the first time a
    connection closes. The latter gets a named logger instead.
    """
    if os.environ.get("LIBP2P_DEBUG"):
        return  # the user asked for libp2p's own debug logging; leave it alone
    logging.getLogger("libp2p").propagate = True
    logging.getLogger("libp2p.network.auto_connector").setLevel(logging.NOTSET)
    _swarm_connection.logging = logging.getLogger(_swarm_connection.__name__)  # type: ignore[assignment,attr-defined]


_DHT_EOF_WARNING = "Failed to read DHT message from stream: %s"


class _DropDhtEofWarning(logging.Filter):
    """Drops the kad handler's warning for a peer that simply closed its stream."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        clean_eof = isinstance(args, tuple) and bool(args) and isinstance(args[0], EOFError)
        return not (record.msg == _DHT_EOF_WARNING and clean_eof)


def quiet_dht_eof_warning() -> None:
    """Workaround: every DHT request logs a spurious WARNING on the serving node.

    ``KadDHT._do_handle_stream`` loops reading requests; when the requester
    closes its stream (as it does after every ADD_PROVIDER and GET_PROVIDERS)
    the read raises ``StreamEOF``, which is not the ``IncompleteReadError`` it
    expects for a clean end, so it logs "Failed to read DHT message from stream"
    at WARNING and resets the stream. Only that record, with an EOF as its
    argument, is dropped; real read failures still show.
    """
    dht_logger = logging.getLogger("libp2p.kad_dht.kad_dht")
    if not any(isinstance(f, _DropDhtEofWarning) for f in dht_logger.filters):
        dht_logger.addFilter(_DropDhtEofWarning())


async def close_network(libp2p_host: IHost, deadline: float) -> None:
    """Workaround: a stopped host keeps accepting connections on its port.

    ``Swarm.run``'s ``finally`` closes connections and then listeners, but it runs
    after the swarm was cancelled, so its first ``await`` raises ``Cancelled`` and
    the listener -- a trio *system* task that no nursery of ours owns -- keeps
    accepting and even completing Noise handshakes until the process exits (on
    a port bound with SO_REUSEPORT). We close the listeners first, then every
    connection concurrently, shielded from outside cancellation but bounded by
    ``deadline``, while the swarm is still running.
    """
    network = libp2p_host.get_network()
    with trio.CancelScope(shield=True, deadline=deadline):
        for listener in list(network.listeners.values()):
            with suppress(Exception):
                await listener.close()
        async with trio.open_nursery() as nursery:
            for connections in list(network.connections.values()):
                for connection in list(connections):
                    nursery.start_soon(_close_connection, connection)


async def _close_connection(connection: INetConn) -> None:
    with suppress(Exception):
        await connection.close()


async def query_providers(dht: KadDHT, peer: ID, key: bytes) -> list[PeerInfo]:
    """Workaround: ``find_providers`` stops at any local record and caches forever.

    ``ProviderStore.find_providers`` returns early when its local store holds any
    record for the key — our own announcement, a record another node stored on
    us, or one it cached from an earlier lookup — so the answer can miss every
    other provider for the records' whole lifetime; and it returns duplicates.
    We run the network half ourselves: ask one of the closest peers for its
    records with the store's own GET_PROVIDERS call (a private method, pinned by
    ``tests/node/test_libp2p_workarounds.py``), merging and deduplicating in the caller.
    """
    store = dht.provider_store
    providers, _closer = await store._get_providers_from_peer_with_closers(peer, key)
    return providers


def guard_pubsub_push(pubsub: Pubsub) -> None:
    """Workaround: one crafted pubsub message stops the receiving node's pubsub, and the host.

    ``Pubsub.push_msg`` runs as a task of the pubsub service for every received message, and
    an exception in any service task cancels the whole service, whose error then leaves
    ``background_trio_service`` -- i.e. ``open_host``. ``signature_validator`` raises on a
    message whose ``from`` is not an identity-multihash peer id and whose ``key`` is not a
    protobuf public key (``deserialize_public_key`` -> ``DecodeError``), so any peer can stop
    us with a single message. We wrap this instance's ``push_msg`` so that an exception on a
    *received* message drops that message (logged at debug with the forwarder); our own
    publishes (``forwarder == us``) still raise to the caller.
    """
    original = pubsub.push_msg
    me = pubsub.my_id

    async def push_msg(msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder == me:
            await original(msg_forwarder, msg)
            return
        try:
            await original(msg_forwarder, msg)
        except Exception as exc:
            logger.debug("dropped a pubsub message forwarded by %s: %r", msg_forwarder, exc)

    pubsub.push_msg = push_msg  # type: ignore[method-assign]


def stop_seen_cache_thread(pubsub: Pubsub) -> None:
    """Workaround: every ``Pubsub`` starts a thread that nothing ever stops.

    Its seen-message cache (``LastSeenCache``) sweeps expired ids from a daemon thread that
    wakes every ``sweep_interval`` (60 s) and is stopped only by ``stop()``, which
    ``Pubsub`` never calls: each stopped pubsub leaks a thread until the process exits. We
    call it when our pubsub service has ended (the join returns at once: the thread waits on
    the stop event).
    """
    pubsub.seen_messages.stop()
