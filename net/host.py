"""The libp2p host of a Darwin peer: identity, transport, DHT, stream handlers.

Rules of this module (normative text: ``specs/transport.md``):

- The host key is the node's 32-byte ed25519 seed, so the libp2p peer id *is*
  the public key that signs the node's receipts (:func:`public_key_from_peer_id`).
- The stack is TCP + Noise (``/noise``) + yamux (``/yamux/1.0.0``) and nothing
  else: no plaintext, secio, TLS or mplex is offered, so no peer can negotiate
  down to them.
- Discovery is the Kademlia DHT (``/ipfs/kad/1.0.0``). Darwin only uses its
  provider records: a node announces keys (:func:`darwin.net.protocols.block_provider_key`) and
  anyone finds the announcers and their addresses.
- Peers are named by their base58 peer-id string everywhere outside this module;
  no libp2p type but the stream (:data:`Stream`) crosses its boundary.
- Every libp2p failure that escapes is a :class:`~darwin.net.framing.TransportError`.
- A stream handler that raises never takes the connection or the node down: the
  error is logged with the peer and the stream is reset.
- With ``HostConfig.pubsub`` set, the host also runs GossipSub (:mod:`darwin.net.pubsub`,
  ``specs/gossip.md``), started before it joins so every connection gets a pubsub stream.
- Every py-libp2p 0.8.1 defect we work around lives in
  :mod:`darwin.net.libp2p_workarounds`, one function each, with a test.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.exceptions import StreamFailure
from libp2p.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from darwin.net.addresses import WILDCARD, expand_wildcards, local_ipv4_addresses
from darwin.net.framing import TransportError, close_quietly, reset_quietly
from darwin.net.libp2p_workarounds import (
    PROVIDER_RECORD_TTL,
    apply_process_fixes,
    close_network,
    connection_config,
    query_providers,
)
from darwin.net.pubsub import HostPubsub, PubsubConfig, run_pubsub
from darwin.protocol import RemoteProtocolError
from darwin.protocol import public_key_from_peer_id as protocol_public_key

__all__ = [
    "PROVIDER_RECORD_TTL",
    "BootstrapError",
    "DialError",
    "Host",
    "HostConfig",
    "ProtocolNotSupported",
    "ProviderInfo",
    "Stream",
    "StreamHandler",
    "open_host",
    "public_key_from_peer_id",
    "stream_peer_id",
]

logger = logging.getLogger(__name__)

Stream = INetStream
StreamHandler = Callable[[INetStream], Awaitable[None]]

SEED_SIZE = 32
# Addresses learned for a peer stay dialable this long (seconds; 0 = forever).
_PEER_ADDR_TTL = 3600


class DialError(TransportError):
    """A peer could not be reached (no address, refused, timed out, wrong key)."""


class BootstrapError(DialError):
    """None of the configured bootstrap peers could be reached."""


class ProtocolNotSupported(TransportError):
    """The peer is reachable but did not agree to the requested protocol id."""


@dataclass(frozen=True)
class HostConfig:
    """How a host listens, joins the swarm and keeps its DHT records."""

    # Multiaddrs to listen on; port 0 picks a free port (see Host.listen_addrs).
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    # /p2p multiaddrs of peers to join through; empty starts a new swarm.
    bootstrap: tuple[str, ...] = ()
    # Answer DHT queries and store records (nodes) or only ask (clients).
    dht_server: bool = True
    # Seconds allowed to dial a peer or open a stream to it.
    dial_timeout: float = 10.0
    # Seconds allowed for one provide (announcement) or the startup lookup.
    dht_timeout: float = 10.0
    # Seconds between re-announcements of every key we provide; must stay well
    # below PROVIDER_RECORD_TTL so our records never lapse while we are up.
    reprovide_interval: float = 10 * 60.0
    # Seconds the whole shutdown may take before it is cut short.
    shutdown_timeout: float = 5.0
    # GossipSub parameters, or None to run no pubsub (Host.pubsub is then unavailable).
    pubsub: PubsubConfig | None = None

    def __post_init__(self) -> None:
        if not self.listen:
            raise ValueError("a host needs at least one listen address")
        if not 0 < self.reprovide_interval < PROVIDER_RECORD_TTL:
            raise ValueError("reprovide_interval must be positive and below the record TTL")


@dataclass(frozen=True)
class ProviderInfo:
    """A peer that announced a key, and the addresses it announced with it."""

    peer_id: str
    addrs: tuple[str, ...]


# --------------------------------------------------------------------------- identity


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Return the raw 32-byte ed25519 public key embedded in a peer id.

    The derivation is `darwin.protocol`'s; this only gives the host API its ``ValueError``.

    Raises:
        ValueError: the string is not a peer id, or not one of an ed25519 key.
    """
    try:
        return protocol_public_key(peer_id)
    except RemoteProtocolError as exc:
        raise ValueError(f"not an ed25519 peer id: {peer_id!r} ({exc})") from None


def stream_peer_id(stream: INetStream) -> str:
    """Return the peer id at the other end of a stream (authenticated by Noise)."""
    return str(stream.muxed_conn.peer_id)


# ------------------------------------------------------------------------------- host


class Host:
    """A running Darwin host; obtain one with :func:`open_host`.

    Attributes:
        peer_id: our base58 peer id.
        public_key: our raw 32-byte ed25519 public key (the receipt signer).
    """

    def __init__(self, libp2p_host: IHost, dht: KadDHT, config: HostConfig,
                 pubsub: HostPubsub | None = None) -> None:
        self._host = libp2p_host
        self._dht = dht
        self._config = config
        self._pubsub = pubsub
        self._id = libp2p_host.get_id()
        self.peer_id: str = self._id.to_base58()
        self.public_key: bytes = libp2p_host.get_public_key().to_bytes()
        self._provided: set[bytes] = set()

    @property
    def listen_addrs(self) -> list[str]:
        """The addresses we actually listen on, each ending in ``/p2p/<peer id>``; a wildcard
        (``0.0.0.0``) as the machine's own addresses (`darwin.net.addresses`)."""
        return [str(addr) for addr in self._host.get_addrs()]

    @property
    def pubsub(self) -> HostPubsub:
        """The host's GossipSub router.

        Raises:
            RuntimeError: the host was opened without ``HostConfig.pubsub``.
        """
        if self._pubsub is None:
            raise RuntimeError("this host runs no pubsub; set HostConfig.pubsub")
        return self._pubsub

    def connected_peers(self) -> list[str]:
        """Peer ids we hold a live connection to."""
        return [str(peer) for peer in self._host.get_connected_peers()]

    # ------------------------------------------------------------------ connections

    async def connect(self, addr: str, *, timeout: float | None = None) -> str:
        """Connect to the peer at a ``.../p2p/<peer id>`` multiaddr; return its peer id.

        The peer also enters our DHT routing table if it serves the DHT.

        Raises:
            ValueError: ``addr`` is not a multiaddr ending in ``/p2p/<peer id>``.
            DialError: the peer could not be reached, or is ourselves.
        """
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise ValueError(f"not a /p2p multiaddr: {addr!r}") from exc
        if info.peer_id == self._id:
            raise DialError(f"refusing to dial ourselves at {addr}")
        self._remember_addrs(info.peer_id, info.addrs)
        limit = self._config.dial_timeout if timeout is None else timeout
        try:
            with trio.fail_after(limit):
                await self._host.connect(info)
        except trio.TooSlowError:
            raise DialError(f"dialing {addr} timed out after {limit} s") from None
        except BaseLibp2pError as exc:
            raise DialError(f"cannot dial {addr}: {exc}") from exc
        # host.connect re-adds the addresses with a 120 s TTL; keep them longer.
        self._remember_addrs(info.peer_id, info.addrs)
        await self._dht.add_peer(info.peer_id)
        logger.debug("connected to peer %s at %s", info.peer_id, addr)
        return info.peer_id.to_base58()

    async def open_stream(
        self,
        peer_id: str,
        protocol_id: str,
        *,
        addrs: Iterable[str] = (),
        timeout: float | None = None,
    ) -> INetStream:
        """Open a stream to ``peer_id`` speaking ``protocol_id``, dialing if needed.

        Args:
            peer_id: the peer to talk to.
            protocol_id: e.g. ``/darwin/forward/1``.
            addrs: extra addresses to try (e.g. from :meth:`find_providers`).
            timeout: seconds for dial and negotiation (default ``dial_timeout``).

        Raises:
            ValueError: ``peer_id`` is not a peer id.
            DialError: no connection could be made.
            ProtocolNotSupported: the peer refused the protocol.
        """
        peer = _parse_peer_id(peer_id)
        self._remember_addrs(peer, [multiaddr.Multiaddr(a) for a in addrs])
        limit = self._config.dial_timeout if timeout is None else timeout
        try:
            with trio.fail_after(limit):
                return await self._host.new_stream(peer, [TProtocol(protocol_id)])
        except trio.TooSlowError:
            raise DialError(f"opening {protocol_id} to {peer_id} timed out") from None
        except StreamFailure as exc:
            raise ProtocolNotSupported(f"{peer_id} refused {protocol_id}") from exc
        except BaseLibp2pError as exc:
            raise DialError(f"cannot reach {peer_id}: {exc}") from exc

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve ``protocol_id``: each inbound stream runs ``handler`` in its own task.

        The stream is half-closed when the handler returns and reset when it
        raises; an exception is logged with the peer, never propagated.
        """

        async def run(stream: INetStream) -> None:
            await _run_handler(protocol_id, handler, stream)

        self._host.set_stream_handler(TProtocol(protocol_id), run)

    def remove_stream_handler(self, protocol_id: str) -> None:
        """Stop serving ``protocol_id`` (new streams for it are refused)."""
        self._host.remove_stream_handler(TProtocol(protocol_id))

    # -------------------------------------------------------------------------- DHT

    async def provide(self, key: bytes) -> bool:
        """Announce that we provide ``key``, now and every ``reprovide_interval``.

        Returns True when at least one other peer stored the record. With no
        peer yet the record is only kept locally, answered to whoever asks us,
        and pushed out again at the next refresh.
        """
        self._provided.add(key)
        return await self._announce(key)

    async def find_providers(
        self, key: bytes, timeout: float, *, count: int = 20
    ) -> list[ProviderInfo]:
        """Return up to ``count`` distinct providers of ``key`` (ourselves included).

        Asks the peers closest to the key over the network every time (never
        only a local cache); whatever arrived when ``timeout`` passes is
        returned. Their addresses are remembered, so :meth:`open_stream` can dial
        them. Records are hints: a provider may have gone since it announced.
        """
        found: dict[ID, PeerInfo] = {}
        for info in self._dht.provider_store.get_providers(key):
            found.setdefault(info.peer_id, info)
        with trio.move_on_after(timeout):
            closest = await self._dht.peer_routing.find_closest_peers_network(key)
            async with trio.open_nursery() as nursery:
                for peer in closest:
                    if peer != self._id:
                        nursery.start_soon(self._collect_providers, peer, key, found)
        result = []
        for info in list(found.values())[:count]:
            self._remember_addrs(info.peer_id, info.addrs)
            result.append(ProviderInfo(info.peer_id.to_base58(), tuple(map(str, info.addrs))))
        return result

    async def _collect_providers(self, peer: ID, key: bytes, found: dict[ID, PeerInfo]) -> None:
        try:
            providers = await query_providers(self._dht, peer, key)
        except BaseLibp2pError as exc:  # a dead or confused peer must not end the lookup
            logger.debug("GET_PROVIDERS to %s failed: %s", peer, exc)
            return
        for info in providers:
            known = found.get(info.peer_id)
            if known is None or (not known.addrs and info.addrs):
                found[info.peer_id] = info

    async def _announce(self, key: bytes) -> bool:
        with trio.move_on_after(self._config.dht_timeout):
            return bool(await self._dht.provider_store.provide(key))
        logger.warning("announcing key %s timed out", key.hex())
        return False

    async def _reprovide_forever(self) -> None:
        while True:
            await trio.sleep(self._config.reprovide_interval)
            for key in list(self._provided):
                await self._announce(key)

    async def _join(self) -> None:
        """Dial the bootstrap peers, then look ourselves up to fill the routing table."""
        if not self._config.bootstrap:
            return
        reached: list[str] = []

        async def dial(addr: str) -> None:
            try:
                reached.append(await self.connect(addr))
            except DialError as exc:
                logger.warning("bootstrap peer %s unreachable: %s", addr, exc)

        async with trio.open_nursery() as nursery:
            for addr in self._config.bootstrap:
                nursery.start_soon(dial, addr)
        if not reached:
            raise BootstrapError(f"no bootstrap peer reachable: {list(self._config.bootstrap)}")
        with trio.move_on_after(self._config.dht_timeout):
            await self._dht.peer_routing.find_closest_peers_network(self._id.to_bytes())

    def _remember_addrs(self, peer: ID, addrs: Iterable[multiaddr.Multiaddr]) -> None:
        transport_addrs = [_without_p2p(a) for a in addrs]
        if transport_addrs and peer != self._id:
            self._host.get_peerstore().add_addrs(peer, transport_addrs, _PEER_ADDR_TTL)


def _without_p2p(addr: multiaddr.Multiaddr) -> multiaddr.Multiaddr:
    """``/ip4/…/tcp/…/p2p/<id>`` -> ``/ip4/…/tcp/…`` (the peerstore wants the latter)."""
    text = str(addr)
    cut = text.find("/p2p/")
    return multiaddr.Multiaddr(text[:cut]) if cut > 0 else addr


def _parse_peer_id(peer_id: str) -> ID:
    """The libp2p ID of a Darwin peer id; Darwin peers all have ed25519 keys."""
    public_key_from_peer_id(peer_id)  # raises ValueError unless an ed25519 peer id
    return ID.from_base58(peer_id)


async def _run_handler(protocol_id: str, handler: StreamHandler, stream: INetStream) -> None:
    peer = stream_peer_id(stream)
    try:
        await handler(stream)
    except TransportError as exc:
        logger.info("%s stream from %s ended: %s", protocol_id, peer, exc)
        await reset_quietly(stream)
    except Exception:
        logger.exception("%s handler failed on a stream from %s", protocol_id, peer)
        await reset_quietly(stream)
    else:
        await close_quietly(stream)


def _key_pair_from_seed(seed: bytes) -> KeyPair:
    if len(seed) != SEED_SIZE:
        raise ValueError(f"an ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
    return create_new_key_pair(seed)


def _new_libp2p_host(key_pair: KeyPair, config: HostConfig) -> IHost:
    """TCP + Noise + yamux and nothing else, so no peer can negotiate anything weaker."""
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    wildcard = any(a.startswith(WILDCARD) for a in config.listen)
    ips = local_ipv4_addresses() if wildcard else []
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[multiaddr.Multiaddr(a) for a in config.listen],
        connection_config=connection_config(),
        addrs_factory=partial(expand_wildcards, ips=ips) if wildcard else None,
    )


@asynccontextmanager
async def open_host(seed: bytes, config: HostConfig = HostConfig()) -> AsyncIterator[Host]:
    """Start a host whose identity is the ed25519 ``seed``; stop it on exit.

    On entry it listens on ``config.listen``, starts the DHT, and joins through
    ``config.bootstrap``. On exit it stops accepting, closes every connection
    (peers see their streams end), and stops every handler and background task,
    all within ``config.shutdown_timeout`` seconds.

    Raises:
        ValueError: the seed is not 32 bytes or an address is malformed.
        BootstrapError: bootstrap peers were given and none could be reached.
    """
    key_pair = _key_pair_from_seed(seed)
    apply_process_fixes()
    libp2p_host = _new_libp2p_host(key_pair, config)
    mode = DHTMode.SERVER if config.dht_server else DHTMode.CLIENT
    body_error: Exception | None = None
    try:
        # `shutdown` bounds libp2p's own teardown. It gets its deadline only once
        # we are leaving, and it must not enclose the cancel of our own nursery
        # alone: cancelling around libp2p's services turns their `finally: await
        # stop()` into Cancelled, which would swallow the caller's exception.
        with trio.CancelScope() as shutdown:
            async with libp2p_host.run([multiaddr.Multiaddr(a) for a in config.listen]):
                dht = KadDHT(libp2p_host, mode)
                async with background_trio_service(dht), _maybe_pubsub(libp2p_host, config) as ps:
                    host = Host(libp2p_host, dht, config, ps)
                    try:
                        await host._join()
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(host._reprovide_forever)
                            logger.info("host %s listening on %s", host.peer_id, host.listen_addrs)
                            try:
                                yield host
                            except Exception as exc:
                                body_error = exc
                                raise
                            finally:
                                nursery.cancel_scope.cancel()
                    finally:
                        shutdown.deadline = trio.current_time() + config.shutdown_timeout
                        await close_network(libp2p_host, shutdown.deadline)
    except BaseExceptionGroup as group:
        # libp2p nests four nurseries; hand back the one error, not the Russian doll.
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        raise leaf from None
    if shutdown.cancelled_caught:
        logger.warning("host shutdown cut short after %s s", config.shutdown_timeout)
        if body_error is not None:
            raise body_error


@asynccontextmanager
async def _maybe_pubsub(libp2p_host: IHost, config: HostConfig) -> AsyncIterator[HostPubsub | None]:
    if config.pubsub is None:
        yield None
    else:
        async with run_pubsub(libp2p_host, config.pubsub) as pubsub:
            yield pubsub


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only non-group exception inside nested one-member groups, else None."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc
