"""A run is a pure function of its scenario and seed; scenario files are checked; the command
writes its table, metrics.json and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darwin.simulations.cli import main
from darwin.simulations.engine import run_policy
from darwin.simulations.scenario import Policy, ScenarioError, load_scenario

from .conftest import SCENARIOS, reduced

TINY = {"nodes": 60, "clients": 10, "requests": 600, "duration_s": 600.0}


@pytest.mark.parametrize("policy", list(Policy))
def test_the_same_seed_gives_the_same_metrics(policy: Policy) -> None:
    scenario = reduced("colluding-verifiers").with_overrides(**TINY)
    first, second = run_policy(scenario, policy), run_policy(scenario, policy)
    assert first.to_json(0.0) == second.to_json(0.0)
    other = run_policy(scenario.with_overrides(seed=scenario.seed + 1), policy)
    assert other.to_json(0.0) != first.to_json(0.0)


def test_every_scenario_file_loads() -> None:
    files = sorted(SCENARIOS.glob("*.toml"))
    assert len(files) >= 8
    for path in files:
        assert load_scenario(path).name == path.stem


def test_an_unknown_key_is_an_error_not_a_default(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("nodse = 10\n")
    with pytest.raises(ScenarioError, match="nodse"):
        load_scenario(path)
    path.write_text("[adversary]\nkind = 'always'\nshare = 2.0\n")
    with pytest.raises(ScenarioError):
        load_scenario(path)


def test_the_command_writes_metrics_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    status = main([str(SCENARIOS / "always-cheaters.toml"), "--out", str(out), "--nodes", "60",
                   "--clients", "10", "--requests", "400", "--seed", "3"])
    assert status == 0
    document = json.loads((out / "metrics.json").read_text())
    assert document["scenario"]["seed"] == 3 and set(document["policies"]) == {
        str(p) for p in Policy}
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        f"{name}.png" for name in ("touched", "corrupted", "verification_cost", "latency",
                                   "throughput", "detection_delay", "false_bans"))


def test_a_bad_scenario_is_one_line_and_exit_two(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing.toml")]) == 2
    assert "cannot read scenario" in capsys.readouterr().err
