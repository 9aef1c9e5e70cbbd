"""How close a revealed output must be to the verifier's recomputation, per dtype.

Rules (numbers and how they were measured: ``specs/verification.md``, "Tolerance"):

* The distance is the relative L2 error ``||claimed - recomputed|| / ||recomputed||``,
  computed in float64 over the whole output tensor of the challenged step.
* Non-finite values must sit at the same places with the same values in both, else the error
  is infinite; the L2 norms are taken over the finite elements.
* A layer passes iff its error is at most ``TOLERANCES[dtype]``, the dtype being the one the
  node committed in (the revealed tensors'). The table is normative: verifiers and fraud-proof
  checkers must use the same numbers.
* This module imports neither ``darwin.protocol`` nor ``darwin.model``; dtypes are named by
  their wire names (``"float32"``, ``"bfloat16"``, ``"float16"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import torch

# Calibrated in specs/verification.md ("Tolerance"); each sits between the largest honest
# error measured and the smallest error of a 1% perturbation, with margin on both sides.
TOLERANCES = MappingProxyType({
    "float32": 5e-5,  # honest <= 1.6e-6; 1% weights >= 6.9e-3; float16 compute >= 4.1e-4
    "float16": 5e-3,  # honest <= 3.6e-3; 1% weights >= 7.0e-3
    "bfloat16": 4e-2,  # honest <= 2.7e-2; 1% cheats (~1e-2) are NOT separable; 5% >= 3.5e-2
})


def dtype_name(dtype: object) -> str:
    """The wire name of a torch dtype, a wire ``DType`` or a name.

    Raises:
        KeyError: for a dtype without a tolerance.
    """
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    else:
        name = str(getattr(dtype, "value", dtype))
    if name not in TOLERANCES:
        raise KeyError(f"no tolerance for dtype {name!r}")
    return name


def tolerance_for(dtype: object) -> float:
    """The tolerance of a dtype (see ``dtype_name``; raises ``KeyError`` for others)."""
    return TOLERANCES[dtype_name(dtype)]


def relative_error(claimed: torch.Tensor, recomputed: torch.Tensor) -> float:
    """``||claimed - recomputed|| / ||recomputed||`` in float64; ``inf`` if the shapes or the
    non-finite elements differ."""
    if claimed.shape != recomputed.shape:
        return math.inf
    a = claimed.detach().to("cpu", torch.float64)
    b = recomputed.detach().to("cpu", torch.float64)
    finite = torch.isfinite(b)
    if not torch.equal(finite, torch.isfinite(a)):
        return math.inf
    if not bool(finite.all()):
        same = (a[~finite] == b[~finite]) | (torch.isnan(a[~finite]) & torch.isnan(b[~finite]))
        if not bool(same.all()):
            return math.inf
        a, b = a[finite], b[finite]
    difference = float(torch.linalg.vector_norm(a - b))
    scale = float(torch.linalg.vector_norm(b))
    if difference == 0.0:
        return 0.0
    return difference / scale if scale > 0.0 else math.inf


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one revealed output with its recomputation."""

    error: float  # relative L2 error
    tolerance: float  # the dtype's tolerance
    dtype: str  # wire name of the compared dtype

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance

    def describe(self) -> str:
        """One line for verdict reasons and logs."""
        relation = "<=" if self.passed else ">"
        return (f"relative L2 error {self.error:.3e} {relation} {self.dtype} tolerance "
                f"{self.tolerance:.1e}")


def compare(claimed: torch.Tensor, recomputed: torch.Tensor, dtype: object) -> Comparison:
    """Compare a claimed output with the recomputed one under ``dtype``'s tolerance.

    Raises:
        KeyError: for a dtype without a tolerance.
    """
    name = dtype_name(dtype)
    return Comparison(relative_error(claimed, recomputed), TOLERANCES[name], name)
