"""Process-wide settings belong to the commands: importing darwin as a library changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from darwin.launch import prepare_process


def test_importing_every_layer_leaves_the_environment_alone() -> None:
    env = {key: value for key, value in os.environ.items() if key != "GOMP_SPINCOUNT"}
    code = ("import os, darwin.protocol, darwin.node.server, darwin.client.submit; "
            "print(os.environ.get('GOMP_SPINCOUNT'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == "None"


def test_the_commands_shorten_the_openmp_spin_unless_the_user_chose(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    prepare_process()
    assert os.environ["GOMP_SPINCOUNT"] == "10000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    prepare_process()
    assert os.environ["GOMP_SPINCOUNT"] == "5"
