"""Shared helpers of the swarm tests: local node processes, the reference generation.

Every swarm is a `LocalSwarm` of ``darwin-node join`` subprocesses on 127.0.0.1 (port 0); a node
is ready when it prints its ``listening`` line (waited for with a deadline), and leaving the
``with`` block stops every process whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from darwin.client.local_swarm import LocalSwarm, LocalSwarmConfig

START_TIMEOUT = 120.0  # seconds for a node to listen; generous, the machine is shared


@contextmanager
def local_swarm(model: Path, root: Path, blocks: list[str]) -> Iterator[LocalSwarm]:
    """A bootstrap node serving ``blocks[0]``, then the others joining through it, concurrently."""
    with LocalSwarm(model, root, LocalSwarmConfig(start_timeout=START_TIMEOUT)) as swarm:
        swarm.start(blocks[:1], ["bootstrap"])
        swarm.start(blocks[1:])
        yield swarm


@cache
def reference_generation(model: Path, prompt_ids: tuple[int, ...], new_tokens: int) -> list[int]:
    """Plain transformers greedy generation of the same checkpoint (stops at EOS as we do)."""
    reference = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    out = reference.generate(torch.tensor([prompt_ids]), do_sample=False,
                             max_new_tokens=new_tokens,
                             attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long))
    return out[0, len(prompt_ids):].tolist()
