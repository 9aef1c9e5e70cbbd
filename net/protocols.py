"""Every name peers agree on: the stream protocol ids and the DHT keys.

Rules: one place spells each id, so a node's handler and a client's request cannot drift apart;
the wire of each protocol is in ``specs/`` (forward, push and info in
``specs/forward-protocol.md``, challenge and verify in ``specs/verification.md``, ledger sync and
proof in ``specs/gossip.md``). A DHT key is a multihash of a domain-separated preimage
(``specs/transport.md``), the form libp2p provider records take.
"""

from __future__ import annotations

import hashlib
import struct

from darwin.protocol import ModelId

__all__ = [
    "BLOCK_KEY_DOMAIN",
    "CHALLENGE_PROTOCOL",
    "FORWARD_PROTOCOL",
    "INFO_PROTOCOL",
    "LEDGER_SYNC_PROTOCOL",
    "PROOF_PROTOCOL",
    "PUSH_PROTOCOL",
    "VERIFY_PROTOCOL",
    "block_provider_key",
    "verifier_key",
]

FORWARD_PROTOCOL = "/darwin/forward/1"
PUSH_PROTOCOL = "/darwin/push/1"
INFO_PROTOCOL = "/darwin/info/1"
CHALLENGE_PROTOCOL = "/darwin/challenge/1"
VERIFY_PROTOCOL = "/darwin/verify/1"
LEDGER_SYNC_PROTOCOL = "/darwin/ledger-sync/1"
PROOF_PROTOCOL = "/darwin/proof/1"

BLOCK_KEY_DOMAIN = b"darwin/block/1"
_BLAKE2B_256_MULTIHASH = b"\xa0\xe4\x02\x20"


def block_provider_key(model_id: str, block: int) -> bytes:
    """Return the DHT key under which providers of ``block`` of ``model_id`` announce.

    ``BLAKE2b-256(b"darwin/block/1" ‖ u16be(len(m)) ‖ m ‖ u32be(block))`` with
    ``m = model_id.encode("utf-8")``, wrapped as a multihash. The length prefix keeps
    (model, block) pairs unambiguous.
    """
    model = model_id.encode("utf-8")
    if not model or len(model) > 0xFFFF:
        raise ValueError("model_id must be 1..65535 bytes of UTF-8")
    if not 0 <= block <= 0xFFFFFFFF:
        raise ValueError(f"block index out of range: {block}")
    preimage = BLOCK_KEY_DOMAIN + struct.pack(">H", len(model)) + model + struct.pack(">I", block)
    return _BLAKE2B_256_MULTIHASH + hashlib.blake2b(preimage, digest_size=32).digest()


def verifier_key(model_id: ModelId) -> bytes:
    """The DHT key under which verifiers of ``model_id`` announce themselves."""
    return block_provider_key(model_id.hex() + "/verifier", 0)
