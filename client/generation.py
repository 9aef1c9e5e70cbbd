"""Autoregressive generation: embed on the client, blocks through the session, head on the client.

The client holds the embeddings and the head (``docs/architecture.md``); only hidden states
travel. The first step is the prompt's prefill; every later step is one token.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from darwin.client.sampling import Sampler, SamplingConfig
from darwin.client.session import InferenceSession
from darwin.model import ClientParts


async def generate(
    parts: ClientParts,
    session: InferenceSession,
    prompt_ids: list[int],
    sampling: SamplingConfig,
    on_token: Callable[[int], None] | None = None,
) -> list[int]:
    """Generate up to ``sampling.max_new_tokens`` token ids after `prompt_ids`.

    Args:
        on_token: called with each new token as soon as it is chosen (for streaming output).

    Raises:
        ValueError: an empty prompt.
        Whatever the session's hops raise (receipt errors, unreachable nodes).
    """
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    sampler = Sampler(sampling)
    new_ids: list[int] = []
    step_ids = torch.tensor([prompt_ids], dtype=torch.long)  # (1, seq)
    while len(new_ids) < sampling.max_new_tokens:
        hidden = parts.embed(step_ids, position_offset=session.position)  # (1, seq, hidden)
        output = await session.step(hidden)
        token = sampler.pick(parts.logits(output[:, -1:])[0, -1])
        new_ids.append(token)
        if on_token is not None:
            on_token(token)
        if token == sampling.stop_token_id:
            break
        step_ids = torch.tensor([[token]], dtype=torch.long)  # (1, 1)
    return new_ids
