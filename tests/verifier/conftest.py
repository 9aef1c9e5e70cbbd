"""Fixtures of the verifier tests: the tiny model, its id, a verifier and node identities."""

from __future__ import annotations

from pathlib import Path

import pytest

from darwin.model import Checkpoint, model_id
from darwin.protocol import Identity, ModelId
from darwin.verifier import Verifier


@pytest.fixture(scope="session")
def checkpoint(tiny_llama: Path) -> Checkpoint:
    return Checkpoint.open(tiny_llama)


@pytest.fixture(scope="session")
def tiny_model_id(checkpoint: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> ModelId:
    return ModelId(model_id(checkpoint, cache_dir=tmp_path_factory.mktemp("digests")))


@pytest.fixture(scope="session")
def node_identity() -> Identity:
    return Identity.from_seed(bytes([7]) * 32)


@pytest.fixture(scope="session")
def verifier_identity() -> Identity:
    return Identity.from_seed(bytes([9]) * 32)


@pytest.fixture(scope="session")
def verifier(checkpoint: Checkpoint, tiny_model_id: ModelId,
             verifier_identity: Identity) -> Verifier:
    return Verifier(verifier_identity, checkpoint, model_id=tiny_model_id,
                    clock=lambda: 1_700_000_000.0)


