"""The test vectors printed in specs/ are what the code produces (and stay in the specs)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from blake3 import blake3

from darwin.protocol import (
    CloseSession,
    Identity,
    ModelId,
    Receipt,
    ReceiptBody,
    RemoteProtocolError,
    SessionId,
    WireTensor,
    layer_root_for,
    merkle_root,
)
from darwin.protocol.base58btc import b58decode

SPECS = Path(__file__).resolve().parents[2] / "specs"
SEED = bytes(range(32))
PUBLIC_KEY = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
MULTIHASH = "00240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
PEER_ID = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
TENSOR_DATA = "0000803f0000004000004040"
TENSOR_KEY = "315c0a4f56122f57fda41c3ed8c0a6c6e1abd281901c0b0b637b34ea9c7f0d83"
TENSOR_DIGEST = "f8ec6f5a79ef74f8b7f797c91f5f1da58ae33d98b5d682f391ee80a1582514ca"
ROOT_1 = "d9e33b7879e4089ed3bd4ad66973e5e0ff45f2f7873e9b41c39940ae375574fe"
ROOT_3 = "a7d29f3fde54a36b68d866ceef20590af6657e0b527104ba8f454ee8c372c673"
LAYER_ROOT = "7bab62a8c2a865943b496076be244046503914ed4d335267f8be07ef5059689e"
SIGNED_BYTES = (
    "64617277696e2f726563656970742f3200 9f"
    " c420 1111111111111111111111111111111111111111111111111111111111111111"
    " c0"
    " c410 22222222222222222222222222222222"
    " 01 00 02"
    " c420 3333333333333333333333333333333333333333333333333333333333333333"
    " c420 4444444444444444444444444444444444444444444444444444444444444444"
    " c420 7bab62a8c2a865943b496076be244046503914ed4d335267f8be07ef5059689e"
    " 05 01"
    " d934 313244334b6f6f574134586f70314a6154334d487877594d6b436570597376346950566f704d5877437a"
    "35694859644266655342"
    " cf 0000018bcfe56800"
    " cd 0e10"
    " aa 626c616b65332d323536"
)
SIGNATURE = (
    "9e504f97ddea9dfbfce11ae04ac20120791ea39f596d5a48611659ed1c430ec7"
    "cfd29cab7e4ffc0e8c296cc1ee15e579044130631d5c2a92a2a22b677d4de201"
)
# The receipt of the vector above as protocol 1 signed it (BLAKE2b-256 commitments, no
# hash_alg): the layer root and signature it had then.
V1_LAYER_ROOT = "9eff7af90bc3883ffa3a8eb3b1300fbb476819bd017e7e01ae10eb069c4a7538"
V1_SIGNATURE = (
    "1271dd5135055dc44e05bca28026fde5bc79e897211cb2d3cdda8cd53745b474"
    "9f962e037b74d2d30f44d594af0329fa2daaef69f612bd83c482163de7389002"
)
CLOSE_SESSION = (
    "83 a1 76 01 a4 6b696e64 ad 636c6f73655f73657373696f6e aa 73657373696f6e5f6964 c4 10"
    " 22222222222222222222222222222222"
)


def unhex(spaced: str) -> bytes:
    return bytes.fromhex(spaced.replace(" ", ""))


def test_peer_id_vector() -> None:
    identity = Identity.from_seed(SEED)
    assert identity.public_key.hex() == PUBLIC_KEY
    assert b58decode(identity.peer_id, max_chars=64).hex() == MULTIHASH
    assert identity.peer_id == PEER_ID


def test_tensor_digest_vector() -> None:
    tensor = WireTensor.from_numpy(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    assert tensor.data.hex() == TENSOR_DATA
    header = bytes.fromhex("01 02 0100000000000000 0300000000000000")
    assert blake3(header, derive_key_context="darwin/tensor/2").hexdigest() == TENSOR_KEY
    assert tensor.digest().hex() == TENSOR_DIGEST


def test_merkle_root_vectors() -> None:
    assert merkle_root([bytes(32)]).hex() == ROOT_1
    assert merkle_root([bytes([i]) * 32 for i in range(3)]).hex() == ROOT_3


def receipt_vector_body() -> ReceiptBody:
    return ReceiptBody(
        model_id=ModelId(b"\x11" * 32), adapter_id=None, session_id=SessionId(b"\x22" * 16),
        step=1, span_start=0, span_end=2, input_hash=b"\x33" * 32, output_hash=b"\x44" * 32,
        layer_root=layer_root_for([b"\x33" * 32, b"\x55" * 32], b"\x44" * 32),
        position_start=5, position_count=1, node_id=Identity.from_seed(SEED).peer_id,
        time_ms=1_700_000_000_000, retention_s=3600,
    )


def test_receipt_vector() -> None:
    body = receipt_vector_body()
    assert body.layer_root.hex() == LAYER_ROOT
    assert body.signing_bytes() == unhex(SIGNED_BYTES)
    assert body.sign(Identity.from_seed(SEED)).signature.hex() == SIGNATURE


def test_a_protocol_1_receipt_is_refused_by_name_not_misread() -> None:
    old = {**Receipt(receipt_vector_body(), bytes.fromhex(V1_SIGNATURE)).to_obj(),
           "layer_root": bytes.fromhex(V1_LAYER_ROOT)}
    del old["hash_alg"]
    with pytest.raises(RemoteProtocolError, match=r"receipt: no hash_alg.*BLAKE2b-256.*blake3-256"):
        Receipt.from_obj(old)
    with pytest.raises(RemoteProtocolError, match="hash_alg 'blake2b-256' is not supported"):
        Receipt.from_obj({**old, "hash_alg": "blake2b-256"})


def test_close_session_vector() -> None:
    assert CloseSession(SessionId(b"\x22" * 16)).to_wire() == unhex(CLOSE_SESSION)


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(
    ("spec", "vectors"),
    [
        ("wire-format.md", [PUBLIC_KEY, MULTIHASH, PEER_ID, TENSOR_DATA, TENSOR_KEY, TENSOR_DIGEST,
                            CLOSE_SESSION.replace("22222222222222222222222222222222", "")]),
        ("receipts-and-traces.md", [ROOT_1, ROOT_3, LAYER_ROOT, SIGNED_BYTES, SIGNATURE]),
    ],
)
def test_the_specs_print_these_vectors(spec: str, vectors: list[str]) -> None:
    text = squeezed((SPECS / spec).read_text())
    for vector in vectors:
        assert squeezed(vector) in text
