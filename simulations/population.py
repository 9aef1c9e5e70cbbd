"""The simulated nodes and clients, and how a node picks its span (``--blocks auto``).

A node's span is chosen by the real ``choose_span`` over the providers per block of the nodes
alive when it joins, so the swarm's coverage evolves as it does under ``--blocks auto``. Keys
are real ed25519 identities from seeded bytes (peer ids are validated by every record).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from darwin.client.route import Hop
from darwin.ledger import Record, Score
from darwin.node.block_selection import choose_span
from darwin.protocol import Identity

from .geography import Place, place
from .scenario import AdversaryKind, Scenario

__all__ = ["SimClient", "SimNode", "Swarm"]


@dataclass(eq=False)  # identity: one object per key
class SimNode:
    index: int
    peer_id: str
    place: Place
    span: tuple[int, int]
    speed: float  # compute time is divided by it
    bandwidth_bps: float
    verifier: bool
    kind: AdversaryKind  # NONE for honest nodes
    alive: bool = True
    active: int = 0  # sessions it is serving now
    hops_served: int = 0
    first_cheat_s: float | None = None
    banned_s: float | None = None  # the first confirmed fraud proof against it, anywhere
    served_by_client: dict[int, int] = field(default_factory=dict)

    @property
    def cheater(self) -> bool:
        return self.kind not in (AdversaryKind.NONE, AdversaryKind.SLOW)


@dataclass(eq=False)
class SimClient:
    index: int
    peer_id: str
    place: Place
    targeted: bool  # targeted cheaters cheat this client
    rng: random.Random
    records: list[Record] = field(default_factory=list)
    inbox: list[tuple[float, Record]] = field(default_factory=list)  # gossip, by arrival
    scores: dict[str, Score] = field(default_factory=dict)
    known: list[SimNode] = field(default_factory=list)
    routes: dict[bool, list[Hop]] = field(default_factory=dict)
    loads: dict[str, float] = field(default_factory=dict)  # as the nodes reported at refresh
    requests: int = 0
    refreshed_at: int = -1  # `requests` at the last refresh
    opinions: dict[int, list[int]] = field(default_factory=dict)  # eigentrust: [sat, unsat]


def _identity(rng: random.Random) -> str:
    return Identity.from_seed(rng.randbytes(32)).peer_id


class Swarm:
    """Every node that ever joined, the providers per block of the live ones, and the clients."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.scenario, self.rng = scenario, rng
        self.nodes: list[SimNode] = []
        self.counts = [0] * scenario.n_layers
        self.by_peer: dict[str, SimNode] = {}
        adversary = scenario.adversary
        bad = round(scenario.nodes * adversary.share) if adversary.kind != AdversaryKind.SYBIL \
            else 0
        kinds = [adversary.kind] * bad + [AdversaryKind.NONE] * (scenario.nodes - bad)
        rng.shuffle(kinds)
        for kind in kinds:
            self.join(kind)
        targets = round(scenario.clients * adversary.target_share)
        self.clients = [SimClient(i, _identity(rng), place(rng), i < targets,
                                  random.Random(rng.randrange(2**63)))
                        for i in range(scenario.clients)]

    def join(self, kind: AdversaryKind, like: SimNode | None = None) -> SimNode:
        """A new key joins (``like``: the same machine under a fresh key, as a whitewasher)."""
        s, rng = self.scenario, self.rng
        if like is None:
            length = rng.randint(*s.blocks)
            speed = math.exp(rng.uniform(math.log(s.speed[0]), math.log(s.speed[1])))
            bandwidth = 1e6 * math.exp(rng.uniform(math.log(s.bandwidth_mbps[0]),
                                                   math.log(s.bandwidth_mbps[1])))
            where, verifier = place(rng), rng.random() < s.verifier_share
        else:
            length, speed, bandwidth = like.span[1] - like.span[0], like.speed, like.bandwidth_bps
            where, verifier = like.place, like.verifier
        if kind == AdversaryKind.SLOW:
            speed /= s.adversary.slowdown
        span = choose_span(self.counts, length)
        node = SimNode(len(self.nodes), _identity(rng), where, span, speed, bandwidth, verifier,
                       kind)
        self.nodes.append(node)
        self.by_peer[node.peer_id] = node
        self._cover(node, +1)
        return node

    def leave(self, node: SimNode) -> None:
        if node.alive:
            node.alive = False
            self._cover(node, -1)

    def _cover(self, node: SimNode, change: int) -> None:
        for block in range(*node.span):
            self.counts[block] += change

    def alive(self) -> list[SimNode]:
        return [node for node in self.nodes if node.alive]

    def sample(self, count: int, rng: random.Random) -> list[SimNode]:
        """``count`` live nodes at random, as a DHT lookup returns them."""
        found: dict[int, SimNode] = {}
        for _ in range(4 * count):
            node = self.nodes[rng.randrange(len(self.nodes))]
            if node.alive:
                found.setdefault(node.index, node)
                if len(found) == count:
                    break
        return list(found.values())
