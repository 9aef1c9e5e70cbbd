"""``darwin simulate SCENARIO.toml [--out DIR] [--nodes N] [--requests R] [--seed S]``
(also ``--clients``, ``--duration``, ``--policies``).

Runs the scenario once per policy (same world, same seed), prints the table, and writes
``metrics.json`` and the PNG plots to ``--out``. A bad scenario is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

from .engine import run_policy
from .metrics import Metrics
from .plots import write_plots
from .report import print_table, write_json
from .scenario import AdversaryKind, Policy, Scenario, ScenarioError, load_scenario

__all__ = ["main", "simulate"]


def simulate(scenario: Scenario, out: Path, console: Console) -> dict[str, Metrics]:
    """Every policy of ``scenario``; writes ``out/metrics.json`` and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Metrics] = {}
    elapsed: dict[str, float] = {}
    for policy in scenario.policies:
        started = time.perf_counter()
        results[str(policy)] = run_policy(scenario, policy)
        elapsed[str(policy)] = time.perf_counter() - started
        console.print(f"{policy}: {elapsed[str(policy)]:.1f} s")
    slow = scenario.adversary.share if scenario.adversary.kind == AdversaryKind.SLOW else 0.0
    print_table(scenario, results, slow, console)
    write_json(out / "metrics.json", scenario, results, slow, elapsed)
    write_plots(out, results, scenario.duration_s)
    console.print(f"wrote {out / 'metrics.json'} and the plots")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="darwin simulate", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path, help="a scenario file (simulations/scenarios/)")
    parser.add_argument("--out", type=Path, default=Path("simulation-out"))
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--duration", type=float, help="simulated seconds the requests span")
    parser.add_argument("--policies", nargs="+", choices=[str(p) for p in Policy])
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=170)
    try:
        scenario = load_scenario(args.scenario).with_overrides(
            nodes=args.nodes, clients=args.clients, requests=args.requests, seed=args.seed,
            duration_s=args.duration,
            policies=None if args.policies is None else tuple(Policy(p) for p in args.policies))
    except ScenarioError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    simulate(scenario, args.out, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
