"""Reduced, seeded forms of the scenarios in simulations/scenarios/ (each run once, cached)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from darwin.simulations.engine import run_policy
from darwin.simulations.scenario import Policy, Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"
# Small enough for the suite, with enough requests per node for a cheater to meet the checks;
# standings re-read every 10 requests (nearer the real client, which re-reads before each).
REDUCED = {"nodes": 150, "clients": 80, "requests": 6000, "duration_s": 1800.0,
           "refresh_requests": 10}


def reduced(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.toml").with_overrides(**REDUCED)


@cache
def summary(name: str, policy: Policy) -> dict[str, float | int | None]:
    scenario = reduced(name)
    slow = scenario.adversary.share if scenario.adversary.kind == "slow" else 0.0
    return run_policy(scenario, policy).summary(slow)
