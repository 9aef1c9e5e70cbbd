"""Identities: ed25519 keys whose seed is the libp2p host key and whose id is the libp2p id."""

from __future__ import annotations

import contextlib

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey, create_new_key_pair
from libp2p.peer.id import ID

from darwin.protocol import (
    Identity,
    IdentityFileError,
    LocalProtocolError,
    PeerId,
    RemoteProtocolError,
    SignatureError,
    peer_id_from_public_key,
    public_key_from_peer_id,
    verify_signature,
)
from darwin.protocol.base58btc import b58decode, b58encode

SEED = bytes(range(32))


# --- libp2p compatibility -----------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_the_seed_as_libp2p_host_key_gives_the_same_peer_id(seed: bytes) -> None:
    key_pair = create_new_key_pair(seed)
    assert Identity.from_seed(seed).peer_id == ID.from_pubkey(key_pair.public_key).to_base58()


def test_peer_ids_look_like_libp2p_ed25519_ids() -> None:
    assert Identity.from_seed(SEED).peer_id.startswith("12D3KooW")


def test_libp2p_recovers_our_public_key_from_our_peer_id() -> None:
    identity = Identity.from_seed(SEED)
    extracted = ID.from_base58(identity.peer_id).extract_public_key()
    assert extracted is not None and extracted.to_bytes() == identity.public_key
    assert public_key_from_peer_id(identity.peer_id) == identity.public_key


def test_a_libp2p_signature_verifies_under_the_peer_id_and_ours_under_libp2p() -> None:
    identity = Identity.from_seed(SEED)
    libp2p_key = Ed25519PrivateKey.from_bytes(identity.seed)
    verify_signature(identity.peer_id, b"hello", libp2p_key.sign(b"hello"))
    libp2p_public = Ed25519PublicKey.from_bytes(identity.public_key)
    assert libp2p_public.verify(b"hello", identity.sign(b"hello"))


# --- signatures ---------------------------------------------------------------------------


def test_a_signature_verifies_only_for_its_message_and_signer() -> None:
    alice, bob = Identity.from_seed(SEED), Identity.from_seed(bytes(32))
    signature = alice.sign(b"message")
    verify_signature(alice.peer_id, b"message", signature)
    with pytest.raises(SignatureError):
        verify_signature(alice.peer_id, b"messagf", signature)
    with pytest.raises(SignatureError):
        verify_signature(bob.peer_id, b"message", signature)


@pytest.mark.parametrize("signature", [b"", b"\0" * 63, b"\0" * 65, "not bytes"])
def test_a_signature_of_the_wrong_size_or_type_is_a_signature_error(signature: bytes) -> None:
    with pytest.raises(SignatureError):
        verify_signature(Identity.from_seed(SEED).peer_id, b"message", signature)


def test_any_single_bit_flip_in_a_signature_fails_verification() -> None:
    identity = Identity.from_seed(SEED)
    signature = bytearray(identity.sign(b"message"))
    for bit in range(len(signature) * 8):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SignatureError):
            verify_signature(identity.peer_id, b"message", bytes(flipped))


# --- peer ids from the wire ---------------------------------------------------------------


def test_peer_id_and_public_key_round_trip() -> None:
    identity = Identity.generate()
    assert peer_id_from_public_key(identity.public_key) == identity.peer_id
    assert public_key_from_peer_id(identity.peer_id) == identity.public_key


def _valid_raw_peer_id() -> bytes:
    raw: bytes = b58decode(Identity.from_seed(SEED).peer_id, max_chars=64)
    return raw


@pytest.mark.parametrize(
    "peer_id",
    [
        "",
        "12D3KooW",
        "0OIl",  # characters outside the base58 alphabet
        "1" + Identity.from_seed(SEED).peer_id,  # an extra leading zero byte
        Identity.from_seed(SEED).peer_id[:-1],
        Identity.from_seed(SEED).peer_id + "z" * 100,
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # a sha256 (RSA-style) peer id
        b58encode(bytes([0x00, 0x24, 0x08, 0x02, 0x12, 0x20]) + bytes(32)),  # secp256k1 type
        b58encode(bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]) + bytes(32)),  # small-order point
        b58encode(_valid_raw_peer_id() + b"\0"),
    ],
)
def test_a_malformed_peer_id_is_a_remote_protocol_error(peer_id: str) -> None:
    with pytest.raises(RemoteProtocolError):
        public_key_from_peer_id(PeerId(peer_id))


@given(text=st.text(max_size=80))
def test_any_text_as_peer_id_decodes_or_raises_remote_protocol_error(text: str) -> None:
    with contextlib.suppress(RemoteProtocolError):
        public_key_from_peer_id(PeerId(text))


@given(data=st.binary(max_size=48))
def test_base58btc_matches_the_reference_implementation(data: bytes) -> None:
    assert b58encode(data) == base58.b58encode(data).decode()
    assert b58decode(b58encode(data), max_chars=100) == data


def test_a_public_key_of_the_wrong_size_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        peer_id_from_public_key(bytes(31))


# --- construction and storage -------------------------------------------------------------


@pytest.mark.parametrize("seed", [bytes(31), bytes(33), bytearray(32), "0" * 32])
def test_a_seed_is_exactly_32_bytes(seed: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        Identity.from_seed(seed)


def test_the_seed_never_appears_in_repr() -> None:
    identity = Identity.from_seed(SEED)
    assert SEED.hex() not in repr(identity) and repr(SEED) not in repr(identity)
    assert identity.peer_id in repr(identity)


def test_generated_identities_differ() -> None:
    assert Identity.generate().peer_id != Identity.generate().peer_id


def test_the_file_form_round_trips() -> None:
    identity = Identity.from_seed(SEED)
    assert identity.file_bytes() == b"darwin/identity/1 ed25519 " + SEED.hex().encode() + b"\n"
    assert Identity.from_file_bytes(identity.file_bytes()) == identity


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff" * 10,
        SEED.hex().encode(),
        b"darwin/identity/1 ed25519 " + SEED.hex().encode()[:-2] + b"\n",
        b"darwin/identity/1 ed25519 " + SEED.hex().upper().encode() + b"\n",
        b"darwin/identity/1 ed25519 " + b"zz" * 32 + b"\n",
        b"darwin/identity/2 ed25519 " + SEED.hex().encode() + b"\n",
        b"darwin/identity/1 ed25519 " + SEED.hex().encode() + b"\n" + b"x" * 300,
    ],
)
def test_a_malformed_file_is_refused_clearly(content: bytes) -> None:
    with pytest.raises(IdentityFileError, match="malformed"):
        Identity.from_file_bytes(content)
