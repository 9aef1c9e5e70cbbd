"""Fixtures of the explorer tests: homes holding small real ledgers (``explorer_support``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The ledger tests' builders (fixed identities, signed entries, raw tampering) and the verifier
# tests' in-process nodes (which make real fraud proofs) serve here too.
for folder in ("ledger", "verifier"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / folder))

from explorer_support import build_home  # noqa: E402 (after the path above)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home whose ledger holds every kind of entry about four peers (see build_home)."""
    return build_home(tmp_path / "home")
