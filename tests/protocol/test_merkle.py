"""Merkle commitments: domain-separated BLAKE3-256, odd nodes promoted, count bound to root."""

from __future__ import annotations

import contextlib
import struct

import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from darwin.protocol import (
    LocalProtocolError,
    MerkleProof,
    RemoteProtocolError,
    WireLimits,
    merkle_proof,
    merkle_root,
    verify_merkle_proof,
)
from darwin.protocol.wire import pack, unpack


def leaves_of(count: int) -> list[bytes]:
    return [blake3(bytes([i])).digest() for i in range(count)]


def h(*parts: bytes) -> bytes:
    return blake3(b"".join(parts)).digest()


def flips(data: bytes) -> list[bytes]:
    """``data`` with each of its bits flipped in turn."""
    out = []
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        out.append(bytes(flipped))
    return out


def test_the_root_layout_is_the_one_in_the_spec() -> None:
    a, b, c = leaves_of(3)
    top = h(b"\x01", h(b"\x01", h(b"\x00", a), h(b"\x00", b)), h(b"\x00", c))  # c is promoted
    assert merkle_root([a, b, c]) == h(b"\x02", struct.pack("<Q", 3), top)


def test_a_single_leaf_tree_has_an_empty_proof() -> None:
    (leaf,) = leaves_of(1)
    proof = merkle_proof([leaf], 0)
    assert proof.siblings == ()
    assert verify_merkle_proof(leaf, proof, merkle_root([leaf]))


def test_a_tree_needs_at_least_one_leaf() -> None:
    with pytest.raises(LocalProtocolError):
        merkle_root([])


def test_promotion_means_duplicating_the_last_leaf_changes_the_root() -> None:
    leaves = leaves_of(3)
    assert merkle_root(leaves) != merkle_root([*leaves, leaves[-1]])


def test_the_leaf_count_is_bound_into_the_root() -> None:
    leaves = leaves_of(5)
    # With 5 and 7 leaves, leaf 0 has a path of the same length; only the count tells them apart.
    proof = merkle_proof(leaves, 0)
    forged = MerkleProof(0, 7, proof.siblings)
    assert not verify_merkle_proof(leaves[0], forged, merkle_root(leaves))


@given(count=st.integers(1, 40), data=st.data())
def test_every_leaf_proves_its_place_and_no_other(count: int, data: st.DataObject) -> None:
    leaves = leaves_of(count)
    root = merkle_root(leaves)
    index = data.draw(st.integers(0, count - 1))
    proof = merkle_proof(leaves, index)
    assert verify_merkle_proof(leaves[index], proof, root)
    other = data.draw(st.integers(0, count - 1).filter(lambda i: i != index) if count > 1
                      else st.just(index))
    if other != index:
        assert not verify_merkle_proof(leaves[other], proof, root)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 17])
def test_any_bit_flip_in_a_leaf_fails_verification(count: int) -> None:
    leaves = leaves_of(count)
    root = merkle_root(leaves)
    for index, leaf in enumerate(leaves):
        proof = merkle_proof(leaves, index)
        assert not any(verify_merkle_proof(bad, proof, root) for bad in flips(leaf))


@pytest.mark.parametrize("count", [2, 3, 5, 8, 17])
def test_any_bit_flip_in_an_encoded_proof_fails_decoding_or_verification(count: int) -> None:
    leaves = leaves_of(count)
    root = merkle_root(leaves)
    for index, leaf in enumerate(leaves):
        encoded = pack(merkle_proof(leaves, index).to_obj())
        for bad in flips(encoded):
            try:
                proof = MerkleProof.from_obj(unpack(bad, WireLimits()))
            except RemoteProtocolError:
                continue
            assert not verify_merkle_proof(leaf, proof, root)


def test_any_bit_flip_in_the_root_fails_verification() -> None:
    leaves = leaves_of(6)
    proof = merkle_proof(leaves, 4)
    assert not any(verify_merkle_proof(leaves[4], proof, bad) for bad in flips(merkle_root(leaves)))


def test_proofs_round_trip_through_msgpack() -> None:
    proof = merkle_proof(leaves_of(11), 9)
    assert MerkleProof.from_obj(unpack(pack(proof.to_obj()), WireLimits())) == proof


@pytest.mark.parametrize(
    ("index", "leaf_count", "siblings"),
    [
        (3, 3, (bytes(32),) * 2),  # index past the end
        (0, 0, ()),  # empty tree
        (0, 4, (bytes(32),)),  # too few siblings for the tree
        (0, 4, (bytes(32),) * 3),  # too many
        (0, 2, (bytes(31),)),  # sibling of the wrong size
        (0, 2, [bytes(32)]),  # not a tuple
        (True, 2, (bytes(32),)),
    ],
)
def test_a_proof_that_does_not_fit_its_tree_cannot_be_built(
    index: int, leaf_count: int, siblings: tuple[bytes, ...]
) -> None:
    with pytest.raises(LocalProtocolError):
        MerkleProof(index, leaf_count, siblings)


@given(obj=st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=40) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["index", "leaf_count", "siblings", "x"]), inner),
    max_leaves=12,
))
def test_any_wrongly_shaped_proof_object_is_a_remote_protocol_error(obj: object) -> None:
    with contextlib.suppress(RemoteProtocolError):
        MerkleProof.from_obj(obj)
