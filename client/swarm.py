"""The client's view of a swarm: the offers for one model, routes over them, remote sessions.

Rules:
- `SwarmClient.connect` runs one discovery round (`darwin.client.discovery`) and fixes the
  session dtype: the configured one, or the one most nodes compute in.
- `SwarmRouter` routes over the offers it knows; when no route exists and nodes have failed
  since it last looked, it looks once more (a replica may have joined), then gives up with
  `NoRoute`. It opens hops as `RemoteHop`s, linked to push activations node to node unless
  the config says ``push=False``.
- Every session gets a fresh random session id; the client's own libp2p host is the caller's.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from darwin.client.discovery import DiscoveryConfig, Offer, choose_dtype, discover
from darwin.client.failover import FailoverConfig, FailoverSession, find_subroute
from darwin.client.remote_hop import HopConfig, HopLinks, HopTarget, RemoteHop, SessionTerms
from darwin.client.route import Hop as RouteHop
from darwin.client.route import NoRoute, Provider, RouteCosts
from darwin.client.session import Hop, HopFailed, SessionInfo
from darwin.ledger.reputation import Score, unknown_score
from darwin.net.host import Host
from darwin.protocol import DType, ModelId, PeerId, new_session_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwarmConfig:
    """Everything that shapes how a client talks to the swarm."""

    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    hop: HopConfig = field(default_factory=HopConfig)
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    costs: RouteCosts = field(default_factory=RouteCosts)
    dtype: DType | None = None  # the hidden states' dtype; None: what most nodes compute in
    probation_share: float = 0.1  # share of sessions that admit nodes on probation
    push: bool = True  # hops push activations to each other; False: the client relays them


class SwarmRouter:
    """Routes over discovered offers and opens remote hops for one session."""

    def __init__(self, client: SwarmClient, terms: SessionTerms, admit_probation: bool) -> None:
        self.client = client
        self.terms = terms
        self.admit_probation = admit_probation
        self.pushes = client.config.push

    async def route(self, start: int, end: int, exclude: frozenset[str]) -> list[RouteHop]:
        """The cheapest hops covering ``[start, end)`` outside `exclude` (raises `NoRoute`)."""
        client = self.client
        try:
            return find_subroute(client.providers(), start, end, client.config.costs, exclude,
                                 self.admit_probation)
        except NoRoute:
            if exclude <= client.looked_without:
                raise
        await client.refresh(exclude)
        return find_subroute(client.providers(), start, end, client.config.costs, exclude,
                             self.admit_probation)

    async def open(self, hop: RouteHop, push_from: RouteHop | None = None,
                   push_to: RouteHop | None = None) -> Hop:
        """Open the session on one hop, with the push links asked for (raises `HopFailed`)."""
        links = HopLinks(push_from=None if push_from is None else push_from.provider.peer_id,
                         push_to=None if push_to is None else self._target(push_to))
        return await RemoteHop.open(self.client.host, self._target(hop), self.terms,
                                    self.client.config.hop, links)

    def _target(self, hop: RouteHop) -> HopTarget:
        """Where `hop` runs (raises `HopFailed` for a node no longer offered)."""
        offer = self.client.offers.get(hop.provider.peer_id)
        if offer is None:
            raise HopFailed(hop.provider.peer_id, "no longer offered")
        return HopTarget(offer.peer_id, offer.addrs, hop.start, hop.end)


class SwarmClient:
    """A host that knows who serves one model; opens failover sessions over them.

    Attributes:
        offers: peer id -> the node's offer, from the latest discovery.
        dtype: the dtype hidden states travel in.
        looked_without: the excluded peers of the latest discovery.
    """

    def __init__(self, host: Host, model_id: ModelId, n_layers: int, config: SwarmConfig,
                 offers: list[Offer], dtype: DType,
                 scores: Mapping[str, Score] | None = None) -> None:
        self.host = host
        self.scores = dict(scores or {})
        self.random = random.Random()
        self.model_id = model_id
        self.n_layers = n_layers
        self.config = config
        self.dtype = dtype
        self.offers = {offer.peer_id: offer for offer in offers}
        self.looked_without: frozenset[str] = frozenset()

    @classmethod
    async def connect(cls, host: Host, model_id: ModelId, n_layers: int,
                      config: SwarmConfig = SwarmConfig(),
                      scores: Mapping[str, Score] | None = None) -> SwarmClient:
        """Discover the model's providers (no route is needed yet: sessions find out).

        `scores` is the client's reputation view (`darwin.client.client_ledger.standing`);
        peers it does not know are on probation.
        """
        offers = await discover(host, model_id, n_layers, config.dtype, config.discovery)
        dtype = config.dtype or choose_dtype(offers) or DType.FLOAT32
        offers = [offer for offer in offers if offer.info.dtype == dtype]
        logger.info("model %s: %d providers computing in %s", model_id.hex()[:16], len(offers),
                    dtype.value)
        return cls(host, model_id, n_layers, config, offers, dtype, scores)

    def providers(self) -> list[Provider]:
        """The offers as the route finder sees them, with their standing in our ledger (trust,
        ban, probation, and the step latency it measured)."""
        providers = []
        for offer in self.offers.values():
            score = self.scores.get(offer.peer_id) or unknown_score(PeerId(offer.peer_id))
            providers.append(dataclasses.replace(offer.provider(), trust=score.trust,
                                                 banned=score.banned,
                                                 probation=score.probation,
                                                 latency_ms=score.latency_ms))
        return providers

    async def refresh(self, exclude: frozenset[str] = frozenset()) -> None:
        """Look for providers again, not asking the excluded ones."""
        offers = await discover(self.host, self.model_id, self.n_layers, self.dtype,
                                self.config.discovery, exclude)
        self.offers = {offer.peer_id: offer for offer in offers}
        self.looked_without = exclude

    async def open_session(self, max_length: int) -> FailoverSession:
        """Open a new inference session of at most `max_length` positions on a fresh route.

        Raises:
            NoRoute: some blocks have no working provider.
            SessionFailed: too many nodes failed while opening.
        """
        info = SessionInfo(model_id=self.model_id, n_layers=self.n_layers,
                           session_id=new_session_id())
        terms = SessionTerms(session_id=info.session_id, model_id=self.model_id,
                             max_length=max_length)
        admit = self.random.random() < self.config.probation_share
        return await FailoverSession.open(info, SwarmRouter(self, terms, admit),
                                          self.config.failover)
