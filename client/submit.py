"""`darwin submit`: one generation over the swarm, from a prompt to a verified trace.

Rules (``docs/architecture.md``, "The inference path"; README, "Command line"):
- The local checkpoint is read only for its config, tokenizer, embeddings and head
  (`ClientParts`) and its model id; the blocks run on the swarm's nodes.
- The client joins through the bootstrap addresses as a DHT client (it stores no records),
  discovers the model's providers, routes, and runs a `FailoverSession`; tokens are handed to
  `on_token` as they are chosen.
- The run ends with the trace verified as a whole (`verify_trace`); a trace that does not
  verify is an error, never a result.
- Generation stops after ``max_new_tokens`` or after the tokenizer's end-of-sequence token.
- Then the verification policy (`darwin.client.verification`) sends hops of the trace to
  verifiers: every hop on probation, others with a probability that falls with reputation.
- With a home, the client first catches up on the verdicts it missed from one or two of the
  nodes it joined through (`catch_up_from`, bounded, failures skipped), then reads its
  standing, which routing uses (banned keys are never routed to).
- With a home, what the session saw goes into the ledger once it has ended, off the decode
  path (`record_generation`, ``specs/ledger.md`` §7): successes, failures, protocol violations
  and each node's median step latency.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio
from rich.table import Table

from darwin.client.client_ledger import (
    Observations,
    catch_up_from,
    record_generation,
    standing,
)
from darwin.client.detokenize import decode_text
from darwin.client.failover import FailoverEvent, FailoverSession
from darwin.client.generation import generate
from darwin.client.sampling import SamplingConfig
from darwin.client.swarm import SwarmClient, SwarmConfig
from darwin.client.verification import HopCheck, HopVerifier, VerificationConfig, hops_to_check
from darwin.gossip.fraud_notices import proof_checker
from darwin.ledger import Score
from darwin.model import Checkpoint, ClientParts, load_tokenizer, model_id
from darwin.model.torch_wire import torch_dtype
from darwin.net.host import Host, HostConfig, open_host
from darwin.protocol import Identity, ModelId, Trace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmitConfig:
    """One generation request."""

    model: Path  # local checkpoint directory: config, tokenizer, embeddings, head
    prompt: str
    bootstrap: tuple[str, ...]  # /p2p multiaddrs of swarm peers to join through
    home: Path | None = None  # keeps the client's identity; None: a throwaway identity
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    listen: str = "/ip4/127.0.0.1/tcp/0"  # the client only dials out; it listens for libp2p
    verification: VerificationConfig = field(default_factory=VerificationConfig)


@dataclass(frozen=True)
class TraceHop:
    """One node's part of a trace: its blocks and the steps it signed."""

    peer_id: str
    start: int
    end: int
    receipts: int
    first_step: int
    end_step: int  # one past the last step it signed

    def to_json(self) -> dict[str, object]:
        return {"peer_id": self.peer_id, "start": self.start, "end": self.end,
                "receipts": self.receipts, "steps": [self.first_step, self.end_step]}


@dataclass(frozen=True)
class SubmitResult:
    """What a generation produced, and the evidence for it."""

    model_id: ModelId
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    route: list[tuple[str, int, int]]  # (peer id, start, end) of the hops at the end
    trace: Trace  # verified
    steps: int
    failovers: list[FailoverEvent]
    verification: list[HopCheck] = field(default_factory=list)  # the hops sent to verifiers

    def trace_hops(self) -> list[TraceHop]:
        """Each (node, span) that signed receipts in the trace, in order of first appearance."""
        steps: dict[tuple[str, int, int], list[int]] = {}
        for receipt in self.trace.receipts:
            body = receipt.body
            steps.setdefault((str(body.node_id), body.span_start, body.span_end),
                             []).append(body.step)
        return [TraceHop(peer, start, end, len(seen), seen[0], seen[-1] + 1)
                for (peer, start, end), seen in steps.items()]

    def to_json(self) -> dict[str, object]:
        """The ``--json`` object."""
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "prompt_ids": self.prompt_ids,
            "model_id": self.model_id.hex(),
            "route": [{"peer_id": p, "start": a, "end": b} for p, a, b in self.route],
            "trace": {"receipts": len(self.trace.receipts), "verified": True,
                      "steps": self.steps,
                      "hops": [hop.to_json() for hop in self.trace_hops()]},
            "failovers": [event.to_json() for event in self.failovers],
            "verification": [check.to_json() for check in self.verification],
        }


class Submission:
    """A prepared generation: the local parts are read at construction, the swarm in `run`."""

    def __init__(self, config: SubmitConfig) -> None:
        """Read the checkpoint's config, tokenizer and model id.

        Raises:
            CheckpointError: the directory is not a usable checkpoint.
            ValueError: the prompt is empty once tokenized.
        """
        self.config = config
        self.checkpoint = Checkpoint.open(config.model)
        self.model_id = ModelId(model_id(self.checkpoint))
        self.tokenizer = load_tokenizer(config.model)
        self.prompt_ids: list[int] = list(self.tokenizer(config.prompt)["input_ids"])
        if not self.prompt_ids:
            raise ValueError("the prompt is empty")
        self.session: FailoverSession | None = None  # while `run` runs

    @property
    def n_layers(self) -> int:
        return self.checkpoint.n_layers

    def identity(self) -> Identity:
        if self.config.home is None:
            return Identity.generate()
        from darwin.home import load_or_create_identity

        return load_or_create_identity(self.config.home)

    async def run(self, on_token: Callable[[int], None] | None = None) -> SubmitResult:
        """Join the swarm, generate, verify the trace.

        Raises:
            BootstrapError: no bootstrap peer could be reached.
            NoRoute: some blocks have no working provider (the message names them).
            SessionFailed, StepRefused: the session could not go on.
            TraceError: the trace does not verify.
        """
        config = self.config
        host_config = HostConfig(listen=(config.listen,), bootstrap=config.bootstrap,
                                 dht_server=False)
        identity = self.identity()
        scores: dict[str, Score] = {}
        async with open_host(identity.seed, host_config) as host:
            if config.home is not None:
                await catch_up_from(host, config.home, identity, host.connected_peers(),
                                    proof_checker(self.checkpoint, self.model_id))
                scores = {str(peer): score
                          for peer, score in standing(config.home, identity).items()}
            client = await SwarmClient.connect(host, self.model_id, self.n_layers, config.swarm,
                                               scores)
            parts = await trio.to_thread.run_sync(
                lambda: ClientParts.load(self.checkpoint, dtype=torch_dtype(client.dtype)))
            sampling = config.sampling
            if sampling.stop_token_id is None and self.tokenizer.eos_token_id is not None:
                sampling = dataclasses.replace(sampling,
                                               stop_token_id=int(self.tokenizer.eos_token_id))
            max_length = len(self.prompt_ids) + sampling.max_new_tokens
            self.session = session = await client.open_session(max_length)
            try:
                tokens = await generate(parts, session, self.prompt_ids, sampling, on_token)
            finally:
                await session.aclose()
                self._record(identity, session)
            trace = session.trace()
            trace.verify(model_id=self.model_id, n_layers=self.n_layers,
                         session_id=session.info.session_id)
            result = SubmitResult(
                model_id=self.model_id, prompt_ids=self.prompt_ids, token_ids=tokens,
                text=decode_text(self.tokenizer, tokens), route=route_of(session), trace=trace,
                steps=session.next_step, failovers=list(session.failovers))
            checks = await self._verify(host, client, session, result, scores)
        return dataclasses.replace(result, verification=checks)

    async def _verify(self, host: Host, client: SwarmClient, session: FailoverSession,
                      result: SubmitResult, scores: dict[str, Score]) -> list[HopCheck]:
        """Send the hops the policy draws to verifiers (see `darwin.client.verification`)."""
        config = self.config.verification
        hops = [(hop.peer_id, hop.start, hop.end) for hop in result.trace_hops()]
        chosen = hops_to_check(hops, scores, config.rate, client.random)
        if not chosen:
            return []
        addrs = {peer: offer.addrs for peer, offer in client.offers.items()}
        receipts = [*result.trace.receipts, *session.replay_receipts]
        verifier = HopVerifier(host, self.model_id, self.checkpoint, self.config.home, config)
        return await verifier.check(chosen, receipts, addrs)


    def _record(self, identity: Identity, session: FailoverSession) -> None:
        """Write what the session showed into the client's ledger (when it has a home)."""
        if self.config.home is None:
            return
        served = [str(receipt.body.node_id) for receipt in session.receipts]
        # The excluded nodes: a failover for a link fault (`LinkFailed`) excluded nobody and
        # blames nobody, so it is not recorded against the hop that reported it.
        record_generation(self.config.home, identity, Observations(
            served, session.failure_reasons, session.violations,
            session.latencies.medians_ms()))


def route_of(session: FailoverSession) -> list[tuple[str, int, int]]:
    """The session's current hops as (peer id, start, end)."""
    return [(str(hop.peer_id), *hop.span) for hop in session.hops]




def route_table(result: SubmitResult) -> Table:
    """The hops that signed the trace: blocks, node, receipts and steps."""
    table = Table(title="route (as signed in the trace)")
    for column in ("hop", "blocks", "node", "receipts", "steps"):
        table.add_column(column)
    for index, hop in enumerate(result.trace_hops()):
        table.add_row(str(index), f"[{hop.start}, {hop.end})", hop.peer_id, str(hop.receipts),
                      f"{hop.first_step}..{hop.end_step - 1}")
    return table


def verification_summary(result: SubmitResult) -> str:
    """One line (rich markup) per hop sent to a verifier, or a line saying none was."""
    if not result.verification:
        return "[dim]verification: no hop drawn for checking this time[/dim]"
    colours = {"pass": "green", "fail": "red", "unresponsive": "yellow", "error": "yellow"}
    lines = []
    for check in result.verification:
        colour = colours.get(check.outcome, "white")
        where = "" if check.layer is None else f" at layer {check.layer}, step {check.step}"
        line = (f"[{colour}]verification {check.outcome}[/{colour}]: {check.peer_id[:12]}… "
                f"on blocks [{check.start}, {check.end}){where}")
        if check.verifier:
            line += f", verifier {check.verifier[:12]}…"
        if check.outcome in ("fail", "error", "unresponsive") and check.reason:
            line += f" ({check.reason[:160]})"
        if check.fraud_proof is not None:
            line += (f"\n  fraud proof ({check.proof_check} by this client): {check.fraud_proof}"
                     f"\n  re-check: darwin verify-proof {check.fraud_proof} --model MODEL")
        lines.append(line)
    return "\n".join(lines)


def trace_summary(result: SubmitResult) -> str:
    """One line (rich markup) saying what was verified, and one per failover."""
    hops = len({(r.body.node_id, r.body.span_start) for r in result.trace.receipts})
    lines = [f"[green]trace verified[/green]: {len(result.trace.receipts)} signed receipts, "
             f"hash-linked across {hops} hops and {result.steps} steps"]
    for event in result.failovers:
        replacement = ", ".join(f"{p[:12]}… [{a}, {b})" for p, a, b in event.replacement)
        lines.append(f"[yellow]failover[/yellow] at step {event.step}: {event.peer_id[:12]}… "
                     f"on blocks [{event.span[0]}, {event.span[1]}) failed ({event.reason}); "
                     f"replaced by {replacement}, {event.replayed_steps} steps replayed")
    return "\n".join(lines)
