"""The tolerances sit between honest and cheating errors, measured on the tiny model.

The full calibration (more families and sizes) is ``python -m darwin.verifier.calibration``;
its numbers are in ``specs/verification.md``. This is the quick guard that the table and the
code still agree.
"""

from __future__ import annotations

import statistics

import pytest

from darwin.model import Checkpoint
from darwin.verifier import TOLERANCES
from darwin.verifier.calibration import CalibrationConfig, calibrate

QUICK = CalibrationConfig(prompt=6, chunks=2, decode=3, layers=(0, 3))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_honest_runs_pass_and_one_percent_cheats_fail(checkpoint: Checkpoint, dtype: str
                                                      ) -> None:
    result = calibrate(checkpoint, dtype, QUICK)
    tolerance = TOLERANCES[dtype]
    print(f"\n{dtype}: max honest {result.max_honest():.2e}, tolerance {tolerance:.0e}, "
          f"min cheat {result.min_cheat():.2e}")
    assert result.max_honest() < tolerance < result.min_cheat()
    assert set(result.honest) >= {"span", "span_cut", "threads", "merged_prefix", "batched",
                                  "rounded_ops"}


def test_bfloat16_passes_honest_runs_and_mostly_catches_five_percent(checkpoint: Checkpoint
                                                                     ) -> None:
    """bfloat16 cannot see 1% (its own rounding spread is about 2%, see the spec)."""
    result = calibrate(checkpoint, "bfloat16", QUICK)
    tolerance = TOLERANCES["bfloat16"]
    five = result.cheats["weights_5pct"]
    print(f"\nbfloat16: max honest {result.max_honest():.2e}, tolerance {tolerance:.0e}, "
          f"5% weights min {min(five):.2e} median {statistics.median(five):.2e}")
    assert result.max_honest() < tolerance < min(result.cheats["skip_layer"])
    assert statistics.median(five) > tolerance
