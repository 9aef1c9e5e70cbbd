"""The tensor codec: allowlisted dtypes, canonical little-endian bytes, bounded decoding."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from darwin.protocol import (
    DType,
    LocalProtocolError,
    RemoteProtocolError,
    TensorHasher,
    TensorLimits,
    WireLimits,
    WireTensor,
    tensor_digest,
)
from darwin.protocol.hashing import THREADED_BYTES
from darwin.protocol.wire import pack, unpack

LIMITS = TensorLimits()
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


def wire_tensors() -> st.SearchStrategy[WireTensor]:
    """Any valid tensor: a dtype, a small shape and arbitrary bytes of the right length."""

    def build(dtype: DType, shape: tuple[int, ...], data: st.DataObject) -> WireTensor:
        size = int(np.prod(shape)) * dtype.itemsize
        return WireTensor(dtype, shape, data.draw(st.binary(min_size=size, max_size=size)))

    return st.builds(build, st.sampled_from(DType), shapes, st.data())


# --- round trips --------------------------------------------------------------------------


@given(tensor=wire_tensors())
def test_every_dtype_round_trips_through_msgpack(tensor: WireTensor) -> None:
    assert WireTensor.from_obj(unpack(pack(tensor.to_obj()), WireLimits()), LIMITS) == tensor


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@given(data=st.data())
def test_float32_and_float16_round_trip_through_numpy_bit_exactly(
    dtype: type[np.floating], data: st.DataObject
) -> None:
    array = data.draw(hnp.arrays(dtype, shapes))
    back = WireTensor.from_numpy(array).to_numpy()
    assert back.dtype == dtype and back.shape == array.shape
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()


def test_bfloat16_to_numpy_upcasts_exactly_to_float32() -> None:
    values = np.array([1.0, -2.5, 0.0, -0.0, np.inf, 3.140625], dtype=np.float32)
    tensor = WireTensor.from_numpy(values, DType.BFLOAT16)
    assert tensor.data == bytes.fromhex("803f20c000000080807f4940")
    back = tensor.to_numpy()
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, values)


def test_bfloat16_from_float32_rounds_to_nearest_even_and_keeps_nan() -> None:
    # 1 + 2**-8 is halfway between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0);
    # 1 + 3 * 2**-8 is halfway between 1.0078125 and 1.015625: ties go to 1.015625.
    values = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7 + 2**-9, np.nan], dtype=np.float32)
    back = WireTensor.from_numpy(values, DType.BFLOAT16).to_numpy()
    np.testing.assert_array_equal(back[:3], [1.0, 1.015625, 1.0078125])
    assert np.isnan(back[3])


def test_encoding_is_little_endian_c_order_whatever_the_array_layout() -> None:
    array = np.arange(6, dtype=">f4").reshape(2, 3).T  # big-endian, Fortran-ordered view
    tensor = WireTensor.from_numpy(array)
    assert tensor.shape == (3, 2)
    assert tensor.data == np.ascontiguousarray(array, dtype="<f4").tobytes()


@pytest.mark.parametrize("array", [np.zeros(3, np.float64), np.zeros(3, np.int32)])
def test_arrays_of_other_dtypes_are_refused_rather_than_cast(array: np.ndarray) -> None:
    with pytest.raises(LocalProtocolError):
        WireTensor.from_numpy(array)


def test_bfloat16_is_encoded_only_from_float32() -> None:
    with pytest.raises(LocalProtocolError):
        WireTensor.from_numpy(np.zeros(3, np.float16), DType.BFLOAT16)


# --- construction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "shape", "data"),
    [
        (DType.FLOAT32, (2,), bytes(7)),
        (DType.FLOAT16, (2, 2), bytes(9)),
        ("float32", (1,), bytes(4)),
        (DType.FLOAT32, [1], bytes(4)),
        (DType.FLOAT32, (-1,), b""),
        (DType.FLOAT32, (True,), bytes(4)),
        (DType.FLOAT32, (1,), bytearray(4)),
    ],
)
def test_a_tensor_whose_fields_do_not_agree_cannot_be_built(
    dtype: DType, shape: tuple[int, ...], data: bytes
) -> None:
    with pytest.raises(LocalProtocolError):
        WireTensor(dtype, shape, data)


# --- digests ------------------------------------------------------------------------------


@settings(max_examples=200)
@given(tensor=wire_tensors().filter(lambda t: len(t.data) > 0), position=st.integers(0))
def test_any_single_bit_flip_in_the_data_changes_the_digest(
    tensor: WireTensor, position: int
) -> None:
    bit = position % (len(tensor.data) * 8)
    flipped = bytearray(tensor.data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert WireTensor(tensor.dtype, tensor.shape, bytes(flipped)).digest() != tensor.digest()


def test_every_single_bit_flip_of_a_small_tensor_changes_the_digest() -> None:
    tensor = WireTensor.from_numpy(np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4))
    digests = {tensor.digest()}
    for bit in range(len(tensor.data) * 8):
        flipped = bytearray(tensor.data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        digests.add(tensor_digest(tensor.dtype, tensor.shape, bytes(flipped)))
    assert len(digests) == 1 + len(tensor.data) * 8


def test_the_digest_binds_shape_and_dtype_not_just_bytes() -> None:
    data = bytes(range(16))
    digests = {
        tensor_digest(DType.FLOAT32, (4,), data),
        tensor_digest(DType.FLOAT32, (2, 2), data),
        tensor_digest(DType.FLOAT32, (1, 4), data),
        tensor_digest(DType.FLOAT16, (8,), data),
        tensor_digest(DType.BFLOAT16, (8,), data),
    }
    assert len(digests) == 5


def test_the_digest_layout_is_the_one_in_the_spec() -> None:
    data = bytes(range(12))
    header = struct.pack("<BB2Q", 1, 2, 1, 3)
    key = blake3(header, derive_key_context="darwin/tensor/2").digest()
    assert tensor_digest(DType.FLOAT32, (1, 3), data) == blake3(data, key=key).digest()


def test_a_large_tensor_hashed_on_blake3_threads_has_the_one_digest() -> None:
    shape = (1, THREADED_BYTES // 1024, 256)  # float32: 1 KiB per row, THREADED_BYTES in all
    data = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    key = blake3(struct.pack("<BB3Q", 1, 3, *shape), derive_key_context="darwin/tensor/2").digest()
    assert tensor_digest(DType.FLOAT32, shape, data.data) == blake3(data.data.cast("B"),
                                                                     key=key).digest()


def test_the_digest_hashes_any_contiguous_buffer_without_a_copy() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = WireTensor.from_numpy(array)
    assert tensor_digest(DType.FLOAT32, (3, 4), array.data) == tensor.digest()
    assert tensor_digest(DType.FLOAT32, (3, 4), bytearray(tensor.data)) == tensor.digest()


def test_the_digest_refuses_a_buffer_that_does_not_fit() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(LocalProtocolError):
        tensor_digest(DType.FLOAT32, (3, 4), array.T.data)  # not C-contiguous
    with pytest.raises(LocalProtocolError):
        tensor_digest(DType.FLOAT32, (3, 5), array.data)


def test_a_hasher_for_one_form_gives_each_tensor_its_own_digest() -> None:
    hasher = TensorHasher(DType.FLOAT16, (2, 3))
    arrays = [np.full((2, 3), value, dtype=np.float16) for value in (0.0, 1.0, -2.5)]
    assert [hasher.digest(a.data) for a in arrays] == [
        tensor_digest(DType.FLOAT16, (2, 3), a.data) for a in arrays]
    with pytest.raises(LocalProtocolError):
        hasher.digest(np.zeros((3, 3), dtype=np.float16).data)
    with pytest.raises(LocalProtocolError):
        TensorHasher(DType.FLOAT16, [2, 3])  # type: ignore[arg-type]


def test_a_tensor_built_with_its_known_digest_is_not_hashed_again() -> None:
    data = np.arange(6, dtype=np.float32).tobytes()
    honest = WireTensor(DType.FLOAT32, (2, 3), data)
    assert WireTensor.hashed(DType.FLOAT32, (2, 3), data, honest.digest()) == honest
    stated = bytes(32)  # taken as given: only a caller that just hashed the bytes may state it
    assert WireTensor.hashed(DType.FLOAT32, (2, 3), data, stated).digest() == stated
    with pytest.raises(LocalProtocolError):
        WireTensor.hashed(DType.FLOAT32, (2, 3), data, b"short")


# --- hostile input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        [2**24, 2**24, 2**24],  # declares 2**74 bytes
        [2**24 + 1],  # one dim past max_dim
        [1, 1, 1, 1, 1],  # rank past max_rank
        [2**64 - 1],
    ],
)
def test_a_huge_declared_shape_is_refused_without_allocating(shape: list[int]) -> None:
    obj = {"dtype": "float32", "shape": shape, "data": b""}
    tracemalloc.start()
    try:
        with pytest.raises(RemoteProtocolError):
            WireTensor.from_obj(obj, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_a_tensor_within_max_dim_but_over_max_bytes_is_refused() -> None:
    limits = TensorLimits(max_bytes=1024)
    with pytest.raises(RemoteProtocolError, match="exceeds 1024"):
        WireTensor.from_obj({"dtype": "float32", "shape": [257], "data": bytes(1028)}, limits)


@pytest.mark.parametrize(
    "obj",
    [
        {"dtype": "float64", "shape": [1], "data": bytes(8)},
        {"dtype": "int8", "shape": [1], "data": bytes(1)},
        {"dtype": "float32", "shape": [2], "data": bytes(4)},
        {"dtype": "float32", "shape": [-1], "data": b""},
        {"dtype": "float32", "shape": [1.0], "data": bytes(4)},
        {"dtype": "float32", "shape": [True], "data": bytes(4)},
        {"dtype": "float32", "shape": 1, "data": bytes(4)},
        {"dtype": "float32", "shape": [1], "data": "abcd"},
        {"dtype": "float32", "shape": [1]},
        {"dtype": "float32", "shape": [1], "data": bytes(4), "extra": 1},
        {b"dtype": "float32", "shape": [1], "data": bytes(4)},
        [],
        None,
    ],
)
def test_a_malformed_tensor_map_is_a_remote_protocol_error(obj: object) -> None:
    with pytest.raises(RemoteProtocolError):
        WireTensor.from_obj(obj, LIMITS)
