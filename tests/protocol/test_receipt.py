"""Receipts: a node's signed commitment to one step of its span."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from darwin.protocol import (
    LocalProtocolError,
    Receipt,
    RemoteProtocolError,
    SignatureError,
    WireLimits,
    layer_root_for,
    merkle_proof,
    merkle_root,
    verify_merkle_proof,
)
from darwin.protocol.hashing import HASH_ALG
from darwin.protocol.receipt import BODY_FIELDS, RECEIPT_DOMAIN
from darwin.protocol.wire import pack, unpack

if TYPE_CHECKING:
    from conftest import Swarm


def label_digest(*labels: object) -> bytes:
    return hashlib.blake2b(repr(labels).encode(), digest_size=32).digest()


def decode_receipt(data: bytes) -> Receipt:
    return Receipt.from_obj(unpack(data, WireLimits()))


def test_a_signed_receipt_verifies(swarm: Swarm) -> None:
    swarm.receipt(0, 1).verify()


def test_the_signed_bytes_are_the_domain_tag_and_the_fields_in_fixed_order(swarm: Swarm) -> None:
    body = swarm.hop_body(2, 0)
    expected = RECEIPT_DOMAIN + pack([getattr(body, name) for name in BODY_FIELDS])
    assert body.signing_bytes() == expected
    assert RECEIPT_DOMAIN == b"darwin/receipt/2\0"
    assert BODY_FIELDS == (
        "model_id", "adapter_id", "session_id", "step", "span_start", "span_end",
        "input_hash", "output_hash", "layer_root", "position_start", "position_count",
        "node_id", "time_ms", "retention_s", "hash_alg",
    )


def test_a_receipt_names_its_hash_and_admits_no_other(swarm: Swarm) -> None:
    body = swarm.hop_body(0, 0)
    assert body.hash_alg == HASH_ALG == "blake3-256"
    with pytest.raises(LocalProtocolError, match="hash_alg"):
        replace(body, hash_alg="blake2b-256")
    obj = swarm.receipt(0, 0).to_obj()
    with pytest.raises(RemoteProtocolError, match=r"receipt: no hash_alg.*BLAKE2b-256"):
        Receipt.from_obj({key: value for key, value in obj.items() if key != "hash_alg"})
    for other in ("blake2b-256", "BLAKE3-256", b"blake3-256", 1):
        with pytest.raises(RemoteProtocolError, match="is not supported; only blake3-256"):
            Receipt.from_obj({**obj, "hash_alg": other})


def test_receipts_round_trip_through_msgpack(swarm: Swarm, adapter_id: bytes) -> None:
    for receipt in (swarm.receipt(1, 2), swarm.receipt(0, 0, adapter_id=adapter_id)):
        assert decode_receipt(pack(receipt.to_obj())) == receipt


def test_any_single_bit_flip_in_an_encoded_receipt_fails_decoding_or_verify(
    swarm: Swarm, adapter_id: bytes
) -> None:
    for receipt in (swarm.receipt(3, 1), swarm.receipt(0, 2, adapter_id=adapter_id)):
        encoded = pack(receipt.to_obj())
        for bit in range(len(encoded) * 8):
            flipped = bytearray(encoded)
            flipped[bit // 8] ^= 1 << (bit % 8)
            try:
                decoded = decode_receipt(bytes(flipped))
            except RemoteProtocolError:
                continue
            with pytest.raises(SignatureError):
                decoded.verify()


def test_a_receipt_signed_by_another_key_fails_verify(swarm: Swarm) -> None:
    receipt = swarm.receipt(0, 0)
    forged = Receipt(receipt.body, swarm.identities[1].sign(receipt.body.signing_bytes()))
    with pytest.raises(SignatureError):
        forged.verify()


def test_a_node_cannot_sign_a_body_that_names_another_node(swarm: Swarm) -> None:
    with pytest.raises(LocalProtocolError):
        swarm.hop_body(0, 0).sign(swarm.identities[1])


def test_the_layer_root_commits_to_every_layer_input_and_the_output() -> None:
    layer_inputs = [label_digest("layer", i) for i in range(4)]
    output = label_digest("output")
    root = layer_root_for(layer_inputs, output)
    leaves = [*layer_inputs, output]
    assert root == merkle_root(leaves)
    # a verifier challenging layer 2 gets its input (leaf 2) and its output (leaf 3)
    for index in (2, 3):
        assert verify_merkle_proof(leaves[index], merkle_proof(leaves, index), root)


def test_a_layer_root_needs_at_least_one_layer_and_32_byte_digests() -> None:
    with pytest.raises(LocalProtocolError):
        layer_root_for([], label_digest("output"))
    with pytest.raises(LocalProtocolError):
        layer_root_for([bytes(31)], label_digest("output"))


@pytest.mark.parametrize(
    "changes",
    [
        {"model_id": bytes(31)},
        {"adapter_id": b""},
        {"session_id": bytes(32)},
        {"step": -1},
        {"step": 2**32},
        {"step": True},
        {"span_start": 3, "span_end": 3},
        {"span_start": 4, "span_end": 3},
        {"span_end": 65536},
        {"input_hash": "0" * 32},
        {"layer_root": None},
        {"position_count": 0},
        {"position_start": 2**32 - 1, "position_count": 2},
        {"node_id": "12D3KooWnotapeerid"},
        {"time_ms": -1},
        {"retention_s": 2**32},
    ],
)
def test_a_body_with_a_field_out_of_range_cannot_be_built(
    swarm: Swarm, changes: dict[str, object]
) -> None:
    with pytest.raises(LocalProtocolError):
        swarm.hop_body(0, 0, **changes)


def test_a_receipt_needs_a_64_byte_signature_and_a_body(swarm: Swarm) -> None:
    body = swarm.hop_body(0, 0)
    with pytest.raises(LocalProtocolError):
        Receipt(body, bytes(63))
    with pytest.raises(LocalProtocolError):
        Receipt(object(), bytes(64))


@pytest.mark.parametrize(
    ("key", "value"),
    [("step", -5), ("step", "1"), ("span_end", 70000), ("node_id", b"raw"), ("signature", None),
     ("adapter_id", bytes(16)), ("time_ms", 2**64), ("model_id", 1.5)],
)
def test_a_decoded_receipt_with_a_bad_field_is_a_remote_protocol_error(
    swarm: Swarm, key: str, value: object
) -> None:
    obj = swarm.receipt(0, 0).to_obj()
    obj[key] = value
    with pytest.raises(RemoteProtocolError):
        Receipt.from_obj(obj)


def test_a_decoded_receipt_with_a_missing_or_extra_key_is_a_remote_protocol_error(
    swarm: Swarm,
) -> None:
    obj = swarm.receipt(0, 0).to_obj()
    with pytest.raises(RemoteProtocolError):
        Receipt.from_obj({**obj, "extra": 1})
    del obj["retention_s"]
    with pytest.raises(RemoteProtocolError):
        Receipt.from_obj(obj)


@given(data=st.binary(max_size=400))
def test_random_bytes_as_a_receipt_raise_only_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_receipt(data)


def test_a_receipt_is_bound_to_its_domain(swarm: Swarm) -> None:
    # a signature over the bare msgpack fields (another protocol's message) does not verify
    body = swarm.hop_body(0, 0)
    bare = pack([getattr(body, name) for name in BODY_FIELDS])
    signature = swarm.identities[0].sign(bare)
    with pytest.raises(SignatureError):
        Receipt(body, signature).verify()
