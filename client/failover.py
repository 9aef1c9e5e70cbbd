"""Inference sessions that survive failing hops: exclude the node, re-route its blocks, replay.

Rules (``specs/forward-protocol.md``, "Failover and replay"):
- A hop fails when it raises `HopFailed` (gone, timed out, refused, malformed answer) or its
  receipt does not check (a protocol violation). Its node is excluded for the rest of the
  session and only the blocks that hop covered, ``[a, b)``, are re-routed; the hops before and
  after keep their sessions.
- The session keeps, for every boundary of its current route, the hidden states it sent there
  at every step. The replacement hops get every past step again, in order, with the original
  step numbers and positions, starting from the inputs kept at ``a``; their caches are then
  those of an uninterrupted run, so greedy output is identical to a run without the fault.
- Replayed receipts are checked like any other but stay out of the trace (kept apart in
  ``replay_receipts``: a verifier needs a node's receipts of steps ``0..k`` to challenge step
  ``k``); the current step then continues on the replacement, so each step keeps exactly one
  chain of hops.
- Opening the first route is the same operation with nothing to replay. The hops of a route
  are opened at once; every one that fails to open is excluded before the next route.
- It ends: each failure excludes one more node, ``max_failovers`` bounds them, and every
  network wait below has its own deadline. With no provider left for some blocks the session
  raises `NoRoute` ("no available provider serves blocks [a, b)").
- With a router that `pushes`, the first route is opened with push links (each hop pushes
  its output to the next; ``specs/forward-protocol.md``, "Pushed activations"): the client
  sends the first hop its input, asks every later hop for the step at once, and checks each
  receipt as it arrives; inner hops answer with their receipt alone, so the chain is checked
  by hashes (`darwin.protocol.forward_client.check_link`) and only the first hop's inputs
  are kept. The first fault of any kind ends pushing for the session: every hop is closed,
  the node at fault is excluded when the fault is its own (a `LinkFailed` is nobody's), and
  the whole model is routed again, relayed, and replayed from the first hop's inputs.
- What the session saw is kept for the client's ledger (``specs/ledger.md`` §7): every node
  excluded for a `HopViolation` (its own protocol violation, never a network or link fault)
  in ``violations``, and every live step's time on each hop in ``latencies``
  (`darwin.client.step_latency`), timed on the monotonic clock and written only at the end.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
import trio

from darwin.client.route import Hop as RouteHop
from darwin.client.route import NoRoute, Provider, RouteCosts, route_admitting
from darwin.client.session import (
    Hop,
    HopFailed,
    HopViolation,
    InferenceSession,
    LinkFailed,
    PushedHop,
    SessionInfo,
)
from darwin.client.step_latency import StepLatencies
from darwin.model.torch_wire import digest
from darwin.protocol import Receipt, RemoteProtocolError
from darwin.protocol.forward_client import BrokenLink, check_link

logger = logging.getLogger(__name__)

DEFAULT_COSTS = RouteCosts()


class SessionFailed(Exception):
    """The session gave up: too many nodes failed."""


class Router(Protocol):
    """Finds and opens hops for a run of blocks (over the network, or in tests in memory)."""

    pushes: bool  # whether the hops it opens can push to each other

    async def route(self, start: int, end: int, exclude: frozenset[str]) -> list[RouteHop]:
        """The hops to cover ``[start, end)`` without the excluded peers (raises `NoRoute`)."""
        ...

    async def open(self, hop: RouteHop, push_from: RouteHop | None = None,
                   push_to: RouteHop | None = None) -> Hop:
        """Open a session on one route hop, fed by `push_from`'s pushes and pushing to
        `push_to` when given (only when `pushes`; raises `HopFailed`)."""
        ...


@dataclass(frozen=True)
class FailoverConfig:
    """How hard a session tries before it gives up."""

    max_failovers: int = 8  # nodes that may fail (and be excluded) in one session
    close_timeout: float = 2.0  # seconds to close a failed hop before moving on


@dataclass(frozen=True)
class FailoverEvent:
    """One replaced hop: who failed, when, why, and what took its place."""

    step: int  # the step during which the hop failed
    peer_id: str
    span: tuple[int, int]  # the blocks it covered
    reason: str
    replacement: tuple[tuple[str, int, int], ...]  # (peer id, start, end) of the new hops
    replayed_steps: int  # past steps replayed to the replacement

    def to_json(self) -> dict[str, object]:
        return {"step": self.step, "peer_id": self.peer_id, "start": self.span[0],
                "end": self.span[1], "reason": self.reason, "replayed_steps": self.replayed_steps,
                "replacement": [{"peer_id": p, "start": a, "end": b}
                                for p, a, b in self.replacement]}


def find_subroute(providers: Iterable[Provider], start: int, end: int,
                  costs: RouteCosts = DEFAULT_COSTS,
                  exclude: frozenset[str] = frozenset(),
                  admit_probation: bool = True) -> list[RouteHop]:
    """The cheapest chain of providers covering blocks ``[start, end)`` of the model.

    Providers on probation are left out unless `admit_probation` or nobody else covers them.

    Raises:
        NoRoute: naming, in the model's block numbers, the first blocks nobody serves.
    """
    shifted: list[Provider] = []
    originals: dict[str, Provider] = {}
    for provider in providers:
        low, high = max(provider.span_start, start), min(provider.span_end, end)
        if low < high and provider.peer_id not in exclude:
            shifted.append(dataclasses.replace(provider, span_start=low - start,
                                               span_end=high - start))
            originals[provider.peer_id] = provider
    try:
        route = route_admitting(shifted, end - start, costs, frozenset(), admit_probation)
    except NoRoute as exc:
        raise NoRoute((exc.missing[0] + start, exc.missing[1] + start)) from None
    return [RouteHop(originals[hop.provider.peer_id], hop.start + start, hop.end + start)
            for hop in route]


class FailoverSession(InferenceSession):
    """An `InferenceSession` whose failed hops are replaced and replayed, invisibly to the output.

    Attributes:
        excluded: peers that failed in this session.
        failovers: every replacement made, in order.
        inputs: boundary -> the hidden states sent to the hop starting there, one per step.
        replay_receipts: the checked receipts of replayed steps (not in the trace).
        failure_reasons: peer id -> why it was excluded (also when it could not be replaced).
        violations: peer id -> the protocol violation it was excluded for (a subset of
            ``failure_reasons``).
        latencies: every live step's time on each hop.
        pushing: whether the current route's hops push to each other.
    """

    def __init__(self, info: SessionInfo, router: Router,
                 config: FailoverConfig = FailoverConfig()) -> None:
        super().__init__([], info)
        self.router = router
        self.config = config
        self.excluded: set[str] = set()
        self.failovers: list[FailoverEvent] = []
        self.inputs: dict[int, list[torch.Tensor]] = {}
        self.step_positions: list[tuple[int, int]] = []  # (position_start, count) per step
        self.replay_receipts: list[Receipt] = []
        self.failure_reasons: dict[str, str] = {}
        self.violations: dict[str, str] = {}
        self.latencies = StepLatencies()
        self.pushing = router.pushes

    @classmethod
    async def open(cls, info: SessionInfo, router: Router,
                   config: FailoverConfig = FailoverConfig()) -> FailoverSession:
        """Route the whole model and open a session on every hop, skipping nodes that fail.

        Raises:
            NoRoute: some blocks have no working provider.
            SessionFailed: more than ``max_failovers`` nodes failed.
        """
        session = cls(info, router, config)
        session.hops = await session._open_segment(0, info.n_layers, replay_steps=0)
        session.pushing = session.pushing and len(session.hops) > 1
        return session

    async def step(self, hidden: torch.Tensor) -> torch.Tensor:
        """Send one step's hidden states (batch, seq, hidden) through the route, failing over.

        Raises:
            NoRoute, SessionFailed: a failed hop could not be replaced.
            StepRefused: a node refused the step as malformed (a client bug).
        """
        if self.pushing:
            try:
                return await self._pushed_step(hidden)
            except HopFailed as failure:
                await self._stop_pushing(failure)
        return await self._relayed_step(hidden)

    async def _pushed_step(self, hidden: torch.Tensor) -> torch.Tensor:
        """One step over pushing hops; nothing is recorded unless every hop's result checks.

        The inner activations go from node to node: the client checks that each hop's
        receipt takes as input the output the previous receipt names, and the tensors it sent
        and received itself at the ends.

        Raises:
            HopFailed: a hop failed or its receipt does not check (`LinkFailed` when its
                input is not the output the previous receipt names).
        """
        step, positions = self.next_step, (self.position, hidden.shape[1])
        first, *rest = [_pushed(hop) for hop in self.hops]
        mark = trio.current_time()
        await first.request(step, hidden)
        for hop in rest:  # each is asked long before the previous hop pushes
            await hop.request_pushed(step, hidden)
        unread = collections.deque(rest)
        times: list[tuple[str, float]] = []  # each hop's share: from the checked result before
        try:
            output, receipt = await first.result(step, hidden)
            receipts = [self._checked_result(first, step, digest(hidden), output, receipt,
                                             positions)]
            now = trio.current_time()
            times.append((first.peer_id, now - mark))
            mark = now
            while unread:
                hop = unread.popleft()
                output, receipt = await hop.result(step, hidden)
                try:
                    check_link(receipts[-1], receipt)
                except BrokenLink as broken:
                    raise LinkFailed(hop.peer_id, broken.reason) from None
                receipts.append(self._checked_result(hop, step, receipt.body.input_hash,
                                                     output, receipt, positions))
                now = trio.current_time()
                times.append((hop.peer_id, now - mark))
                mark = now
        except LinkFailed as failure:
            raise await _own_fault(failure, unread, step, hidden) from None
        assert output is not None, "the last hop of a route answers with its output"
        self.inputs.setdefault(0, []).append(hidden)  # a fallback replays from here
        self.receipts.extend(receipts)
        for peer, seconds in times:
            self.latencies.add(peer, seconds)
        self.step_positions.append(positions)
        self.next_step += 1
        self.position += positions[1]
        return output

    def _checked_result(self, hop: Hop, step: int, input_hash: bytes,
                        output: torch.Tensor | None, receipt: Receipt,
                        positions: tuple[int, int]) -> Receipt:
        """`check_result` against `output` (None: pushed on, so only the receipt's own output
        hash is known), with a receipt that does not check turned into the hop's failure."""
        output_hash = receipt.body.output_hash if output is None else digest(output)
        try:
            self.check_result(hop, step, input_hash, output_hash, receipt, positions)
        except RemoteProtocolError as exc:
            raise HopViolation.at_step(hop.peer_id, step, exc) from exc
        return receipt

    async def _stop_pushing(self, failure: HopFailed) -> None:
        """Close the pushing route and go on relayed: route the whole model again (without
        the node at fault, if the fault is its own) and replay every past step to it."""
        step = self.next_step
        failed = next((hop for hop in self.hops if hop.peer_id == failure.peer_id), None)
        span = failed.span if failed is not None else (0, self.info.n_layers)
        logger.warning("session %s: pushing stopped at step %d: %s",
                       self.info.session_id.hex(), step, failure)
        for hop in self.hops:
            await self._close(hop)
        if not isinstance(failure, LinkFailed):
            self._exclude(failure)
        self.pushing = False
        self.hops = await self._open_segment(0, self.info.n_layers, replay_steps=step)
        self.failovers.append(FailoverEvent(
            step=step, peer_id=str(failure.peer_id), span=span, reason=failure.reason,
            replacement=tuple((str(h.peer_id), *h.span) for h in self.hops),
            replayed_steps=step))
        boundaries = {h.span[0] for h in self.hops}
        self.inputs = {b: kept for b, kept in self.inputs.items() if b in boundaries}

    async def _relayed_step(self, hidden: torch.Tensor) -> torch.Tensor:
        """One step, the client sending every hop its input and replacing failed hops."""
        step = self.next_step
        positions = (self.position, hidden.shape[1])
        self.step_positions.append(positions)
        index = 0
        while index < len(self.hops):
            hop = self.hops[index]
            kept = self.inputs.setdefault(hop.span[0], [])
            assert len(kept) >= step, "a route boundary is missing inputs of past steps"
            if len(kept) == step:
                kept.append(hidden)
            started = trio.current_time()
            try:
                output, receipt = await self._checked(hop, step, hidden, positions)
            except HopFailed as failure:
                await self._replace(index, step, failure)
                continue  # the first replacement hop starts where the failed one did
            self.latencies.add(hop.peer_id, trio.current_time() - started)
            self.receipts.append(receipt)
            hidden = output
            index += 1
        self.next_step += 1
        self.position += positions[1]
        return hidden

    async def _checked(self, hop: Hop, step: int, hidden: torch.Tensor,
                       positions: tuple[int, int]) -> tuple[torch.Tensor, Receipt]:
        """`run_hop`, with a receipt that does not check turned into the hop's failure."""
        try:
            return await self.run_hop(hop, step, hidden, positions)
        except RemoteProtocolError as exc:
            raise HopViolation.at_step(hop.peer_id, step, exc) from exc

    async def _replace(self, index: int, step: int, failure: HopFailed) -> None:
        """Swap ``hops[index]`` for a replayed replacement of its blocks."""
        hop = self.hops[index]
        logger.warning("session %s: hop %s on blocks [%d, %d) failed at step %d: %s",
                       self.info.session_id.hex(), hop.peer_id, *hop.span, step, failure.reason)
        await self._close(hop)
        self._exclude(failure)
        start, end = hop.span
        replacement = await self._open_segment(start, end, replay_steps=step)
        self.hops[index:index + 1] = replacement
        self.failovers.append(FailoverEvent(
            step=step, peer_id=str(hop.peer_id), span=hop.span, reason=failure.reason,
            replacement=tuple((str(h.peer_id), *h.span) for h in replacement),
            replayed_steps=step))
        boundaries = {h.span[0] for h in self.hops}
        self.inputs = {b: kept for b, kept in self.inputs.items() if b in boundaries}

    async def _open_segment(self, start: int, end: int, replay_steps: int) -> list[Hop]:
        """Open hops covering ``[start, end)`` and replay steps ``0 .. replay_steps - 1``.

        Raises:
            NoRoute: no remaining provider covers some of the blocks.
            SessionFailed: too many nodes failed.
        """
        while True:
            route = await self.router.route(start, end, frozenset(self.excluded))
            opened, failures = await self._open_all(route, push=self.pushing)
            if not failures:
                try:
                    self.inputs.update(await self._replay(opened, start, replay_steps))
                    return opened
                except HopFailed as replay_failure:
                    failures = [replay_failure]
            for hop in opened:
                await self._close(hop)
            for failure in failures:
                logger.warning("session %s: %s", self.info.session_id.hex(), failure)
                if isinstance(failure, LinkFailed):
                    self.pushing = False  # nobody to blame: open the route relayed
                else:
                    self._exclude(failure)

    async def _open_all(self, route: list[RouteHop],
                        push: bool) -> tuple[list[Hop], list[HopFailed]]:
        """Open every hop of `route` at once, linked to push to each other if `push`:
        (the hops opened, in route order; the failures).

        Each open is a round trip or more to another node; one after another, they would be
        most of the time a session takes to start.
        """
        opened: list[Hop | None] = [None] * len(route)
        failures: list[HopFailed] = []

        async def open_one(index: int) -> None:
            links: dict[str, RouteHop] = {}
            if push and index > 0:
                links["push_from"] = route[index - 1]
            if push and index + 1 < len(route):
                links["push_to"] = route[index + 1]
            try:
                opened[index] = await self.router.open(route[index], **links)
            except HopFailed as failure:
                failures.append(failure)

        async with trio.open_nursery() as nursery:
            for index in range(len(route)):
                nursery.start_soon(open_one, index)
        return [hop for hop in opened if hop is not None], failures

    async def _replay(self, hops: list[Hop], start: int,
                      steps: int) -> dict[int, list[torch.Tensor]]:
        """Replay past steps through fresh hops; returns the inputs kept at their inner boundaries.

        Raises:
            HopFailed: a hop failed or returned a receipt that does not check.
        """
        fresh: dict[int, list[torch.Tensor]] = {hop.span[0]: [] for hop in hops[1:]}
        for step in range(steps):
            hidden = self.inputs[start][step]
            for position, hop in enumerate(hops):
                if position:
                    fresh[hop.span[0]].append(hidden)
                hidden, receipt = await self._checked(hop, step, hidden,
                                                      self.step_positions[step])
                self.replay_receipts.append(receipt)
        return fresh

    def _exclude(self, failure: HopFailed) -> None:
        """Never use this node again in this session; give up after too many.

        Raises:
            SessionFailed: more than ``max_failovers`` nodes have failed.
        """
        self.excluded.add(failure.peer_id)
        self.failure_reasons.setdefault(failure.peer_id, failure.reason)
        if isinstance(failure, HopViolation):
            self.violations.setdefault(failure.peer_id, failure.reason)
        if len(self.excluded) > self.config.max_failovers:
            raise SessionFailed(f"gave up after {len(self.excluded)} nodes failed; "
                                f"the last: {failure}")

    async def _close(self, hop: Hop) -> None:
        with trio.move_on_after(self.config.close_timeout):
            await hop.aclose()


async def _own_fault(failure: LinkFailed, unread: Iterable[PushedHop], step: int,
                     like: torch.Tensor) -> HopFailed:
    """The failure to act on when a pushed step broke on `failure`: the first hop after it
    that failed on its own account (a dead node ends its stream at once, and each hop that
    waits for a push from a failed one answers ``push_failed`` at once), or `failure`."""
    for hop in unread:
        try:
            await hop.result(step, like)
        except LinkFailed:
            continue
        except HopFailed as own:
            return own
    return failure


def _pushed(hop: Hop) -> PushedHop:
    """A hop of a pushing route: one its router opened with push links."""
    assert isinstance(hop, PushedHop), "a pushing route's hop cannot take pushed steps"
    return hop
