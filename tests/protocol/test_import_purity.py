"""darwin.protocol is pure: importing it and every submodule loads no torch, trio or libp2p."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import darwin.protocol

FORBIDDEN = ("torch", "trio", "libp2p")

PROBE = """
import importlib, json, pkgutil, sys
import darwin.protocol as protocol
for module in pkgutil.iter_modules(protocol.__path__):
    importlib.import_module(f"darwin.protocol.{module.name}")
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture(scope="module")
def loaded_modules() -> list[str]:
    """The modules a fresh interpreter holds after importing all of darwin.protocol."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    modules: list[str] = json.loads(result.stdout)
    return modules


def test_protocol_and_every_submodule_import_no_torch_trio_or_libp2p(
    loaded_modules: list[str],
) -> None:
    assert [name for name in loaded_modules if name.split(".")[0] in FORBIDDEN] == []


def test_protocol_imports_nothing_else_of_darwin(loaded_modules: list[str]) -> None:
    darwin_modules = [name for name in loaded_modules if name.startswith("darwin.")]
    assert darwin_modules
    assert all(name.startswith("darwin.protocol") for name in darwin_modules)


def test_protocol_sources_never_mention_the_forbidden_packages() -> None:
    package_dir = Path(darwin.protocol.__file__).parent
    for source in package_dir.glob("*.py"):
        text = source.read_text()
        for name in FORBIDDEN:
            assert f"import {name}" not in text and f"from {name}" not in text, source.name
