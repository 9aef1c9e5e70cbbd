"""Memory follows the span: 2 of 8 blocks take well under half of the whole model.

A ~200 MB Llama-style checkpoint (8 blocks of ~25 MB, fp32) is generated once; a subprocess
measures the resident-set growth of each way of loading it (see memory_probe.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from darwin.model import Checkpoint, make_tiny

PROBE = Path(__file__).with_name("memory_probe.py")
MB = 1 << 20


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_tiny("llama", tmp_path_factory.mktemp("big"), layers=8, hidden=640)
    size = (path / "model.safetensors").stat().st_size
    assert 180 * MB < size < 220 * MB
    return path


def test_span_and_streaming_memory(big_checkpoint: Path) -> None:
    modes = ["full", "span:2:4", "stream:0:8:2"]
    out = subprocess.run(
        [sys.executable, str(PROBE), str(big_checkpoint), *modes],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    results = {r["mode"]: r for r in map(json.loads, out.stdout.splitlines())}
    checkpoint = Checkpoint.open(big_checkpoint)
    block = sum(checkpoint.info(n).nbytes for n in checkpoint.names_with_prefix("model.layers.0."))
    full, span, stream = (results[m]["rss_growth"] for m in modes)
    report = (
        f"full={full / MB:.0f} MB span(2/8)={span / MB:.0f} MB stream(K=2)={stream / MB:.0f} MB"
    )
    print(report)
    assert full > 7 * block, report  # the measurement does see the weights
    assert span < 0.4 * full, report
    assert span > 1.5 * block, report
    assert stream < 0.4 * full, report
    assert results["stream:0:8:2"]["peak_resident"] == 2
    assert results["stream:0:8:2"]["loads"] == 16  # two steps, every block read each time
