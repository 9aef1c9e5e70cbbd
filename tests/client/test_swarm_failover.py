"""Failover without a network: in-process hops that die or lie, replaced and replayed exactly.

The router here serves hops from committed spans in this process; faults are injected per peer
at a chosen step, so every case is deterministic. The multi-process version of the same
guarantees is in ``test_swarm_e2e.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import trio

from darwin.client.failover import (
    FailoverConfig,
    FailoverSession,
    SessionFailed,
    find_subroute,
)
from darwin.client.generation import generate
from darwin.client.route import Hop as RouteHop
from darwin.client.route import NoRoute, Provider
from darwin.client.sampling import SamplingConfig
from darwin.client.session import Hop, HopFailed, SessionInfo, StepRefused
from darwin.model import Checkpoint, ClientParts, SpanRunner
from darwin.node.serving.committed_span import CommitConfig, CommittedSpan
from darwin.node.serving.local_hop import LocalHop
from darwin.protocol import Identity, ModelId, PeerId, Receipt, new_session_id
from darwin.verifier import hop_histories

MODEL_ID = ModelId(b"\x07" * 32)
PROMPT = [5, 17, 42, 99, 123, 7, 250, 31]
NEW_TOKENS = 8


@dataclass
class _Wrapped:
    """A hop around an `inner` one: the same node and span."""

    inner: Hop

    @property
    def span(self) -> tuple[int, int]:
        return self.inner.span

    @property
    def peer_id(self) -> PeerId:
        return self.inner.peer_id

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class _FaultyHop(_Wrapped):
    """A local hop that, from step `at` on, is gone, lies about its output, or refuses."""

    at: int
    mode: str  # "gone" | "tamper" | "refuse"

    async def step(self, step: int, hidden: torch.Tensor) -> tuple[torch.Tensor, Receipt]:
        if step >= self.at and self.mode == "gone":
            raise HopFailed(self.peer_id, "stream closed")
        if step >= self.at and self.mode == "refuse":
            raise StepRefused("bad_request")
        output, receipt = await self.inner.step(step, hidden)
        if step >= self.at and self.mode == "tamper":
            output = output + 1e-3
        return output, receipt


@dataclass
class _LinkedHop(_Wrapped):
    """A local hop of a pushing route: its pushed input is what the hop of `source` pushed;
    with `pushes_on` it answers the client with its receipt alone. From step
    `equivocate_at` on, it pushes something else than it signed for the client."""

    router: _LocalRouter
    source: str | None  # the previous hop's peer
    pushes_on: bool
    equivocate_at: int | None = None
    pushed: torch.Tensor | None = None  # what it pushed at its latest step
    sent: torch.Tensor | None = None  # what the client sent it (the first hop)

    async def step(self, step: int, hidden: torch.Tensor) -> tuple[torch.Tensor, Receipt]:
        output, receipt = await self.inner.step(step, hidden)
        lie = self.equivocate_at is not None and step >= self.equivocate_at
        self.pushed = output + 1e-3 if lie else output
        return output, receipt

    async def request(self, step: int, hidden: torch.Tensor) -> None:
        self.sent = hidden

    async def request_pushed(self, step: int, like: torch.Tensor) -> None:
        pass  # the pushed input is read when the result is

    async def result(self, step: int,
                     like: torch.Tensor) -> tuple[torch.Tensor | None, Receipt]:
        hidden = self.sent if self.source is None else self.router.linked[self.source].pushed
        assert hidden is not None
        output, receipt = await self.step(step, hidden)
        return (None if self.pushes_on else output), receipt


@dataclass
class _LocalRouter:
    """Providers as (identity, span) in this process; `faults` maps a peer to (step, mode).
    With `pushes`, hops opened with links push in memory (`_LinkedHop`)."""

    checkpoint: Checkpoint
    session_id: bytes
    spans: dict[str, tuple[int, int]]
    identities: dict[str, Identity]
    faults: dict[str, tuple[int, str]] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    opened: list[tuple[str, int, int]] = field(default_factory=list)
    pushes: bool = False
    equivocators: dict[str, int] = field(default_factory=dict)  # peer -> from which step
    linked: dict[str, _LinkedHop] = field(default_factory=dict)

    async def route(self, start: int, end: int, exclude: frozenset[str]) -> list[RouteHop]:
        providers = [Provider(peer, a, b) for peer, (a, b) in self.spans.items()]
        return find_subroute(providers, start, end, exclude=exclude)

    async def open(self, hop: RouteHop, push_from: RouteHop | None = None,
                   push_to: RouteHop | None = None) -> Hop:
        unlinked = await self._open(hop)
        if push_from is None and push_to is None:
            return unlinked
        assert self.pushes, "asked to push without pushes"
        peer = hop.provider.peer_id
        linked = self.linked[peer] = _LinkedHop(
            unlinked, self, None if push_from is None else push_from.provider.peer_id,
            push_to is not None, self.equivocators.get(peer))
        return linked

    async def _open(self, hop: RouteHop) -> Hop:
        peer = hop.provider.peer_id
        if peer in self.unreachable:
            raise HopFailed(peer, "connection refused")
        self.opened.append((peer, hop.start, hop.end))
        span = CommittedSpan(SpanRunner.load(self.checkpoint, hop.start, hop.end),
                             self.identities[peer], CommitConfig(MODEL_ID, retention_s=60))
        local = LocalHop(span, self.session_id, max_length=64)  # type: ignore[arg-type]
        if peer in self.faults:
            at, mode = self.faults[peer]
            return _FaultyHop(local, at, mode)
        return local


def _router(checkpoint: Checkpoint, spans: dict[str, tuple[int, int]]
            ) -> tuple[_LocalRouter, SessionInfo]:
    identities = {name: Identity.from_seed(bytes([i + 1]) * 32) for i, name in enumerate(spans)}
    keyed = {identities[name].peer_id: span for name, span in spans.items()}
    info = SessionInfo(model_id=MODEL_ID, n_layers=checkpoint.n_layers,
                       session_id=new_session_id())
    by_peer = {identities[name].peer_id: identities[name] for name in spans}
    return _LocalRouter(checkpoint, info.session_id, keyed, by_peer), info


def _peer(router: _LocalRouter, index: int) -> str:
    return list(router.spans)[index]


async def _generate(checkpoint: Checkpoint, router: _LocalRouter, info: SessionInfo,
                    config: FailoverConfig | None = None
                    ) -> tuple[list[int], FailoverSession]:
    session = await FailoverSession.open(info, router, config or FailoverConfig())
    tokens = await generate(ClientParts.load(checkpoint), session, PROMPT,
                            SamplingConfig(max_new_tokens=NEW_TOKENS))
    await session.aclose()
    return tokens, session


async def _reference(checkpoint: Checkpoint) -> list[int]:
    router, info = _router(checkpoint, {"all": (0, checkpoint.n_layers)})
    tokens, _ = await _generate(checkpoint, router, info)
    return tokens


def _verify(session: FailoverSession) -> None:
    session.trace().verify(model_id=MODEL_ID, n_layers=session.info.n_layers,
                           session_id=session.info.session_id)


def test_find_subroute_names_missing_blocks_in_model_numbers() -> None:
    providers = [Provider("a", 0, 2), Provider("b", 1, 4), Provider("c", 3, 6)]
    route = find_subroute(providers, 2, 6)
    assert [h.provider.peer_id for h in route] == ["b", "c"]
    assert (route[0].start, route[0].end, route[1].end) == (2, route[1].start, 6)
    assert route[0].provider.span_start == 1  # the provider as offered, not clipped
    with pytest.raises(NoRoute, match=r"no available provider serves blocks \[4, 6\)"):
        find_subroute(providers, 2, 6, exclude=frozenset({"c"}))


@pytest.mark.parametrize("mode", ["gone", "tamper"])
async def test_a_failed_hop_is_replaced_and_replayed_with_identical_output(
        tiny_llama: Path, mode: str) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    reference = await _reference(checkpoint)
    router, info = _router(checkpoint, {"a": (0, 2), "b": (2, 4), "b2": (2, 4)})
    session = await FailoverSession.open(info, router)
    serving = str(session.hops[1].peer_id)
    router.faults[serving] = (3, mode)
    session.hops[1] = await router.open(RouteHop(Provider(serving, 2, 4), 2, 4))
    router.opened.clear()

    tokens = await generate(ClientParts.load(checkpoint), session, PROMPT,
                            SamplingConfig(max_new_tokens=NEW_TOKENS))

    assert tokens == reference
    [event] = session.failovers
    assert (event.step, event.peer_id, event.span, event.replayed_steps) == (3, serving, (2, 4), 3)
    assert router.opened == [(event.replacement[0][0], 2, 4)]
    assert session.excluded == {serving}
    # A lie about the output is the node's own protocol violation; a closed stream is not.
    assert session.violations == ({serving: event.reason} if mode == "tamper" else {})
    # Every node that served live steps has a latency; the failed one for its steps 0..2.
    latencies = session.latencies.medians_ms()
    assert set(latencies) == {_peer(router, 0), serving, event.replacement[0][0]}
    assert all(isinstance(ms, int) and ms >= 0 for ms in latencies.values())
    _verify(session)  # replayed receipts stayed out: one chain per step
    assert len(session.receipts) == 2 * NEW_TOKENS
    # ...but are kept apart, so a verifier holds the replacement's steps 0..k (any k)
    replacement = event.replacement[0][0]
    assert [r.body.step for r in session.replay_receipts] == [0, 1, 2]
    histories = hop_histories([*session.receipts, *session.replay_receipts])
    [history] = [h for h in histories if h.node_id == replacement]
    assert [r.body.step for r in history.receipts] == list(range(NEW_TOKENS))


async def test_a_replacement_may_cut_the_blocks_differently(tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    reference = await _reference(checkpoint)
    router, info = _router(checkpoint, {"a": (0, 2), "b": (2, 4), "c": (2, 3), "d": (3, 4)})
    b = _peer(router, 1)
    router.faults[b] = (2, "gone")

    tokens, session = await _generate(checkpoint, router, info)

    assert tokens == reference
    [event] = session.failovers
    assert event.span == (2, 4)
    assert [(a, z) for _, a, z in event.replacement] == [(2, 3), (3, 4)]
    assert [h.span for h in session.hops] == [(0, 2), (2, 3), (3, 4)]
    assert sorted(session.inputs) == [0, 2, 3]  # inputs kept exactly at the route's boundaries
    _verify(session)


async def test_a_replacement_that_fails_during_replay_is_replaced_too(tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    reference = await _reference(checkpoint)
    router, info = _router(checkpoint, {"a": (0, 4), "b": (0, 4), "c": (0, 4)})
    first, second = _peer(router, 0), _peer(router, 1)
    router.faults = {first: (4, "gone"), second: (1, "gone")}

    tokens, session = await _generate(checkpoint, router, info)

    assert tokens == reference
    [event] = session.failovers
    assert event.peer_id == first and event.replacement == ((_peer(router, 2), 0, 4),)
    assert session.excluded == {first, second}  # the second failed during the replay
    _verify(session)


async def test_unreachable_nodes_are_skipped_when_the_route_is_opened(tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    router, info = _router(checkpoint, {"a": (0, 4), "b": (0, 4)})
    router.unreachable = {_peer(router, 0), _peer(router, 1)}
    with pytest.raises(NoRoute, match=r"no available provider serves blocks \[0, 4\)"):
        await FailoverSession.open(info, router)
    router.unreachable = {_peer(router, 0)}
    session = await FailoverSession.open(info, router)
    assert [str(h.peer_id) for h in session.hops] == [_peer(router, 1)]


async def test_the_hops_of_a_route_are_opened_at_once(tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    router, info = _router(checkpoint, {"a": (0, 2), "b": (2, 4)})
    started, everyone_started = 0, trio.Event()
    plain_open = router.open

    async def open_when_all_started(hop: RouteHop) -> Hop:
        nonlocal started
        started += 1
        if started == 2:
            everyone_started.set()
        await everyone_started.wait()  # one open at a time would never get here
        return await plain_open(hop)

    router.open = open_when_all_started  # type: ignore[method-assign]
    with trio.fail_after(10):
        session = await FailoverSession.open(info, router)
    assert [h.span for h in session.hops] == [(0, 2), (2, 4)]


async def test_every_hop_that_fails_to_open_is_excluded_at_once(tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    router, info = _router(checkpoint, {"a": (0, 2), "b": (2, 4), "c": (0, 2), "d": (2, 4)})
    first = {hop.provider.peer_id for hop in await router.route(0, 4, frozenset())}
    router.unreachable = set(first)

    session = await FailoverSession.open(info, router)

    assert session.excluded == first
    assert {str(h.peer_id) for h in session.hops} == set(router.spans) - first


async def test_a_pushing_route_gives_the_relayed_output_and_keeps_only_the_first_inputs(
        tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    reference = await _reference(checkpoint)
    router, info = _router(checkpoint, {"a": (0, 2), "b": (2, 4)})
    router.pushes = True

    tokens, session = await _generate(checkpoint, router, info)

    assert tokens == reference and session.pushing and session.failovers == []
    assert set(session.latencies.medians_ms()) == set(router.spans)  # each hop's share
    assert {b: len(kept) for b, kept in session.inputs.items()} == {0: NEW_TOKENS, 2: 0}
    _verify(session)


async def test_a_push_that_is_not_what_the_client_got_stops_pushing_and_excludes_nobody(
        tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    reference = await _reference(checkpoint)
    router, info = _router(checkpoint, {"a": (0, 2), "b": (2, 4)})
    router.pushes = True
    router.equivocators = {_peer(router, 0): 3}  # "a" or "b" may be lying: nobody can tell

    tokens, session = await _generate(checkpoint, router, info)

    assert tokens == reference and not session.pushing
    [event] = session.failovers
    assert (event.step, event.peer_id, event.replayed_steps) == (3, _peer(router, 1), 3)
    assert "is not the output" in event.reason and session.excluded == set()
    assert session.violations == {}  # nobody's fault, nobody's violation
    assert [(a, b) for _, a, b in event.replacement] == [(0, 2), (2, 4)]
    _verify(session)


async def test_a_hop_that_dies_on_a_pushing_route_is_excluded_and_the_model_rerouted_relayed(
        tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    reference = await _reference(checkpoint)
    router, info = _router(checkpoint, {"a": (0, 2), "b": (2, 4), "b2": (2, 4)})
    router.pushes = True
    first = (await router.route(0, 4, frozenset()))[1].provider.peer_id
    router.faults[first] = (3, "gone")

    tokens, session = await _generate(checkpoint, router, info)

    assert tokens == reference and not session.pushing
    [event] = session.failovers
    assert (event.step, event.peer_id, event.span, event.replayed_steps) == (3, first, (2, 4), 3)
    assert session.excluded == {first} and first not in {p for p, _, _ in event.replacement}
    assert len(session.replay_receipts) == 2 * 3  # both hops of the new route replayed 3 steps
    _verify(session)


async def test_without_a_replica_the_error_names_the_missing_blocks(tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    router, info = _router(checkpoint, {"a": (0, 2), "b": (2, 4)})
    router.faults[_peer(router, 1)] = (2, "gone")
    with pytest.raises(NoRoute, match=r"no available provider serves blocks \[2, 4\)"):
        await _generate(checkpoint, router, info)


async def test_a_session_gives_up_after_max_failovers(tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    router, info = _router(checkpoint, {str(i): (0, 4) for i in range(4)})
    router.faults = {peer: (1, "gone") for peer in router.spans}
    with pytest.raises(SessionFailed, match="gave up after 3 nodes failed"):
        await _generate(checkpoint, router, info, FailoverConfig(max_failovers=2))


async def test_a_refused_step_is_not_failed_over(tiny_llama: Path) -> None:
    checkpoint = Checkpoint.open(tiny_llama)
    router, info = _router(checkpoint, {"a": (0, 4), "b": (0, 4)})
    router.faults = {peer: (1, "refuse") for peer in router.spans}
    with pytest.raises(StepRefused):
        await _generate(checkpoint, router, info)
