"""Messages: versioned msgpack maps, decoded strictly; hostile bytes raise only protocol errors."""

from __future__ import annotations

import contextlib
import math
import tracemalloc
from typing import TYPE_CHECKING

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darwin.protocol import (
    PROTOCOL_VERSION,
    CloseSession,
    DType,
    ErrorCode,
    ErrorFrame,
    InfoRequest,
    LocalProtocolError,
    Message,
    ModelId,
    NodeInfo,
    OpenSession,
    PushedStepRequest,
    RemoteProtocolError,
    SessionId,
    SessionOpened,
    StepReceipt,
    StepRequest,
    StepResult,
    TensorLimits,
    WireLimits,
    WireTensor,
    decode,
    encode,
)
from darwin.protocol.messages import MAX_ERROR_CHARS

if TYPE_CHECKING:
    from conftest import Swarm

SESSION = SessionId(b"\x01" * 16)
MODEL = ModelId(b"\x02" * 32)


def hidden(seq: int = 2, dtype: DType = DType.FLOAT32) -> WireTensor:
    values = np.linspace(-1, 1, 1 * seq * 8, dtype=np.float32).reshape(1, seq, 8)
    if dtype is DType.FLOAT16:
        return WireTensor.from_numpy(values.astype(np.float16))
    return WireTensor.from_numpy(values, dtype)


def step_result(swarm: Swarm) -> StepResult:
    output = hidden(seq=5)
    receipt = swarm.receipt(0, 1, output_hash=output.digest())
    return StepResult(step=0, hidden=output, receipt=receipt)


@pytest.fixture(scope="module")
def messages(swarm: Swarm) -> list[Message]:
    """One valid instance of every message kind (and each tensor dtype)."""
    return [
        OpenSession(SESSION, MODEL, None, 0, 12, 2048),
        OpenSession(SESSION, MODEL, b"\x03" * 32, 12, 24, 1),
        OpenSession(SESSION, MODEL, None, 4, 8, 64, push_from=swarm.identities[0].peer_id,
                    push_to=swarm.identities[1].peer_id,
                    push_addrs=("/ip4/127.0.0.1/tcp/4001",)),
        SessionOpened(SESSION, 0, 12, 2048, 3600),
        *(StepRequest.create(SESSION, 3, 7, hidden(dtype=dtype)) for dtype in DType),
        PushedStepRequest(SESSION, 3, 7, 2),
        step_result(swarm),
        StepReceipt(0, step_result(swarm).receipt),
        CloseSession(SESSION),
        ErrorFrame(ErrorCode.BUSY, "no free slot; try another peer"),
        InfoRequest(),
        NodeInfo(swarm.identities[0].peer_id, MODEL, 0, 12, DType.BFLOAT16, 0.25, 8, "0.1.0"),
    ]


# --- round trips --------------------------------------------------------------------------


def test_every_message_round_trips(messages: list[Message]) -> None:
    for message in messages:
        assert decode(encode(message)) == message
        assert type(message).from_wire(message.to_wire()) == message


def test_every_message_is_a_map_with_version_and_kind(messages: list[Message]) -> None:
    kinds = set()
    for message in messages:
        obj = msgpack.unpackb(encode(message))
        assert obj["v"] == PROTOCOL_VERSION and obj["kind"] == message.KIND
        kinds.add(obj["kind"])
    assert kinds == {"open_session", "session_opened", "step_request", "pushed_step_request",
                     "step_result", "step_receipt", "close_session", "error", "info_request",
                     "node_info"}


def test_from_wire_refuses_a_frame_of_another_kind() -> None:
    with pytest.raises(RemoteProtocolError, match="expected open_session"):
        OpenSession.from_wire(CloseSession(SESSION).to_wire())


# --- strict decoding ----------------------------------------------------------------------


def reencode(message: Message, /, **changes: object) -> bytes:
    obj = message.to_obj()
    obj.update(changes)
    frame: bytes = msgpack.packb({k: v for k, v in obj.items() if v is not DELETE})
    return frame


DELETE = object()


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"v": 0},
        {"v": True},
        {"v": DELETE},
        {"kind": "open_sesion"},
        {"kind": DELETE},
        {"kind": 1},
        {"extra": 1},
        {"max_length": DELETE},
        {"max_length": 0},
        {"max_length": 2**24 + 1},
        {"max_length": 2**64 - 1},
        {"max_length": -(2**63)},
        {"max_length": 1.0},
        {"max_length": True},
        {"span_start": 12},
        {"span_end": 65536},
        {"session_id": b"\x01" * 15},
        {"session_id": "0" * 16},
        {"model_id": None},
        {"adapter_id": b"\x03" * 31},
    ],
)
def test_a_malformed_open_session_is_a_remote_protocol_error(
    messages: list[Message], changes: dict[str, object]
) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(reencode(messages[0], **changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"push_from": "not a peer id"},
        {"push_to": 7},
        {"push_from": b"\x01" * 34},
        {"push_addrs": "/ip4/127.0.0.1/tcp/1"},
        {"push_addrs": ["/ip4/127.0.0.1/tcp/1"] * 9},
        {"push_addrs": ["x" * 257]},
        {"push_addrs": [7]},
        {"push_to": None},  # addresses without a peer to push to
    ],
)
def test_a_malformed_push_link_in_open_session_is_a_remote_protocol_error(
    messages: list[Message], changes: dict[str, object]
) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(reencode(messages[2], **changes))


@pytest.mark.parametrize("changes", [{"position_count": 0}, {"position_start": 2**32},
                                     {"step": -1}, {"position_count": DELETE}])
def test_a_malformed_pushed_step_request_is_a_remote_protocol_error(
    changes: dict[str, object]
) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(reencode(PushedStepRequest(SESSION, 0, 0, 1), **changes))


def test_a_step_request_whose_hash_is_not_its_tensors_digest_is_refused() -> None:
    request = StepRequest.create(SESSION, 0, 0, hidden())
    with pytest.raises(RemoteProtocolError, match="input_hash"):
        decode(reencode(request, input_hash=b"\0" * 32))
    with pytest.raises(LocalProtocolError):
        StepRequest(SESSION, 0, 0, b"\0" * 32, hidden())


@pytest.mark.parametrize("shape", [(2, 8), (1, 0, 8), (1, 1, 1, 8)])
def test_a_step_carries_a_non_empty_batch_seq_hidden_tensor(shape: tuple[int, ...]) -> None:
    tensor = WireTensor(DType.FLOAT32, shape, bytes(4 * math.prod(shape)))
    with pytest.raises(LocalProtocolError):
        StepRequest.create(SESSION, 0, 0, tensor)


def test_a_step_result_must_carry_the_receipt_of_its_own_output(swarm: Swarm) -> None:
    result = step_result(swarm)
    other = hidden(seq=5, dtype=DType.BFLOAT16)
    with pytest.raises(LocalProtocolError, match="output_hash"):
        StepResult(result.step, other, result.receipt)
    with pytest.raises(LocalProtocolError, match="step"):
        StepResult(1, result.hidden, result.receipt)
    with pytest.raises(RemoteProtocolError):
        decode(reencode(result, hidden=other.to_obj()))


def test_a_step_receipt_must_name_its_own_step(swarm: Swarm) -> None:
    receipt = step_result(swarm).receipt
    with pytest.raises(RemoteProtocolError, match="step"):
        decode(reencode(StepReceipt(0, receipt), step=1))
    with pytest.raises(LocalProtocolError):
        StepReceipt(1, receipt)


def test_an_error_frame_has_a_known_code_and_a_bounded_message() -> None:
    frame = ErrorFrame(ErrorCode.INTERNAL, "x")
    with pytest.raises(RemoteProtocolError, match="unknown code"):
        decode(reencode(frame, code="teapot"))
    with pytest.raises(RemoteProtocolError):
        decode(reencode(frame, message="x" * 1025))
    with pytest.raises(LocalProtocolError):
        ErrorFrame("busy", "x")


@pytest.mark.parametrize("load", [math.nan, math.inf, -0.5, 1])
def test_node_info_load_is_a_finite_non_negative_float(swarm: Swarm, load: float) -> None:
    info = NodeInfo(swarm.identities[0].peer_id, MODEL, 0, 12, DType.FLOAT16, 0.5, 8, "0.1.0")
    with pytest.raises(RemoteProtocolError):
        decode(reencode(info, load=load))


def test_node_info_names_a_well_formed_peer_id_and_an_allowed_dtype(swarm: Swarm) -> None:
    info = NodeInfo(swarm.identities[0].peer_id, MODEL, 0, 12, DType.FLOAT16, 0.5, 8, "0.1.0")
    with pytest.raises(RemoteProtocolError):
        decode(reencode(info, peer_id="12D3KooWxyz"))
    with pytest.raises(RemoteProtocolError):
        decode(reencode(info, dtype="float64"))


# --- resource limits ----------------------------------------------------------------------


def test_an_oversize_frame_is_refused_before_decoding() -> None:
    limits = WireLimits(max_message_bytes=1024)
    with pytest.raises(RemoteProtocolError, match="longer than 1024"):
        decode(StepRequest.create(SESSION, 0, 0, hidden(seq=64)).to_wire(), limits)


@pytest.mark.parametrize(
    "frame",
    [
        b"\xc6\xff\xff\xff\xff",  # bin 32 declaring 4 GiB
        b"\xdb\xff\xff\xff\xff",  # str 32 declaring 4 GiB
        b"\xdd\xff\xff\xff\xff",  # array 32 declaring 2**32 items
        b"\xdf\xff\xff\xff\xff",  # map 32 declaring 2**32 entries
        b"\xc9\xff\xff\xff\xff\x01",  # ext 32
    ],
)
def test_a_declared_huge_length_is_refused_without_allocating(frame: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(RemoteProtocolError):
            decode(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_a_frame_of_many_tiny_containers_is_refused_before_it_expands() -> None:
    # each empty array is one byte on the wire but a 56-byte Python list once decoded
    frame = msgpack.packb([[[] for _ in range(60)] for _ in range(60)])
    with pytest.raises(RemoteProtocolError, match="too many msgpack objects"):
        decode(frame)


def test_a_tensor_over_the_limits_is_refused_inside_a_message() -> None:
    frame = StepRequest.create(SESSION, 0, 0, hidden(seq=64)).to_wire()
    with pytest.raises(RemoteProtocolError):
        decode(frame, WireLimits(tensor=TensorLimits(max_bytes=1024)))


# --- fuzzing ------------------------------------------------------------------------------


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(data)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.binary(max_size=40) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=20,
)


@settings(max_examples=300)
@given(obj=msgpack_values)
def test_random_msgpack_values_raise_only_remote_protocol_error(obj: object) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(msgpack.packb(obj))


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, 100), data=st.data())
def test_a_valid_message_with_one_field_replaced_decodes_or_raises_remote_protocol_error(
    messages: list[Message], index: int, data: st.DataObject
) -> None:
    message = messages[index % len(messages)]
    obj = message.to_obj()
    key = data.draw(st.sampled_from(sorted(obj)))
    obj[key] = data.draw(msgpack_values)
    with contextlib.suppress(RemoteProtocolError):
        decode(msgpack.packb(obj))


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, 100), position=st.integers(0))
def test_a_single_bit_flip_in_any_frame_decodes_or_raises_remote_protocol_error(
    messages: list[Message], index: int, position: int
) -> None:
    frame = bytearray(encode(messages[index % len(messages)]))
    bit = position % (len(frame) * 8)
    frame[bit // 8] ^= 1 << (bit % 8)
    with contextlib.suppress(RemoteProtocolError):
        decode(bytes(frame))


def test_a_refusal_cuts_a_reason_of_any_length_to_the_protocol_limit() -> None:
    long = ErrorFrame.refusal(ErrorCode.BAD_REQUEST, "x" * (10 * MAX_ERROR_CHARS))
    assert long.message == "x" * MAX_ERROR_CHARS
    assert ErrorFrame.refusal(ErrorCode.BUSY, "full").message == "full"
