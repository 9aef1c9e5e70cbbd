"""Suite-wide settings: nothing is downloaded, and generated models are made once per run."""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported anywhere
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# The client's default home (identity and ledger) is a fresh directory, never the user's.
os.environ["DARWIN_HOME"] = tempfile.mkdtemp(prefix="darwin-home-")

from pathlib import Path

import pytest
import torch

from darwin.model import make_tiny

# One torch thread for the whole run, set before any worker thread exists: tiny models gain
# nothing from threads on a small shared machine (sdpa's CPU kernel costs ~100x more with 2
# busy threads), and exact comparisons between a node's worker thread and the test's own
# reference need the same reduction order, which a thread started under another setting
# would not keep. Tests that vary threads set them and restore this.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-block Llama-style checkpoint shared by the client and node tests."""
    return make_tiny("llama", tmp_path_factory.mktemp("tiny-llama"), layers=4, hidden=64)
