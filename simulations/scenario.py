"""A scenario: the world, its adversary and the run's size, read from a TOML file.

Every field has a default, so a scenario file names only what makes it different; the command
line may override the size (``--nodes``, ``--requests``, ``--seed``). Unknown keys are errors,
so a typo never silently runs the default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["Adversary", "AdversaryKind", "Policy", "Scenario", "ScenarioError", "load_scenario"]


class ScenarioError(ValueError):
    """A scenario file that cannot be read or holds an invalid value."""


class Policy(StrEnum):
    """How clients choose and check nodes; every policy runs on the same world and seed."""

    TRUST_ALL = "trust-all"  # Petals: route by latency, verify nothing
    EIGENTRUST = "eigentrust"  # transitive trust from clients' opinions, no verification
    VERIFY_ONLY = "verify-only"  # a fixed verification rate, bans on proof, no reputation
    DARWIN = "darwin"  # the ledger's reputation, probation, adaptive verification


class AdversaryKind(StrEnum):
    NONE = "none"
    ALWAYS = "always"  # cheats on every step
    RARE = "rare"  # cheats on `step_rate` of its steps
    TARGETED = "targeted"  # cheats only for some clients, once it looks trusted to them
    COLLUDING = "colluding"  # cheats; its verifiers pass allies and accuse honest nodes
    SYBIL = "sybil"  # waves of fresh cheating keys
    WHITEWASH = "whitewash"  # a banned cheater rejoins under a new key
    SLOW = "slow"  # honest but slow: must lose traffic, never be banned


@dataclass(frozen=True)
class Adversary:
    kind: AdversaryKind = AdversaryKind.NONE
    share: float = 0.0  # of the initial nodes
    step_rate: float = 1.0  # share of its steps a cheater cheats on
    cheating_layers: int = 1  # layers of its span it corrupts on a cheated step (1: hardest)
    target_share: float = 0.2  # targeted: share of clients it cheats
    patience: int = 3  # targeted: requests served honestly to a client before cheating it
    lie_rate: float = 0.5  # colluding: chance its verifier falsely fails an honest node
    waves: int = 3  # sybil: waves of fresh keys, evenly spaced in the run
    wave_share: float = 0.1  # sybil: each wave's size, as a share of the initial nodes
    rejoin_s: float = 60.0  # whitewash: delay before a banned key comes back under a new one
    slowdown: float = 5.0  # slow: compute time multiplier


@dataclass(frozen=True)
class Scenario:
    name: str = "scenario"
    seed: int = 1
    nodes: int = 10_000
    clients: int = 2_000
    requests: int = 1_000_000
    duration_s: float = 3_600.0  # simulated time over which requests arrive
    n_layers: int = 32
    prompt_tokens: int = 64
    steps: int = 32  # tokens generated per request
    hidden_bytes: int = 8_192  # activations sent per token per hop
    blocks: tuple[int, int] = (4, 12)  # blocks a node's memory holds (uniform range)
    speed: tuple[float, float] = (0.5, 2.0)  # relative compute speed (log-uniform)
    bandwidth_mbps: tuple[float, float] = (20.0, 1000.0)  # (log-uniform)
    capacity: int = 8  # concurrent sessions at which a node's load is 1
    block_ms: float = 5.0  # one block, one token, speed 1, unloaded
    verifier_share: float = 0.05  # of nodes that also verify
    verify_delay_s: tuple[float, float] = (1.0, 10.0)  # request end -> verdict
    known_providers: int = 48  # providers a client learns from one DHT lookup
    refresh_requests: int = 50  # a client re-reads its ledger's standing every N requests
    churn_per_hour: float = 0.1  # share of nodes that leave per hour (half of them crash)
    gossip_delay_s: tuple[float, float] = (1.0, 10.0)
    gossip_loss: float = 0.05
    catch_up_s: float = 300.0  # what gossip lost, ledger sync brings this much later
    gossip_fanout: int = 2  # clients each verifier's verdict reaches by gossip
    verify_only_rate: float = 0.1  # the verify-only baseline's fixed rate
    eigentrust_detect: float = 0.5  # chance a user notices an inauthentic answer unaided
    buckets: int = 40  # time series resolution
    policies: tuple[Policy, ...] = tuple(Policy)
    adversary: Adversary = field(default_factory=Adversary)

    def __post_init__(self) -> None:
        if self.nodes < 2 or self.clients < 1 or self.requests < 1 or self.duration_s <= 0:
            raise ScenarioError("need nodes >= 2, clients >= 1, requests >= 1, duration_s > 0")
        if not 1 <= self.blocks[0] <= self.blocks[1] or self.n_layers < 1:
            raise ScenarioError("need 1 <= blocks[0] <= blocks[1] and n_layers >= 1")
        shares = (self.adversary.share, self.verifier_share, self.gossip_loss,
                  self.adversary.step_rate, self.eigentrust_detect, self.verify_only_rate)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ScenarioError("shares, rates and losses must be in [0, 1]")

    def with_overrides(self, **overrides: Any) -> Scenario:
        """This scenario with the given fields replaced (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


_TUPLES = {f.name for f in dataclasses.fields(Scenario) if str(f.type).startswith("tuple")}


def _build(cls: type[Any], table: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {unknown}")
    return dict(table)


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file.

    Raises:
        ScenarioError: the file is missing, not TOML, or holds an unknown key or bad value.
    """
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    fields = _build(Scenario, table, str(path))
    try:
        adversary = fields.pop("adversary", {})
        fields["adversary"] = Adversary(**_build(Adversary, adversary, f"{path} [adversary]"))
        for name in _TUPLES & set(fields):
            fields[name] = tuple(fields[name])
        if "policies" in fields:
            fields["policies"] = tuple(Policy(p) for p in fields["policies"])
        fields["adversary"] = dataclasses.replace(
            fields["adversary"], kind=AdversaryKind(fields["adversary"].kind))
        fields.setdefault("name", path.stem)
        return Scenario(**fields)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
