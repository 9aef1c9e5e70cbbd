"""Model ids and per-layer weight hashes (normative text: ``specs/model-id.md``).

Rules:
- Hashes are BLAKE2b-256 with a distinct ``person`` string per kind, so a layer hash can never be
  mistaken for a model id or a tensor digest.
- A tensor is identified by its block-local name, safetensors dtype tag, shape and the digest of
  its stored little-endian bytes; a layer hash covers its tensors sorted by name; the model id
  covers the canonical config hash, the ordered layer hashes and the client parts' hash.
- The same files give the same id on any machine: nothing depends on paths, file layout
  (single file or shards, ``model.`` prefix or not) or the transformers version's defaults for
  fields outside the canonical allowlist.
- Tensor digests are cached per safetensors file in a JSON sidecar keyed by (path, size,
  mtime_ns); an entry whose key does not match the file now is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NewType

import torch

from .checkpoint import SAFETENSORS_DTYPES, Checkpoint
from .errors import InvalidInput, ModelError

__all__ = [
    "DEFAULT_CACHE_DIR",
    "ModelDigest",
    "ModelId",
    "TensorEntry",
    "config_hash",
    "layer_hash",
    "layer_hash_of_tensors",
    "model_digest",
    "model_id",
]

ModelId = NewType("ModelId", bytes)

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "darwin"
DIGEST_SIZE = 32
PERSON_TENSOR = b"darwin.tensor.v1"
PERSON_LAYER = b"darwin.layer.v1"
PERSON_CLIENT = b"darwin.client.v1"
PERSON_CONFIG = b"darwin.config.v1"
PERSON_MODEL = b"darwin.model.v1"
_TAGS = {dtype: tag for tag, dtype in SAFETENSORS_DTYPES.items()}


def _blake(person: bytes) -> Any:
    return hashlib.blake2b(digest_size=DIGEST_SIZE, person=person)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as it enters a layer or client hash."""

    name: str  # block-local (``self_attn.q_proj.weight``) or client-local name
    dtype: str  # safetensors tag, e.g. "F32"
    shape: tuple[int, ...]
    digest: bytes  # BLAKE2b-256(person=PERSON_TENSOR) of the stored little-endian bytes


@dataclass(frozen=True)
class ModelDigest:
    """Everything that identifies a checkpoint's computation."""

    model_id: ModelId
    config_hash: bytes
    layer_hashes: tuple[bytes, ...]
    client_hash: bytes

    @property
    def hex(self) -> str:
        """The model id as lowercase hex."""
        return self.model_id.hex()


def hash_entries(entries: Iterable[TensorEntry], person: bytes = PERSON_LAYER) -> bytes:
    """Hash a set of tensors: count, then per tensor (sorted by UTF-8 name) its fields."""
    ordered = sorted(entries, key=lambda e: e.name.encode("utf-8"))
    h = _blake(person)
    h.update(struct.pack("<I", len(ordered)))
    for entry in ordered:
        name = entry.name.encode("utf-8")
        tag = entry.dtype.encode("ascii")
        h.update(struct.pack("<I", len(name)) + name)
        h.update(struct.pack("<B", len(tag)) + tag)
        h.update(struct.pack("<I", len(entry.shape)))
        h.update(b"".join(struct.pack("<Q", d) for d in entry.shape))
        h.update(entry.digest)
    return bytes(h.digest())


def config_hash(checkpoint: Checkpoint) -> bytes:
    """Hash of the canonical config: sorted-key compact JSON of the allowlisted fields."""
    canonical = json.dumps(
        checkpoint.family.canonical_config(),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    h = _blake(PERSON_CONFIG)
    h.update(canonical.encode("ascii"))
    return bytes(h.digest())


def layer_hash(
    checkpoint: Checkpoint, index: int, *, cache_dir: Path | None = DEFAULT_CACHE_DIR
) -> bytes:
    """Hash of block `index`'s stored tensors (reads only that block's bytes if uncached).

    Raises:
        InvalidInput: `index` outside ``[0, n_layers)``.
        CheckpointError: the block has no tensors or its file cannot be read.
    """
    if not 0 <= index < checkpoint.n_layers:
        raise InvalidInput(f"layer {index} is outside [0, {checkpoint.n_layers})")
    local = _block_names(checkpoint, index)
    digests = _DigestStore(cache_dir).digests(checkpoint, local.values())
    return hash_entries(_entries(checkpoint, local, digests), PERSON_LAYER)


def layer_hash_of_tensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Layer hash of in-memory tensors keyed by block-local name, in their stored dtype.

    Lets a verifier that holds a block's original tensors check them against a layer hash;
    it equals `layer_hash` of the checkpoint the tensors were read from.

    Raises:
        ModelError: a dtype with no safetensors tag, or a big-endian machine.
    """
    entries = []
    for name, tensor in tensors.items():
        tag = _TAGS.get(tensor.dtype)
        if tag is None:
            raise ModelError(f"tensor {name} has dtype {tensor.dtype}, which has no tag")
        entries.append(TensorEntry(name, tag, tuple(tensor.shape), _tensor_digest(tensor)))
    return hash_entries(entries, PERSON_LAYER)


def model_digest(
    checkpoint: Checkpoint, *, cache_dir: Path | None = DEFAULT_CACHE_DIR
) -> ModelDigest:
    """Config hash, every layer hash, the client hash and the model id over them.

    Reads every weight once (then the cache under `cache_dir` answers while files are
    unchanged; ``cache_dir=None`` disables it).
    """
    store = _DigestStore(cache_dir)
    blocks = [_block_names(checkpoint, i) for i in range(checkpoint.n_layers)]
    client = checkpoint.family.client_tensor_names()
    wanted = [name for local in [*blocks, client] for name in local.values()]
    digests = store.digests(checkpoint, wanted)
    layers = tuple(hash_entries(_entries(checkpoint, b, digests), PERSON_LAYER) for b in blocks)
    client_hash = hash_entries(_entries(checkpoint, client, digests), PERSON_CLIENT)
    cfg = config_hash(checkpoint)
    h = _blake(PERSON_MODEL)
    h.update(cfg + struct.pack("<I", len(layers)) + b"".join(layers) + client_hash)
    return ModelDigest(ModelId(bytes(h.digest())), cfg, layers, client_hash)


def model_id(checkpoint: Checkpoint, *, cache_dir: Path | None = DEFAULT_CACHE_DIR) -> ModelId:
    """The 32-byte model id (see `model_digest`)."""
    return model_digest(checkpoint, cache_dir=cache_dir).model_id


# -- internals -----------------------------------------------------------------------------


def _block_names(checkpoint: Checkpoint, index: int) -> dict[str, str]:
    """Block-local name -> checkpoint name, legacy buffers left out."""
    family = checkpoint.family
    prefix = family.block_prefix(index)
    names = {
        name[len(prefix) :]: name
        for name in checkpoint.names_with_prefix(prefix)
        if not family.is_ignored(name[len(prefix) :])
    }
    if not names:
        raise ModelError(f"block {index} has no tensors under {prefix} in {checkpoint.path}")
    return names


def _entries(
    checkpoint: Checkpoint, local: Mapping[str, str], digests: Mapping[str, bytes]
) -> list[TensorEntry]:
    entries = []
    for local_name, name in local.items():
        info = checkpoint.info(name)
        entries.append(TensorEntry(local_name, info.dtype, info.shape, digests[name]))
    return entries


def _tensor_digest(tensor: torch.Tensor) -> bytes:
    if sys.byteorder != "little":
        raise ModelError("hashing in-memory tensors needs a little-endian machine")
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    h = _blake(PERSON_TENSOR)
    if flat.numel():
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return bytes(h.digest())


class _DigestStore:
    """Tensor digests of safetensors files, cached per file under ``cache_dir/tensor-digests``."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.root = None if cache_dir is None else Path(cache_dir) / "tensor-digests"

    def digests(self, checkpoint: Checkpoint, names: Iterable[str]) -> dict[str, bytes]:
        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(checkpoint.info(name).file, []).append(name)
        out: dict[str, bytes] = {}
        for file, file_names in sorted(by_file.items()):
            out.update(self._file_digests(checkpoint, file, file_names))
        return out

    def _file_digests(
        self, checkpoint: Checkpoint, file: Path, names: list[str]
    ) -> dict[str, bytes]:
        key = _file_key(file)
        known = self._load(file, key)
        missing = sorted(
            (n for n in names if n not in known), key=lambda n: checkpoint.info(n).offset
        )
        for name in missing:
            h = _blake(PERSON_TENSOR)
            for chunk in checkpoint.raw_chunks(name):
                h.update(chunk)
            known[name] = bytes(h.digest())
        if missing and _file_key(file) == key:  # never cache what was read from a changing file
            self._save(file, key, known)
        return {name: known[name] for name in names}

    def _entry_path(self, file: Path) -> Path | None:
        if self.root is None:
            return None
        tag = hashlib.blake2b(str(file.resolve()).encode(), digest_size=16).hexdigest()
        return self.root / f"{tag}.json"

    def _load(self, file: Path, key: dict[str, Any]) -> dict[str, bytes]:
        path = self._entry_path(file)
        if path is None or not path.exists():
            return {}
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if entry.get("key") != key:
                return {}  # stale: the file changed (or another file hashed to this slot)
            return {name: bytes.fromhex(d) for name, d in entry["digests"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # a corrupt sidecar is only a cache miss

    def _save(self, file: Path, key: dict[str, Any], digests: Mapping[str, bytes]) -> None:
        path = self._entry_path(file)
        if path is None:
            return
        entry = {"key": key, "digests": {n: d.hex() for n, d in sorted(digests.items())}}
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(entry, handle, sort_keys=True)
            os.replace(tmp, path)  # atomic: readers see the old entry or the new one
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            # caching is best effort; the digests are still correct


def _file_key(file: Path) -> dict[str, Any]:
    stat = file.stat()
    return {"path": str(file.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
