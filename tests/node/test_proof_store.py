"""The proof store: proofs by content hash, atomic, bounded, and never returned damaged."""

from __future__ import annotations

from pathlib import Path

import pytest

from darwin.gossip.proof_store import PROOFS_DIR, ProofStore, ProofTooLarge
from darwin.protocol.proof_request import proof_hash

PROOF = b"the encoded proof"


def test_a_proof_is_kept_under_its_hash_and_read_back(tmp_path: Path) -> None:
    store = ProofStore.in_home(tmp_path)
    digest = store.put(PROOF)
    assert digest == proof_hash(PROOF) and store.contains(digest)
    assert store.path(digest) == tmp_path / PROOFS_DIR / f"{digest.hex()}.proof"
    assert store.get(digest) == PROOF
    assert store.put(PROOF) == digest  # again: a no-op
    assert [p.name for p in (tmp_path / PROOFS_DIR).iterdir()] == [f"{digest.hex()}.proof"]


def test_unknown_oversized_and_damaged_proofs_are_absent(tmp_path: Path) -> None:
    store = ProofStore(tmp_path, max_bytes=64)
    assert store.get(proof_hash(b"never stored")) is None
    with pytest.raises(ProofTooLarge):
        store.put(b"x" * 65)
    assert list(tmp_path.iterdir()) == []
    digest = store.put(PROOF)
    assert store.get(digest, max_bytes=len(PROOF) - 1) is None  # over the reader's limit
    store.path(digest).write_bytes(b"swapped")
    assert store.get(digest) is None  # its bytes no longer hash to its name
    for bad in (b"", b"\x00" * 31, "00" * 32):
        with pytest.raises(ValueError):
            store.path(bad)  # type: ignore[arg-type]
