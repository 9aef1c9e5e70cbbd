"""A run's results: ``metrics.json`` and the table printed beside the baselines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .metrics import Metrics
from .scenario import Scenario

__all__ = ["print_table", "write_json"]

_COLUMNS = (  # (summary key, header, format)
    ("touched_share_steady", "touching a cheater\n(steady)", "{:.2%}"),
    ("corrupted_share_steady", "inauthentic\n(steady)", "{:.2%}"),
    ("verification_cost_steady", "verification cost\n(steady)", "{:.2%}"),
    ("detection_delay_s_median", "detection delay\nmedian s", "{:.0f}"),
    ("cheaters_caught", "caught", "{}"),
    ("false_bans", "honest\nbanned", "{}"),
    ("latency_s_mean", "latency s", "{:.2f}"),
    ("tokens_per_s", "tokens/s", "{:.1f}"),
    ("slow_traffic_share", "hops to\nslow nodes", "{:.2%}"),
    ("no_route", "no route", "{}"),
)


def _cell(value: object, form: str) -> str:
    return "-" if value is None else form.format(value)


def print_table(scenario: Scenario, results: Mapping[str, Metrics], slow_share: float,
                console: Console) -> None:
    table = Table(title=f"{scenario.name}: {scenario.nodes} nodes, {scenario.requests} requests, "
                        f"seed {scenario.seed}")
    table.add_column("policy")
    for _, header, _ in _COLUMNS:
        table.add_column(header, justify="right")
    for policy, metrics in results.items():
        summary = metrics.summary(slow_share)
        table.add_row(policy, *(_cell(summary[key], form) for key, _, form in _COLUMNS))
    console.print(table)


def write_json(path: Path, scenario: Scenario, results: Mapping[str, Metrics],
               slow_share: float, elapsed_s: Mapping[str, float]) -> None:
    document = {
        "scenario": {"name": scenario.name, "seed": scenario.seed, "nodes": scenario.nodes,
                     "clients": scenario.clients, "requests": scenario.requests,
                     "duration_s": scenario.duration_s,
                     "adversary": str(scenario.adversary.kind),
                     "adversary_share": scenario.adversary.share},
        "elapsed_s": dict(elapsed_s),
        "policies": {policy: metrics.to_json(slow_share) for policy, metrics in results.items()},
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
