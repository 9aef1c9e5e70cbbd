"""The comparison rule: relative L2 error in float64 under a per-dtype tolerance."""

from __future__ import annotations

import math

import pytest
import torch

from darwin.protocol import DType
from darwin.verifier import TOLERANCES, compare, relative_error, tolerance_for


def test_relative_error_is_the_l2_distance_over_the_recomputed_norm() -> None:
    recomputed = torch.tensor([[3.0, 4.0]])
    assert relative_error(recomputed, recomputed) == 0.0
    assert math.isclose(relative_error(torch.tensor([[3.0, 4.5]]), recomputed), 0.1)
    assert relative_error(torch.zeros(1, 2), torch.zeros(1, 2)) == 0.0
    assert relative_error(torch.ones(1, 2), torch.zeros(1, 2)) == math.inf


def test_shape_and_non_finite_mismatches_are_infinitely_wrong() -> None:
    b = torch.tensor([1.0, float("nan"), float("inf")])
    assert relative_error(b.clone(), b) == 0.0
    assert relative_error(torch.tensor([1.0, 2.0, float("inf")]), b) == math.inf
    assert relative_error(torch.tensor([1.0, float("nan"), -float("inf")]), b) == math.inf
    assert relative_error(torch.ones(2, 2), torch.ones(4)) == math.inf


def test_bfloat16_tensors_are_compared_exactly_in_float64() -> None:
    b = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    assert relative_error(b, b) == 0.0
    expected = float((b.double() * 0.01).norm() / b.double().norm())
    assert math.isclose(relative_error((b.float() * 1.01).to(torch.bfloat16), b), expected,
                        rel_tol=0.5)


def test_tolerances_are_named_by_wire_dtype_and_ordered_by_precision() -> None:
    assert tolerance_for(DType.BFLOAT16) == tolerance_for(torch.bfloat16) == TOLERANCES["bfloat16"]
    assert TOLERANCES["float32"] < TOLERANCES["float16"] < TOLERANCES["bfloat16"]
    with pytest.raises(KeyError):
        tolerance_for(torch.float64)
    comparison = compare(torch.ones(4) * 1.001, torch.ones(4), "float32")
    assert not comparison.passed and "float32 tolerance" in comparison.describe()
    assert compare(torch.ones(4) * 1.001, torch.ones(4), DType.FLOAT16).passed
