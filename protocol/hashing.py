"""The commitment hash: BLAKE3-256, and the name every receipt and fraud proof carries for it.

Rules (``specs/wire-format.md`` section 1):

* ``H`` is BLAKE3 in its default (unkeyed) mode with a 32-byte output. Tensor digests use
  BLAKE3's key derivation and keyed modes on top of it (``tensors.py``).
* What commits to tensors or receipts names the scheme in its ``hash_alg`` field
  (``HASH_ALG``), so an object of another scheme (protocol version 1's BLAKE2b-256 receipts
  had none) is refused by name on decode rather than read as a commitment it is not.
* Large inputs are hashed on BLAKE3's own threads (``THREADED_BYTES``); the digest is the same
  on any number of threads.
"""

from __future__ import annotations

from collections.abc import Mapping

from blake3 import blake3

from .errors import RemoteProtocolError
from .schema import shown

HASH_ALG = "blake3-256"
# From this many bytes an input is hashed on all cores, below it on the calling thread (a
# 1024-token prefill leaf is 4 MiB, a decode leaf 4 KiB). Not tuned: on the loaded two-vCPU
# reference machine threads made no measurable difference (``docs/performance.md``).
THREADED_BYTES = 1 << 20


def threads_for(nbytes: int) -> int:
    """The ``max_threads`` to hash an input of ``nbytes`` with."""
    return blake3.AUTO if nbytes >= THREADED_BYTES else 1


def hash256(data: bytes) -> bytes:
    """``H(data)``: a Merkle node, a receipt's signed bytes, an encoded fraud proof."""
    if len(data) < THREADED_BYTES:
        return blake3(data).digest()
    return blake3(data, max_threads=blake3.AUTO).digest()


def check_hash_alg(obj: object, what: str) -> None:
    """Refuse a decoded map that does not name ``HASH_ALG`` in ``hash_alg``.

    Run before the map's fields are read, so that another scheme's object gets this message
    and not a complaint about its other keys.

    Raises:
        RemoteProtocolError: if ``obj`` is a map without ``hash_alg`` (made before commitments
            named their hash: BLAKE2b-256) or naming another hash.
    """
    if not isinstance(obj, Mapping):
        return  # the map reader that follows refuses it
    if "hash_alg" not in obj:
        raise RemoteProtocolError(
            f"{what}: no hash_alg, so it is of the BLAKE2b-256 commitments that came before "
            f"hashes were named; only {HASH_ALG} commitments are accepted")
    if obj["hash_alg"] != HASH_ALG:
        raise RemoteProtocolError(
            f"{what}: hash_alg {shown(obj['hash_alg'])} is not supported; only {HASH_ALG}")
