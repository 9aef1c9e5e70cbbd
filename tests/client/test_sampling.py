"""Token choice: greedy is argmax, a seed reproduces a sampled run, top-p keeps the nucleus."""

from __future__ import annotations

import pytest
import torch

from darwin.client.detokenize import TextStream
from darwin.client.sampling import Sampler, SamplingConfig, SamplingError

LOGITS = torch.tensor([0.1, 2.0, 1.9, -1.0, 0.5])


def test_greedy_picks_the_argmax() -> None:
    assert Sampler(SamplingConfig()).pick(LOGITS) == 1


def test_the_same_seed_draws_the_same_tokens() -> None:
    config = SamplingConfig(temperature=1.5, seed=7)
    first, second = Sampler(config), Sampler(config)
    assert [first.pick(LOGITS) for _ in range(50)] == [second.pick(LOGITS) for _ in range(50)]


def test_sampling_visits_more_than_one_token() -> None:
    sampler = Sampler(SamplingConfig(temperature=2.0, seed=1))
    assert len({sampler.pick(LOGITS) for _ in range(200)}) > 2


def test_a_small_top_p_keeps_only_the_most_likely_token() -> None:
    sampler = Sampler(SamplingConfig(temperature=1.0, top_p=0.01, seed=3))
    assert {sampler.pick(LOGITS) for _ in range(100)} == {1}


def test_top_p_keeps_the_smallest_set_reaching_the_mass() -> None:
    sampler = Sampler(SamplingConfig(temperature=1.0, top_p=0.7, seed=3))
    assert {sampler.pick(LOGITS) for _ in range(300)} == {1, 2}


@pytest.mark.parametrize("field,value", [("max_new_tokens", 0), ("temperature", -0.1),
                                         ("top_p", 0.0), ("top_p", 1.5)])
def test_out_of_range_settings_are_refused(field: str, value: float) -> None:
    with pytest.raises(SamplingError, match=field):
        SamplingConfig(**{field: value})


class _Bytes:
    """A byte-level decoder: ids are bytes."""

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_text_stream_waits_for_a_complete_character() -> None:
    stream = TextStream(_Bytes())
    pieces = [stream.push(b) for b in "né!".encode()]
    assert pieces == ["n", "", "é", "!"]
