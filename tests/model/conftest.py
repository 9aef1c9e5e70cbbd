"""Fixtures for darwin.model tests: tiny checkpoints generated once per session, offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing may be downloaded
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from span_chain_harness import PROMPT_LEN

from darwin.model import Checkpoint, make_tiny

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`tiny(family, **make_tiny_kwargs)` -> checkpoint dir, each made once per session."""
    made: dict[tuple[Any, ...], Path] = {}

    def make(family: str, **kwargs: Any) -> Path:
        key = (family, *sorted(kwargs.items()))
        if key not in made:
            made[key] = make_tiny(family, tmp_path_factory.mktemp(f"tiny-{family}"), **kwargs)
        return made[key]

    return make


@pytest.fixture(scope="session")
def prompt() -> torch.Tensor:
    """(2, PROMPT_LEN) token ids that avoid the special tokens 0-2."""
    generator = torch.Generator().manual_seed(1234)
    return torch.randint(3, 300, (2, PROMPT_LEN), generator=generator)


@pytest.fixture(scope="session")
def llama_checkpoint(tiny: Callable[..., Path]) -> Checkpoint:
    return Checkpoint.open(tiny("llama"))
