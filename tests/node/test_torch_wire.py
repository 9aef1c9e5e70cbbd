"""Digests of torch tensors: one definition (the protocol's), however they are computed."""

from __future__ import annotations

import pytest
import torch

from darwin.model.torch_wire import digest, digest_all, from_wire, to_wire
from darwin.protocol import tensor_digest


def _step_tensors(shape: tuple[int, ...], dtype: torch.dtype, count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator).to(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
# A decode leaf, and a prefill leaf that float32 and float16 hash on BLAKE3's threads.
@pytest.mark.parametrize("shape", [(1, 1, 64), (1, 4096, 128)])
def test_a_steps_digests_are_each_tensors_protocol_digest(
        dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    tensors = _step_tensors(shape, dtype, 5)
    expected = tuple(
        tensor_digest(to_wire(t).dtype, to_wire(t).shape, to_wire(t).data) for t in tensors)
    assert digest_all(tensors) == expected
    assert tuple(digest(t) for t in tensors) == expected


def test_a_non_contiguous_tensor_is_hashed_as_its_contiguous_bytes() -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    view = base.t()  # same values, transposed strides
    assert not view.is_contiguous()
    assert digest(view) == digest(view.contiguous())
    assert digest_all([view, view]) == (digest(view.contiguous()),) * 2


def test_a_tensor_of_an_autograd_graph_is_hashed_as_its_values() -> None:
    leaf = torch.ones(1, 2, 8, requires_grad=True)
    assert digest(leaf * 2) == digest(torch.full((1, 2, 8), 2.0))


def test_a_decoded_tensor_has_the_digest_it_travelled_with() -> None:
    tensor = _step_tensors((2, 3, 16), torch.bfloat16, 1)[0]
    wire = to_wire(tensor)
    assert digest(from_wire(wire)) == wire.digest()


def test_tensors_of_different_forms_are_not_one_step() -> None:
    with pytest.raises(ValueError):
        digest_all([torch.zeros(1, 2, 4), torch.zeros(1, 3, 4)])
    with pytest.raises(ValueError):
        digest_all([torch.zeros(1, 2, 4), torch.zeros(1, 2, 4, dtype=torch.float16)])
    assert digest_all([]) == ()
