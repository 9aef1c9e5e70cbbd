"""BLAKE3-256 Merkle trees over a span's per-layer hashes, with inclusion proofs.

Rules (layout in ``specs/receipts-and-traces.md``):

* leaf hash ``H(0x00 || leaf)``, inner node ``H(0x01 || left || right)``: a leaf can never be
  mistaken for a node.
* On a level with an odd number of nodes the last node is promoted unchanged to the next
  level (never duplicated, so two leaf lists never share a root).
* The root binds the leaf count: ``H(0x02 || u64le(leaf_count) || top)``. A proof therefore
  proves both the position and the size of the tree.
* A tree has at least one and at most ``MAX_LEAVES`` leaves.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LocalProtocolError, blame_peer
from .hashing import hash256
from .schema import U32_MAX, MapReader, require_bytes, require_int

HASH_SIZE = 32
MAX_LEAVES = U32_MAX
_LEAF, _NODE, _ROOT = b"\x00", b"\x01", b"\x02"


def _hash(*parts: bytes) -> bytes:
    return hash256(b"".join(parts))


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    """Pair up one level's nodes; an odd last node is promoted."""
    paired = [_hash(_NODE, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    return [*paired, level[-1]] if len(level) % 2 else paired


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """All levels of the tree, leaf hashes first, the single top node last.

    Raises:
        LocalProtocolError: if there are no leaves, too many, or a leaf is not bytes.
    """
    if not 1 <= len(leaves) <= MAX_LEAVES:
        raise LocalProtocolError(f"a Merkle tree has 1 to {MAX_LEAVES} leaves")
    if not all(isinstance(leaf, bytes) for leaf in leaves):
        raise LocalProtocolError("Merkle leaves must be bytes")
    levels = [[_hash(_LEAF, leaf) for leaf in leaves]]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels


def _bind_count(top: bytes, leaf_count: int) -> bytes:
    return _hash(_ROOT, struct.pack("<Q", leaf_count), top)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The 32-byte root of a tree over ``leaves``.

    Raises:
        LocalProtocolError: if there are no leaves or a leaf is not bytes.
    """
    return _bind_count(_levels(leaves)[-1][0], len(leaves))


def _path_length(index: int, leaf_count: int) -> int:
    """How many siblings the proof of leaf ``index`` carries (promotions carry none)."""
    length = 0
    while leaf_count > 1:
        if not (index == leaf_count - 1 and leaf_count % 2):
            length += 1
        index, leaf_count = index // 2, (leaf_count + 1) // 2
    return length


@dataclass(frozen=True)
class MerkleProof:
    """The path from one leaf to the root: siblings from the leaf level upwards.

    Raises (on construction):
        LocalProtocolError: if ``index`` is not below ``leaf_count``, or the number or size
            of siblings does not fit the tree.
    """

    index: int
    leaf_count: int
    siblings: tuple[bytes, ...]

    def __post_init__(self) -> None:
        require_int("leaf_count", self.leaf_count, 1, MAX_LEAVES)
        require_int("index", self.index, 0, self.leaf_count - 1)
        if not isinstance(self.siblings, tuple):
            raise LocalProtocolError("siblings must be a tuple")
        expected = _path_length(self.index, self.leaf_count)
        if len(self.siblings) != expected:
            raise LocalProtocolError(f"a proof for leaf {self.index} has {expected} siblings")
        for sibling in self.siblings:
            require_bytes("sibling", sibling, HASH_SIZE)

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this proof."""
        return {"index": self.index, "leaf_count": self.leaf_count,
                "siblings": list(self.siblings)}

    @classmethod
    def from_obj(cls, obj: object) -> MerkleProof:
        """Decode a proof a peer sent.

        Raises:
            RemoteProtocolError: if the map is malformed or the proof does not fit its tree.
        """
        reader = MapReader(obj, ("index", "leaf_count", "siblings"), "merkle proof")
        with blame_peer("merkle proof"):
            return cls(reader.integer("index"), reader.integer("leaf_count"),
                       tuple(reader.array_of("siblings", bytes, "bytes")))


def merkle_proof(leaves: Sequence[bytes], index: int) -> MerkleProof:
    """The inclusion proof of ``leaves[index]``.

    Raises:
        LocalProtocolError: if ``index`` is out of range or the leaves are invalid.
    """
    levels = _levels(leaves)
    require_int("index", index, 0, len(leaves) - 1)
    siblings, position = [], index
    for level in levels[:-1]:
        if position ^ 1 < len(level):
            siblings.append(level[position ^ 1])
        position //= 2
    return MerkleProof(index, len(leaves), tuple(siblings))


def verify_merkle_proof(leaf: bytes, proof: MerkleProof, root: bytes) -> bool:
    """Whether ``leaf`` sits at ``proof.index`` of a ``proof.leaf_count``-leaf tree of ``root``."""
    node, position, width = _hash(_LEAF, leaf), proof.index, proof.leaf_count
    siblings = iter(proof.siblings)
    while width > 1:
        if position % 2:
            node = _hash(_NODE, next(siblings), node)
        elif position + 1 < width:
            node = _hash(_NODE, node, next(siblings))
        position, width = position // 2, (width + 1) // 2
    return _bind_count(node, proof.leaf_count) == root
