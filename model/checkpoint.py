"""A local Hugging Face checkpoint directory, opened lazily.

Rules:
- Opening reads ``config.json`` and the safetensors *headers* only (names, dtypes, shapes and
  byte offsets); no weight is read until a caller asks for tensors by name, so a node that
  serves blocks ``[a, b)`` touches only those blocks' bytes.
- Both layouts are accepted: one ``model.safetensors``, or shards listed by
  ``model.safetensors.index.json``. Pickled ``*.bin`` weights are refused (they execute code).
- Nothing is fetched from a hub; the path must be a local directory.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open

from .errors import CheckpointError, UnsupportedArchitecture

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from .family import Family

__all__ = ["SAFETENSORS_DTYPES", "Checkpoint", "TensorInfo"]

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors reference limit

# safetensors dtype tag -> torch dtype (the tags are what the files and the hashes use).
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it is, from the safetensors header."""

    name: str
    file: Path
    dtype: str  # safetensors tag, e.g. "F32"
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in `file`
    nbytes: int

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype of the stored tensor.

        Raises:
            CheckpointError: the tag has no torch equivalent here.
        """
        try:
            return SAFETENSORS_DTYPES[self.dtype]
        except KeyError:
            raise CheckpointError(
                f"tensor {self.name} in {self.file.name} has unsupported dtype {self.dtype}"
            ) from None


class Checkpoint:
    """A checkpoint directory: its config, its family and an index of its tensors."""

    def __init__(
        self,
        path: Path,
        config: PretrainedConfig,
        tensors: Mapping[str, TensorInfo],
        family: Family,
    ) -> None:
        self.path = path
        self.config = config
        self.tensors = dict(tensors)
        self.family = family

    @classmethod
    def open(cls, path: str | Path) -> Checkpoint:
        """Open a local checkpoint directory without reading any weight.

        Raises:
            CheckpointError: no directory, no config.json, no safetensors, a corrupt header or
                an index that names a tensor its shard lacks.
            UnsupportedArchitecture: ``model_type`` has no family here.
        """
        from .registry import family_class

        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise CheckpointError(f"checkpoint {root} is not a directory")
        raw_config = _read_json(root / CONFIG_FILE)
        model_type = raw_config.get("model_type")
        if not isinstance(model_type, str):
            raise UnsupportedArchitecture(f"{root / CONFIG_FILE} has no model_type")
        family_cls = family_class(model_type)
        config = _load_config(root)
        tensors = _index_tensors(root)
        base = family_cls.find_base_prefix(tensors)
        return cls(root, config, tensors, family_cls(config, base))

    # -- what the checkpoint is ------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return self.family.n_layers

    @property
    def hidden_size(self) -> int:
        """Width of the hidden states that flow between blocks."""
        return self.family.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the blocks are stored in (that of block 0's first floating tensor)."""
        prefix = self.family.block_prefix(0)
        for name in sorted(self.names_with_prefix(prefix)):
            dtype = self.tensors[name].torch_dtype
            if dtype.is_floating_point:
                return dtype
        raise CheckpointError(f"{self.path} has no floating-point tensor under {prefix}")

    @property
    def files(self) -> tuple[Path, ...]:
        """The safetensors files, sorted, each once."""
        return tuple(sorted({info.file for info in self.tensors.values()}))

    def names_with_prefix(self, prefix: str) -> list[str]:
        """Tensor names that start with `prefix` (e.g. ``"model.layers.3."``), sorted."""
        return sorted(name for name in self.tensors if name.startswith(prefix))

    def info(self, name: str) -> TensorInfo:
        """Header entry of one tensor.

        Raises:
            CheckpointError: no tensor of that name.
        """
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"tensor {name} is missing from {self.path}") from None

    # -- reading ---------------------------------------------------------------------------

    def read(
        self,
        names: Iterable[str],
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, torch.Tensor]:
        """Read the named tensors (and only those) into private memory, floats cast to `dtype`.

        Raises:
            CheckpointError: a name is missing or a file cannot be read.
        """
        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(self.info(name).file, []).append(name)
        out: dict[str, torch.Tensor] = {}
        for file, file_names in sorted(by_file.items()):
            try:
                with safe_open(str(file), framework="pt", device=str(device)) as handle:
                    for name in file_names:
                        out[name] = _private(handle.get_tensor(name), dtype)
            except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
                raise CheckpointError(f"cannot read {file}: {exc}") from exc
        return out

    def read_into(self, targets: Mapping[str, torch.Tensor]) -> None:
        """Copy the named tensors into existing tensors of the same shape (casting as needed).

        Lets the streaming mode reuse an evicted block's memory for the next block, so memory
        stays at exactly K blocks instead of depending on the allocator.

        Raises:
            CheckpointError: a name is missing, a shape differs or a file cannot be read.
        """
        by_file: dict[Path, list[str]] = {}
        for name, target in targets.items():
            info = self.info(name)
            if info.shape != tuple(target.shape):
                raise CheckpointError(
                    f"tensor {name} has shape {list(info.shape)}, expected {list(target.shape)}"
                )
            by_file.setdefault(info.file, []).append(name)
        for file, file_names in sorted(by_file.items()):
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for name in file_names:
                        targets[name].copy_(handle.get_tensor(name))
            except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
                raise CheckpointError(f"cannot read {file}: {exc}") from exc

    def raw_chunks(self, name: str, chunk: int = 8 << 20) -> Iterator[bytes]:
        """The stored (little-endian) bytes of one tensor, in chunks, for hashing."""
        info = self.info(name)
        try:
            handle = info.file.open("rb")
        except OSError as exc:
            raise CheckpointError(f"cannot read {info.file}: {exc}") from exc
        with handle:
            handle.seek(info.offset)
            left = info.nbytes
            while left:
                data = handle.read(min(chunk, left))
                if not data:
                    raise CheckpointError(f"{info.file} ends inside tensor {name}")
                left -= len(data)
                yield data

    def __repr__(self) -> str:
        return (
            f"Checkpoint({str(self.path)!r}, family={self.family.name}, "
            f"n_layers={self.n_layers}, hidden={self.hidden_size})"
        )


def _private(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A tensor in memory of our own, cast to `dtype` if floating.

    On CPU, safetensors hands out views of its read-only mapping of the file. Weights we run
    must not change (or fault) if the file is rewritten or truncated later, and memory must be
    accounted to the process, so they are copied out of the mapping.
    """
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    return tensor.clone() if tensor.device.type == "cpu" else tensor


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data


def _load_config(root: Path) -> PretrainedConfig:
    from transformers import AutoConfig

    try:
        config: PretrainedConfig = AutoConfig.from_pretrained(str(root), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"transformers cannot read {root / CONFIG_FILE}: {exc}") from exc
    return config


def _index_tensors(root: Path) -> dict[str, TensorInfo]:
    """Map every tensor name to its header entry, across one file or all shards."""
    index_path = root / INDEX_FILE
    if index_path.exists():
        weight_map = _read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index_path} has no weight_map")
        tensors: dict[str, TensorInfo] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_header(root / str(shard)))
        for name, shard in weight_map.items():
            if name not in tensors or tensors[name].file.name != shard:
                raise CheckpointError(
                    f"{index_path} lists tensor {name} in {shard}, which lacks it"
                )
        return tensors
    single = root / SINGLE_FILE
    if single.exists():
        return read_header(single)
    raise CheckpointError(
        f"{root} has neither {SINGLE_FILE} nor {INDEX_FILE} (only safetensors weights are read)"
    )


def read_header(file: Path) -> dict[str, TensorInfo]:
    """Parse one safetensors header into `TensorInfo`s, checking offsets against the file size.

    Raises:
        CheckpointError: unreadable file, oversized or malformed header, out-of-file offsets.
    """
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise CheckpointError(f"{file} has a corrupt safetensors header length {length}")
            header = json.loads(handle.read(length))
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read safetensors header of {file}: {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{file} has a safetensors header that is not an object")
    start = 8 + length
    out: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in entry["data_offsets"])
            shape = tuple(int(d) for d in entry["shape"])
            dtype = str(entry["dtype"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{file} has a malformed entry for {name}") from exc
        if not 0 <= begin <= end or start + end > size:
            raise CheckpointError(f"{file}: tensor {name} lies outside the file")
        out[name] = TensorInfo(name, file, dtype, shape, start + begin, end - begin)
    return out
