"""One run: a SimPy world of nodes, clients and verifiers under one policy.

What happens (``docs/simulations.md`` has the model and its limits):

* Requests arrive as a Poisson process over ``duration_s``, each from a random client. The
  client routes with the real ``find_route`` / ``route_admitting`` over the providers it knows
  (a DHT sample of ``known_providers``), re-reads its standing with the real ``reputation``
  over its own ledger records every ``refresh_requests`` of its requests, and fails over from
  a hop that left (a ``failure`` record, the real router with that key excluded).
* A request holds its hops busy for its latency: per token, each hop costs the round trip to
  it, its blocks' compute (slower when loaded) and the activations' transfer.
* Afterwards the client records a success per hop and draws the hops to verify with the real
  ``hops_to_check``. A verifier (a random other node with the role) challenges one random
  step and layer: it catches a cheated step with the real ``detection_probability``. The
  client re-checks a fail's proof (it holds the model): a true one is a confirmed
  ``fraud_proof`` (banned) and a notice gossiped to every client, each re-checking it and
  recording its own; a false one an ``accusation_refuted`` against the verifier. The
  verifier's own signed verdict reaches ``gossip_fanout`` clients. Gossip has delay and loss.
* Churn: nodes leave (half of them crash) and new honest keys join, choosing their span with
  the real ``choose_span`` (``--blocks auto``). Adversaries are in ``scenario.AdversaryKind``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from typing import Any

import simpy

from darwin.client.route import Hop, NoRoute, Provider, RouteCosts, find_route, route_admitting
from darwin.client.verification import hops_to_check
from darwin.ledger import DEFAULT_PARAMS, Score, VerdictOutcome, reputation, unknown_score
from darwin.protocol import PeerId
from darwin.verifier.policy import detection_probability

from .eigentrust import global_trust
from .geography import rtt_ms
from .metrics import Metrics
from .population import SimClient, SimNode, Swarm
from .records import RecordMaker, time_ms
from .scenario import AdversaryKind, Policy, Scenario

__all__ = ["run_policy"]

Process = Generator[simpy.Event, Any, None]
COSTS = RouteCosts()


class World:
    """The swarm, its clients and the metrics of one policy's run."""

    def __init__(self, scenario: Scenario, policy: Policy) -> None:
        self.s, self.policy = scenario, policy
        self.env = simpy.Environment()
        self.swarm = Swarm(scenario, random.Random(scenario.seed))  # the same for every policy
        self.arrivals = random.Random(scenario.seed + 1)
        self.rng = random.Random(f"{scenario.seed}/{policy}")
        self.make = RecordMaker()
        self.metrics = Metrics(scenario.duration_s, scenario.buckets)
        self.trust: dict[int, float] = {}  # eigentrust's global vector
        self.ledgers = policy in (Policy.DARWIN, Policy.VERIFY_ONLY)
        self.whitewashed: set[int] = set()

    # -- the processes ------------------------------------------------------------------------

    def run(self) -> Metrics:
        self.env.process(self._arrivals())
        if self.s.churn_per_hour > 0:
            self.env.process(self._churn())
        if self.s.adversary.kind == AdversaryKind.SYBIL:
            self.env.process(self._sybil_waves())
        if self.policy == Policy.EIGENTRUST:
            self.env.process(self._eigentrust())
        self.env.run(until=self.s.duration_s + max(self.s.verify_delay_s) + 1.0)
        self.metrics.cheaters = sum(1 for n in self.swarm.nodes if n.first_cheat_s is not None)
        return self.metrics

    def _arrivals(self) -> Process:
        rate = self.s.requests / self.s.duration_s
        for _ in range(self.s.requests):
            yield self.env.timeout(self.arrivals.expovariate(rate))
            client = self.swarm.clients[self.arrivals.randrange(len(self.swarm.clients))]
            self.env.process(self._request(client))

    def _churn(self) -> Process:
        rate = self.s.nodes * self.s.churn_per_hour / 3600.0
        while True:
            yield self.env.timeout(self.rng.expovariate(rate))
            node = self.swarm.nodes[self.rng.randrange(len(self.swarm.nodes))]
            if node.alive and not node.cheater:  # cheaters stay: they want the traffic
                self.swarm.leave(node)
                self.swarm.join(AdversaryKind.NONE)

    def _sybil_waves(self) -> Process:
        waves = self.s.adversary.waves
        for _ in range(waves):
            yield self.env.timeout(self.s.duration_s / (waves + 1))
            for _ in range(round(self.s.nodes * self.s.adversary.wave_share)):
                self.swarm.join(AdversaryKind.SYBIL)

    def _eigentrust(self) -> Process:
        while True:
            yield self.env.timeout(self.s.duration_s / self.s.buckets)
            self.trust = global_trust(self.swarm.clients)

    # -- a request ----------------------------------------------------------------------------

    def _request(self, client: SimClient) -> Process:
        now = self.env.now
        if client.refreshed_at < 0 or client.requests - client.refreshed_at \
                >= self.s.refresh_requests or self._notice_for_route(client, now):
            self._refresh(client, now)
        client.requests += 1
        admit = self.rng.random() < DEFAULT_PARAMS.probation_traffic_share
        route = self._route(client, admit, now)
        if route is None:
            self.metrics.add(now, requests=1, no_route=1)
            return
        nodes = [self.swarm.by_peer[hop.provider.peer_id] for hop in route]
        latency = self._latency(client, route, nodes)
        for node in nodes:
            node.active += 1
        yield self.env.timeout(latency)
        for node in nodes:
            node.active -= 1
        self._finish(client, route, nodes, latency)

    def _notice_for_route(self, client: SimClient, now: float) -> bool:
        """Whether a fraud notice has arrived that the cached routes have not seen yet: the
        real client re-reads its standing before every request, this one only then."""
        return any(item[0] <= now for item in client.inbox) and any(
            self.swarm.by_peer[hop.provider.peer_id].banned_s is not None
            for route in client.routes.values() for hop in route)

    def _route(self, client: SimClient, admit: bool, now: float) -> list[Hop] | None:
        """The cached route, failing over from hops that left; None if nothing covers it."""
        excluded: frozenset[str] = frozenset()
        for _ in range(8):
            route = client.routes.get(admit)
            if route is None:
                try:
                    route = self._find(client, admit, excluded)
                except NoRoute:
                    self._discover(client, 2 * self.s.known_providers)
                    try:
                        route = self._find(client, admit, excluded)
                    except NoRoute:
                        return None
                client.routes[admit] = route
            gone = [hop.provider.peer_id for hop in route
                    if not self.swarm.by_peer[hop.provider.peer_id].alive]
            if not gone:
                return route
            for peer in gone:
                if self.ledgers:
                    client.records.append(self.make.failure(client.peer_id, peer, "timeout",
                                                            now))
            excluded |= frozenset(gone)
            client.known = [n for n in client.known if n.peer_id not in excluded]
            client.routes.clear()
        return None

    def _find(self, client: SimClient, admit: bool, excluded: frozenset[str]) -> list[Hop]:
        providers = [self._provider(client, node) for node in client.known]
        if self.policy == Policy.DARWIN:
            return route_admitting(providers, self.s.n_layers, COSTS, excluded, admit)
        return find_route(providers, self.s.n_layers, COSTS, excluded)

    def _provider(self, client: SimClient, node: SimNode) -> Provider:
        rtt, load = rtt_ms(client.place, node.place), client.loads.get(node.peer_id, 0.0)
        start, end = node.span
        if self.policy == Policy.DARWIN:
            score = self._score(client, node)
            return Provider(node.peer_id, start, end, rtt, load, score.trust, score.banned,
                            score.probation)
        if self.policy == Policy.VERIFY_ONLY:
            return Provider(node.peer_id, start, end, rtt, load,
                            banned=self._score(client, node).banned)
        if self.policy == Policy.EIGENTRUST:
            return Provider(node.peer_id, start, end, rtt, load, self.trust.get(node.index, 0.0))
        return Provider(node.peer_id, start, end, rtt, load)

    def _score(self, client: SimClient, node: SimNode) -> Score:
        return client.scores.get(node.peer_id) or unknown_score(PeerId(node.peer_id))

    def _latency(self, client: SimClient, route: list[Hop], nodes: list[SimNode]) -> float:
        """Seconds for the prompt and every generated token to pass through the route."""
        per_token = prompt = 0.0
        for hop, node in zip(route, nodes, strict=True):
            compute = (hop.end - hop.start) * self.s.block_ms / node.speed \
                * (1.0 + node.active / self.s.capacity)
            transfer = 8e3 * self.s.hidden_bytes / node.bandwidth_bps  # ms per token
            per_token += rtt_ms(client.place, node.place) + COSTS.hop_ms + compute + transfer
            prompt += compute * math.sqrt(self.s.prompt_tokens) + transfer * self.s.prompt_tokens
        return (prompt + per_token * (self.s.steps + 1)) / 1000.0

    # -- after a request ----------------------------------------------------------------------

    def _finish(self, client: SimClient, route: list[Hop], nodes: list[SimNode],
                latency: float) -> None:
        now, steps = self.env.now, self.s.steps
        cheated = [self._cheated_steps(client, node) for node in nodes]
        for node, bad in zip(nodes, cheated, strict=True):
            node.hops_served += 1
            node.served_by_client[client.index] = node.served_by_client.get(client.index, 0) + 1
            if bad and node.first_cheat_s is None:
                node.first_cheat_s = now
        inference = sum((hop.end - hop.start) for hop in route) * (self.s.prompt_tokens + steps)
        self.metrics.add(now, requests=1, latency_s=latency, tokens=steps, inference=inference,
                         touched=any(node.cheater for node in nodes), corrupted=any(cheated))
        self.metrics.hops += len(nodes)
        self.metrics.hops_to_slow += sum(1 for n in nodes if n.kind == AdversaryKind.SLOW)
        if self.policy == Policy.EIGENTRUST:
            noticed = any(cheated) and self.rng.random() < self.s.eigentrust_detect
            for node in nodes:
                client.opinions.setdefault(node.index, [0, 0])[1 if noticed else 0] += 1
            return
        if not self.ledgers:
            return
        for node in dict.fromkeys(nodes):
            client.records.append(self.make.success(client.peer_id, node.peer_id, now))
        rate = None if self.policy == Policy.DARWIN else self.s.verify_only_rate
        hops = [(hop.provider.peer_id, hop.start, hop.end) for hop in route]
        chosen = hops_to_check(hops, client.scores, rate, self.rng)
        by_peer = {node.peer_id: (node, bad) for node, bad in zip(nodes, cheated, strict=True)}
        for peer, _, _ in chosen:
            node, bad = by_peer[peer]
            self.env.process(self._verify(client, node, bad))

    def _cheated_steps(self, client: SimClient, node: SimNode) -> int:
        adversary, steps = self.s.adversary, self.s.steps
        if not node.cheater:
            return 0
        if node.kind == AdversaryKind.TARGETED and (
                not client.targeted
                or node.served_by_client.get(client.index, 0) < adversary.patience):
            return 0
        if adversary.step_rate >= 1.0:
            return steps
        return sum(1 for _ in range(steps) if self.rng.random() < adversary.step_rate)

    def _verify(self, client: SimClient, node: SimNode, cheated: int) -> Process:
        yield self.env.timeout(self.rng.uniform(*self.s.verify_delay_s))
        now = self.env.now
        verifier = self._verifier(node)
        if verifier is None:
            return
        span = node.span[1] - node.span[0]
        layers = min(span, self.s.adversary.cheating_layers)
        caught = self.rng.random() < cheated / self.s.steps * detection_probability(span, layers)
        self.metrics.add(now, checks=1,
                         verification=self.s.prompt_tokens + self.rng.randrange(self.s.steps) + 1)
        lying = verifier.kind == AdversaryKind.COLLUDING
        if not node.alive:
            outcome = VerdictOutcome.UNRESPONSIVE
        elif lying:
            outcome = VerdictOutcome.PASS if node.cheater or self.rng.random() >= \
                self.s.adversary.lie_rate else VerdictOutcome.FAIL
        else:
            outcome = VerdictOutcome.FAIL if caught else VerdictOutcome.PASS
        self._gossip_verdict(client, verifier, node, outcome, now)
        proof = self.rng.randbytes(32)
        if outcome == VerdictOutcome.FAIL and lying:  # the client re-runs the layer: false
            client.records.append(self.make.refuted(client.peer_id, node.peer_id,
                                                    verifier.peer_id, proof, now))
            self.metrics.refuted_accusations += 1
            return
        client.records.append(self.make.verdict(client.peer_id, node.peer_id, outcome,
                                                verifier.peer_id, now))
        if outcome == VerdictOutcome.FAIL:
            self._confirmed(client, node, verifier, proof, now)

    def _verifier(self, node: SimNode) -> SimNode | None:
        for _ in range(64):
            candidate = self.swarm.nodes[self.rng.randrange(len(self.swarm.nodes))]
            if candidate.verifier and candidate.alive and candidate is not node:
                return candidate
        return None

    def _gossip_verdict(self, client: SimClient, verifier: SimNode, node: SimNode,
                        outcome: VerdictOutcome, now: float) -> None:
        record = self.make.verdict(verifier.peer_id, node.peer_id, outcome, verifier.peer_id,
                                   now)
        for _ in range(self.s.gossip_fanout):
            other = self.swarm.clients[self.rng.randrange(len(self.swarm.clients))]
            if other is not client and self.rng.random() >= self.s.gossip_loss:
                other.inbox.append((now + self.rng.uniform(*self.s.gossip_delay_s), record))

    def _confirmed(self, client: SimClient, node: SimNode, verifier: SimNode, proof: bytes,
                   now: float) -> None:
        """A confirmed fraud proof: the client bans, and its notice reaches every client."""
        client.records.append(self.make.fraud_proof(client.peer_id, node.peer_id,
                                                    verifier.peer_id, proof, now))
        if node.banned_s is None:
            node.banned_s = now
            if node.first_cheat_s is not None:
                self.metrics.detection_delays_s.append(now - node.first_cheat_s)
            if self.s.adversary.kind == AdversaryKind.WHITEWASH:
                self.env.process(self._whitewash(node))
        template = client.records[-1]
        for other in self.swarm.clients:
            if other is not client:
                arrival = now + self._gossip_delay()
                other.inbox.append((arrival, self.make.reissued(template, other.peer_id,
                                                                arrival)))

    def _gossip_delay(self) -> float:
        """A notice's delay; one gossip lost arrives by ledger sync at a later catch-up."""
        lost = self.rng.random() < self.s.gossip_loss
        return self.rng.uniform(*self.s.gossip_delay_s) + (self.s.catch_up_s if lost else 0.0)

    def _whitewash(self, node: SimNode) -> Process:
        yield self.env.timeout(self.s.adversary.rejoin_s)
        self.swarm.leave(node)
        self.swarm.join(AdversaryKind.WHITEWASH, like=node)

    # -- a client re-reads its standing -------------------------------------------------------

    def _refresh(self, client: SimClient, now: float) -> None:
        client.refreshed_at = client.requests
        if client.inbox:
            arrived = [item for item in client.inbox if item[0] <= now]
            client.inbox = [item for item in client.inbox if item[0] > now]
            client.records.extend(record for _, record in arrived)
        if self.ledgers:
            scores = reputation(client.records, now_ms=time_ms(now), owner=PeerId(client.peer_id))
            client.scores = {str(peer): score for peer, score in scores.items()}
            for peer, score in client.scores.items():
                node = self.swarm.by_peer.get(peer)
                if score.banned and node is not None and not node.cheater \
                        and peer not in self.metrics.false_bans:
                    self.metrics.false_bans.append(peer)
        kept = [n for n in client.known if n.alive and not self._score(client, n).banned]
        kept.sort(key=lambda n: (self._score(client, n).probation, -self._score(client, n).trust))
        client.known = kept[: self.s.known_providers // 2]  # the best half, and a fresh lookup
        self._discover(client, self.s.known_providers)
        client.loads = {n.peer_id: n.active / self.s.capacity for n in client.known}
        client.routes.clear()

    def _discover(self, client: SimClient, count: int) -> None:
        """Top the client's known providers up to ``count`` from a DHT sample."""
        have = {node.index for node in client.known}
        for node in self.swarm.sample(count, client.rng):
            if len(client.known) >= count:
                break
            if node.index not in have and not self._score(client, node).banned:
                client.known.append(node)
                have.add(node.index)


def run_policy(scenario: Scenario, policy: Policy) -> Metrics:
    """Run ``scenario`` under ``policy``; the same scenario and seed give the same metrics."""
    return World(scenario, policy).run()
