"""Node identities: ed25519 keys, libp2p peer ids and signatures.

Rules:

* A node's 32-byte ed25519 seed is also its libp2p host key, so its libp2p ``PeerId`` *is*
  the public key that signs its receipts. The peer id is derived exactly as libp2p does:
  protobuf ``PublicKey{Type: Ed25519 (1), Data: pk}`` (36 bytes), wrapped in an identity
  multihash (code 0x00, length 36), written in base58btc: ``"12D3KooW..."`` (see
  ``specs/wire-format.md``).
* Peer ids from the wire are untrusted: parsing one checks every byte of the layout and that
  the key is a valid curve point, and raises ``RemoteProtocolError`` otherwise.
* The seed never appears in ``repr``; its file format is here, its file (mode 0600) is kept
  by ``darwin.home``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import NewType

import nacl.utils
from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .base58btc import b58decode, b58encode
from .errors import IdentityFileError, LocalProtocolError, RemoteProtocolError, SignatureError

PeerId = NewType("PeerId", str)

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
# identity multihash (0x00, length 0x24 = 36) of protobuf PublicKey: field 1 varint Ed25519 (1),
# field 2 bytes of length 32.
_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
_PEER_ID_MAX_CHARS = 64
_FILE_HEADER = "darwin/identity/1 ed25519 "
_HEX_DIGITS = "0123456789abcdef"


def peer_id_from_public_key(public_key: bytes) -> PeerId:
    """Derive the libp2p peer id of an ed25519 public key.

    Raises:
        LocalProtocolError: if ``public_key`` is not 32 bytes.
    """
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise LocalProtocolError(f"an ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
    return PeerId(b58encode(_PEER_ID_PREFIX + public_key))


def short_peer_id(peer_id: str) -> str:
    """A peer id cut to fit a table: its last 10 characters (every ed25519 id starts 12D3KooW)."""
    return peer_id if len(peer_id) <= 12 else f"…{peer_id[-10:]}"


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Recover the ed25519 public key inlined in a libp2p peer id.

    Raises:
        RemoteProtocolError: if the id is not the base58btc identity multihash of an ed25519
            protobuf public key, or the key is not a valid curve point.
    """
    if not isinstance(peer_id, str):
        raise RemoteProtocolError("a peer id is a string")
    return _inlined_public_key(peer_id)


@lru_cache(maxsize=4096)
def _inlined_public_key(peer_id: str) -> bytes:
    """``public_key_from_peer_id`` for a str, cached: receipts name the same few peers."""
    raw = b58decode(peer_id, max_chars=_PEER_ID_MAX_CHARS)
    if len(raw) != len(_PEER_ID_PREFIX) + PUBLIC_KEY_SIZE or not raw.startswith(_PEER_ID_PREFIX):
        raise RemoteProtocolError("peer id is not an inlined ed25519 public key")
    public_key = raw[len(_PEER_ID_PREFIX) :]
    if not crypto_core_ed25519_is_valid_point(public_key):
        raise RemoteProtocolError("peer id holds an invalid ed25519 point")
    return public_key


def verify_signature(peer_id: str, message: bytes, signature: bytes) -> None:
    """Check that ``signature`` is the ed25519 signature of ``message`` by ``peer_id``.

    Raises:
        SignatureError: if the signature is not 64 bytes or does not verify.
        RemoteProtocolError: if ``peer_id`` is malformed.
    """
    public_key = public_key_from_peer_id(peer_id)
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"a signature is {SIGNATURE_SIZE} bytes")
    try:
        VerifyKey(public_key).verify(message, signature)
    except BadSignatureError as exc:
        raise SignatureError(f"signature does not verify for {peer_id}") from exc


@dataclass(frozen=True)
class Identity:
    """An ed25519 key pair: signs receipts and serves as the libp2p host key.

    Attributes:
        seed: the 32-byte private seed (libp2p ``Ed25519PrivateKey.from_bytes`` takes it).
    """

    seed: bytes = field(repr=False)
    _signing_key: SigningKey = field(init=False, repr=False, compare=False)
    peer_id: PeerId = field(init=False, compare=False)

    def __post_init__(self) -> None:
        """Derive the key pair.

        Raises:
            LocalProtocolError: if the seed is not 32 bytes.
        """
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_SIZE:
            raise LocalProtocolError(f"an ed25519 seed is {SEED_SIZE} bytes")
        signing_key = SigningKey(self.seed)
        object.__setattr__(self, "_signing_key", signing_key)
        object.__setattr__(self, "peer_id", peer_id_from_public_key(bytes(signing_key.verify_key)))

    @classmethod
    def generate(cls) -> Identity:
        """Create a fresh identity from the operating system's random source."""
        return cls(nacl.utils.random(SEED_SIZE))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Rebuild the identity of a 32-byte seed (raises ``LocalProtocolError`` otherwise)."""
        return cls(seed)

    @property
    def public_key(self) -> bytes:
        """The 32-byte ed25519 public key."""
        return bytes(self._signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte ed25519 signature of ``message``."""
        return self._signing_key.sign(message).signature

    def file_bytes(self) -> bytes:
        """The identity file's content: one line, ``header + 64 hex digits + newline``.

        Writing it (mode 0600, never over an existing key) is the home directory's job
        (``darwin.home``); this layer stays free of I/O.
        """
        return f"{_FILE_HEADER}{self.seed.hex()}\n".encode("ascii")

    @classmethod
    def from_file_bytes(cls, content: bytes, source: str = "identity file") -> Identity:
        """Parse what `file_bytes` wrote; ``source`` names the file in the error.

        Raises:
            IdentityFileError: if the content is not exactly in that format.
        """
        return cls(_parse_identity_file(content, source))


def _parse_identity_file(content: bytes, source: str) -> bytes:
    """Return the seed stored in an identity file's content.

    Raises:
        IdentityFileError: if the content is not ``header + 64 hex digits + newline``.
    """
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    hex_seed = text.removeprefix(_FILE_HEADER).removesuffix("\n")
    well_formed = (
        text.startswith(_FILE_HEADER)
        and len(hex_seed) == 2 * SEED_SIZE
        and set(hex_seed) <= set(_HEX_DIGITS)
    )
    if not well_formed:
        raise IdentityFileError(
            f"{source} is malformed: expected one line "
            f"'{_FILE_HEADER}<64 lowercase hex digits>'"
        )
    return bytes.fromhex(hex_seed)
