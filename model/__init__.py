"""darwin.model: load and run one span of a transformer's blocks, and identify models.

Public names:
- `Checkpoint` opens a local Hugging Face directory lazily (safetensors headers only).
- `SpanRunner` runs blocks ``[start, end)`` for `SpanSession`s with KV caches, returning
  `SpanOutput` (the span's output and every layer's input, for commitments); streaming-weights
  mode keeps at most K blocks in memory.
- `ClientParts` holds embeddings, final norm and head (or pooling); `load_tokenizer`.
- `model_digest` / `model_id` / `layer_hash` identify a model and each of its layers.
- `make_tiny` writes small deterministic checkpoints for tests and demos.
- Every deliberate error is a `ModelError`.

This package never imports ``darwin.protocol``; hashing of activations and receipts is glued
in by ``darwin.node``.
"""

from .checkpoint import Checkpoint, TensorInfo
from .client_parts import ClientParts, load_tokenizer, mean_pool
from .errors import (
    CheckpointError,
    InvalidInput,
    ModelError,
    SessionLengthExceeded,
    SpanOutOfRange,
    UnsupportedArchitecture,
    UnsupportedOperation,
)
from .family import Family
from .model_id import (
    DEFAULT_CACHE_DIR,
    ModelDigest,
    ModelId,
    config_hash,
    layer_hash,
    layer_hash_of_tensors,
    model_digest,
    model_id,
)
from .registry import family_class, supported_model_types
from .span_runner import Span, SpanOutput, SpanRunner, SpanSession
from .tiny import TINY_FAMILIES, make_tiny

__all__ = [
    "DEFAULT_CACHE_DIR",
    "TINY_FAMILIES",
    "Checkpoint",
    "CheckpointError",
    "ClientParts",
    "Family",
    "InvalidInput",
    "ModelDigest",
    "ModelError",
    "ModelId",
    "SessionLengthExceeded",
    "Span",
    "SpanOutOfRange",
    "SpanOutput",
    "SpanRunner",
    "SpanSession",
    "TensorInfo",
    "UnsupportedArchitecture",
    "UnsupportedOperation",
    "config_hash",
    "family_class",
    "layer_hash",
    "layer_hash_of_tensors",
    "load_tokenizer",
    "make_tiny",
    "mean_pool",
    "model_digest",
    "model_id",
    "supported_model_types",
]
