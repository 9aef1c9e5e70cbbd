"""The PNG plots of one run, one line (or bar) per policy (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .metrics import Metrics

__all__ = ["write_plots"]


def _ratio(top: list[float], bottom: list[float]) -> list[float]:
    return [t / b if b else float("nan") for t, b in zip(top, bottom, strict=True)]


def _over_time(path: Path, title: str, ylabel: str, results: Mapping[str, Metrics],
               top: str, bottom: str, duration_s: float, percent: bool = True) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    for policy, metrics in results.items():
        values = _ratio(metrics.series[top], metrics.series[bottom])
        width = duration_s / len(values)
        times = [(i + 0.5) * width / 60.0 for i in range(len(values))]
        axes.plot(times, [v * 100 if percent else v for v in values], label=policy)
    axes.set_title(title)
    axes.set_xlabel("simulated time (minutes)")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _bars(path: Path, title: str, values: Mapping[str, float]) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.bar(list(values), list(values.values()))
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_plots(out: Path, results: Mapping[str, Metrics], duration_s: float) -> list[Path]:
    """Write every plot under ``out``; the paths written."""
    paths = {name: out / f"{name}.png" for name in (
        "touched", "corrupted", "verification_cost", "latency", "throughput",
        "detection_delay", "false_bans")}
    _over_time(paths["touched"], "Requests touching a cheater", "% of requests", results,
               "touched", "requests", duration_s)
    _over_time(paths["corrupted"], "Inauthentic answers (a cheated step)", "% of requests",
               results, "corrupted", "requests", duration_s)
    _over_time(paths["verification_cost"], "Verification cost", "% of inference compute",
               results, "verification", "inference", duration_s)
    _over_time(paths["latency"], "Latency per request", "seconds", results, "latency_s",
               "requests", duration_s, percent=False)
    _over_time(paths["throughput"], "Throughput per request", "tokens / s", results, "tokens",
               "latency_s", duration_s, percent=False)
    delays = {p: m.summary(0.0)["detection_delay_s_median"] for p, m in results.items()}
    _bars(paths["detection_delay"], "Median detection delay (s; 0: none caught)",
          {p: float(d or 0.0) for p, d in delays.items()})
    _bars(paths["false_bans"], "Honest nodes banned by any client",
          {p: float(len(m.false_bans)) for p, m in results.items()})
    return list(paths.values())
