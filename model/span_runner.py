"""Running one span ``[start, end)`` of a model's blocks, with a KV cache per session.

Rules:
- A `SpanRunner` holds weights (or streams them) and is shared by all sessions; a `SpanSession`
  holds one inference session's cache and position. Sessions are independent, so steps of
  different sessions may run in different threads at once; steps of one session are serialised
  by the session's lock.
- A step takes hidden states (batch, seq, hidden) at the session's position and advances it by
  seq: the first step is the prefill, one-token steps are decoding, a later multi-token step is
  a chunked prefill. The causal mask is built from absolute positions, so all three are exact.
- Every step returns the input of each layer of the span (``layer_inputs[0]`` is the span's
  input) and the span's output, which is what a node commits to in its receipt.
- Inputs are validated before any state changes; a failed step leaves the session as it was.
- Encoder families (BERT) keep no cache: each step is a whole sequence and the position stays 0.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import torch

from .checkpoint import Checkpoint
from .errors import InvalidInput, SessionLengthExceeded, SpanOutOfRange
from .family import Family
from .kv_cache import SpanKVCache
from .streaming import BlockSource, ResidentBlocks, StreamingBlocks

__all__ = ["Span", "SpanOutput", "SpanRunner", "SpanSession"]


@dataclass(frozen=True)
class SpanOutput:
    """What one step of a span produced."""

    hidden: torch.Tensor  # (batch, seq, hidden): the span's output
    layer_inputs: list[torch.Tensor]  # per layer of the span, its (batch, seq, hidden) input


@dataclass
class SpanSession:
    """One inference session's state on one span: its cache and how far it has got."""

    max_length: int
    span: tuple[int, int]  # the runner's [start, end); a session belongs to one span
    position: int = 0  # tokens already processed (the cache's length)
    batch_size: int | None = None  # fixed by the first step
    cache: SpanKVCache | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Span(Protocol):
    """What serving a span needs of it: `SpanRunner`, or a wrapper around one."""

    checkpoint: Checkpoint
    family: Family
    start: int
    end: int
    dtype: torch.dtype

    def sub_span(self, start: int, end: int) -> Span: ...

    def new_session(self, max_length: int) -> SpanSession: ...

    def forward(self, session: SpanSession, hidden: torch.Tensor) -> SpanOutput: ...


class SpanRunner:
    """Blocks ``[start, end)`` of one checkpoint, ready to run sessions."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        start: int,
        end: int,
        dtype: torch.dtype,
        blocks: BlockSource,
    ) -> None:
        self.checkpoint = checkpoint
        self.family = checkpoint.family
        self.start = start
        self.end = end
        self.dtype = dtype
        self.blocks = blocks

    @classmethod
    def load(
        cls,
        checkpoint: Checkpoint,
        start: int,
        end: int,
        *,
        dtype: torch.dtype = torch.float32,
        resident_blocks: int | None = None,
        device: torch.device | str = "cpu",
    ) -> SpanRunner:
        """Load blocks ``[start, end)``, reading only their tensors.

        With `resident_blocks` = K, nothing is loaded yet: at most K blocks will be in memory
        at once, each read just before use (streaming-weights mode).

        Raises:
            SpanOutOfRange: an empty span or one outside ``[0, n_layers)``.
            CheckpointError: a block's tensors are missing, unexpected or mis-shaped.
        """
        n_layers = checkpoint.n_layers
        if not 0 <= start < end <= n_layers:
            raise SpanOutOfRange(
                f"span [{start}, {end}) is not a non-empty range within [0, {n_layers}) "
                f"of {checkpoint.path.name} (n_layers={n_layers})"
            )
        blocks: BlockSource
        if resident_blocks is None:
            blocks = ResidentBlocks(checkpoint, start, end, dtype, device)
        else:
            blocks = StreamingBlocks(checkpoint, start, end, dtype, device, resident_blocks)
        return cls(checkpoint, start, end, dtype, blocks)

    def sub_span(self, start: int, end: int) -> SpanRunner:
        """A runner over blocks ``[start, end)`` of this span that shares its loaded blocks.

        Blocks and caches are keyed by global index, so a session of the view computes exactly
        what the same layers compute inside the whole span; nothing is loaded or copied.

        Raises:
            SpanOutOfRange: ``[start, end)`` is empty or not inside this runner's span.
        """
        if not self.start <= start < end <= self.end:
            raise SpanOutOfRange(
                f"span [{start}, {end}) is not a non-empty range within the served "
                f"[{self.start}, {self.end})"
            )
        return SpanRunner(self.checkpoint, start, end, self.dtype, self.blocks)

    @property
    def n_blocks(self) -> int:
        """Number of blocks in the span."""
        return self.end - self.start

    def new_session(self, max_length: int) -> SpanSession:
        """A fresh session that may hold up to `max_length` tokens.

        Raises:
            InvalidInput: `max_length` is not positive.
        """
        if max_length < 1:
            raise InvalidInput(f"max_length must be positive, got {max_length}")
        cache = SpanKVCache(max_length) if self.family.uses_kv_cache else None
        return SpanSession(max_length=max_length, span=(self.start, self.end), cache=cache)

    def forward(
        self,
        session: SpanSession,
        hidden: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
    ) -> SpanOutput:
        """Run one step of `session` through the span.

        Args:
            session: from `new_session` of this runner.
            hidden: (batch, seq, hidden) in the runner's dtype.
            attention_mask: (batch, seq) padding mask; encoders only.

        Raises:
            InvalidInput: wrong rank, width, dtype or batch, a mask given to a decoder, or a
                session of another span.
            SessionLengthExceeded: the step would pass the session's ``max_length``.
        """
        with session.lock:
            self._check_step(session, hidden, attention_mask)
            with self.blocks.running(), torch.inference_mode():
                output = self._run(session, hidden, attention_mask)
            if self.family.uses_kv_cache:
                session.position += hidden.shape[1]
            session.batch_size = hidden.shape[0]
            return output

    def replay(self, session: SpanSession, past_inputs: list[torch.Tensor]) -> SpanOutput:
        """Rebuild a fresh session's cache from the inputs a failed node had been sent.

        The inputs are concatenated along the sequence and run as one prefill; the returned
        output covers that whole sequence. Generation then continues as if uninterrupted.

        Raises:
            InvalidInput: the session is not fresh, no inputs, or inputs that do not concatenate.
            SessionLengthExceeded: the history is longer than the session's ``max_length``.
        """
        if not self.family.uses_kv_cache:
            raise InvalidInput(f"{self.family.name} keeps no cache; there is nothing to replay")
        if session.position != 0:
            raise InvalidInput(f"replay needs a fresh session, this one is at {session.position}")
        if not past_inputs:
            raise InvalidInput("replay needs at least one past input")
        try:
            history = torch.cat(past_inputs, dim=1)  # (batch, total, hidden)
        except (RuntimeError, TypeError) as exc:
            raise InvalidInput(f"past inputs do not concatenate along the sequence: {exc}") from exc
        return self.forward(session, history)

    # -- internals -------------------------------------------------------------------------

    def _check_step(
        self, session: SpanSession, hidden: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> None:
        if not isinstance(hidden, torch.Tensor) or hidden.ndim != 3:
            shape = list(hidden.shape) if isinstance(hidden, torch.Tensor) else type(hidden)
            raise InvalidInput(f"hidden states must be (batch, seq, hidden), got {shape}")
        if session.span != (self.start, self.end):
            raise InvalidInput(
                f"session of span {list(session.span)} used with span [{self.start}, {self.end})"
            )
        batch, seq, width = hidden.shape
        if width != self.family.hidden_size:
            raise InvalidInput(f"hidden width is {width}, the model's is {self.family.hidden_size}")
        if hidden.dtype != self.dtype:
            raise InvalidInput(f"hidden states are {hidden.dtype}, the span runs in {self.dtype}")
        if batch < 1 or seq < 1:
            raise InvalidInput(f"empty hidden states of shape {list(hidden.shape)}")
        if self.family.uses_kv_cache:
            if attention_mask is not None:
                raise InvalidInput(f"{self.family.name} sessions take no attention_mask")
            if session.batch_size is not None and batch != session.batch_size:
                raise InvalidInput(f"session batch is {session.batch_size}, this step's is {batch}")
        if session.position + seq > session.max_length:
            raise SessionLengthExceeded(
                f"session at position {session.position} with max_length {session.max_length} "
                f"cannot take {seq} more tokens"
            )

    def _run(
        self, session: SpanSession, hidden: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> SpanOutput:
        step = self.family.prepare_step(hidden, session.position, attention_mask)
        if session.cache is not None:
            session.cache.begin_step(session.position)
        layer_inputs: list[torch.Tensor] = []
        for index in range(self.start, self.end):
            layer_inputs.append(hidden)
            # No local name keeps the block alive past its step, so streaming's bound holds.
            hidden = self.family.run_block(
                self.blocks.get(index), index, hidden, step, session.cache
            )
        return SpanOutput(hidden=hidden, layer_inputs=layer_inputs)

    def __repr__(self) -> str:
        mode = "resident" if isinstance(self.blocks, ResidentBlocks) else "streaming"
        return (
            f"SpanRunner({self.checkpoint.path.name}, [{self.start}, {self.end}), "
            f"{self.dtype}, {mode})"
        )
