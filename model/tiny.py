"""Small deterministic checkpoints for tests and the demo, written without any download.

Rules:
- Same arguments, same files, byte for byte: every tensor is drawn from its own generator
  seeded by ``(seed, tensor name)``, so a tensor does not depend on the order or number of the
  others (block 2 of a 4-layer and of an 8-layer model are the same).
- The weights are non-trivial on purpose: scales are large enough that greedy generation
  wanders instead of repeating one token, which makes exactness tests able to fail.
- The output is an ordinary Hugging Face directory (``config.json``, ``model.safetensors``,
  tokenizer files) that ``AutoModelForCausalLM`` / ``AutoModel`` load as is.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch

from .errors import ModelError, UnsupportedArchitecture
from .tiny_tokenizer import write_tokenizer

__all__ = ["TINY_FAMILIES", "make_tiny"]

TINY_FAMILIES = ("llama", "mistral", "qwen2", "gpt2", "bert")
HEAD_DIM = 16
SLIDING_WINDOW = 16  # small, so tests with a few dozen tokens exercise the window


def make_tiny(
    family: str,
    out: str | Path,
    *,
    layers: int = 4,
    hidden: int = 64,
    seed: int = 0,
    vocab: int = 512,
    intermediate: int | None = None,
) -> Path:
    """Write a small seeded checkpoint of `family` into `out` and return its path.

    Args:
        family: one of `TINY_FAMILIES`.
        out: directory to create (files in it are overwritten).
        layers: number of blocks.
        hidden: hidden size, a multiple of 16 (heads of 16 dimensions).
        seed: changes every weight.
        vocab: model vocabulary; the tokenizer is trained up to this size.
        intermediate: MLP width, 4 * hidden by default.

    Raises:
        UnsupportedArchitecture: unknown family.
        ModelError: sizes that do not make a model.
    """
    if family not in TINY_FAMILIES:
        raise UnsupportedArchitecture(
            f"no tiny {family!r} model; choose from {', '.join(TINY_FAMILIES)}"
        )
    if layers < 1 or hidden < HEAD_DIM or hidden % HEAD_DIM or vocab < 300:
        raise ModelError(
            f"tiny model needs layers >= 1, hidden a positive multiple of {HEAD_DIM} and "
            f"vocab >= 300; got layers={layers}, hidden={hidden}, vocab={vocab}"
        )
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    specials = write_tokenizer(
        root, vocab=vocab, encoder=family == "bert", add_bos=family in ("llama", "mistral")
    )
    config = _config(family, layers, hidden, vocab, intermediate or 4 * hidden, specials)
    config.save_pretrained(str(root))
    _write_weights(config, root / "model.safetensors", seed)
    return root


def _config(
    family: str, layers: int, hidden: int, vocab: int, intermediate: int, specials: dict[str, int]
) -> Any:
    import transformers

    heads = hidden // HEAD_DIM
    kv_heads = heads // 2 if heads % 2 == 0 else heads  # grouped-query attention when possible
    decoder_common: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,  # room for the 1024-token benchmark prompt
        "bos_token_id": specials.get("bos"),
        "eos_token_id": specials.get("eos"),
        "pad_token_id": specials.get("pad"),
    }
    if family == "llama":
        return transformers.LlamaConfig(**decoder_common, tie_word_embeddings=False)
    if family == "mistral":
        return transformers.MistralConfig(**decoder_common, sliding_window=SLIDING_WINDOW)
    if family == "qwen2":
        return transformers.Qwen2Config(
            **decoder_common,
            use_sliding_window=True,
            sliding_window=SLIDING_WINDOW,
            max_window_layers=layers // 2,
            tie_word_embeddings=True,
        )
    if family == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab,
            n_positions=1024,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=intermediate,
            bos_token_id=specials["bos"],
            eos_token_id=specials["eos"],
            pad_token_id=specials["pad"],
        )
    return transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        pad_token_id=specials["pad"],
    )


def _shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors transformers saves for this config (ties left out)."""
    import transformers

    auto: Any = transformers.AutoModelForCausalLM
    if config.model_type == "bert":
        auto = transformers.AutoModel
    with torch.device("meta"):
        model = auto.from_config(config)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        for tied in getattr(model, "_tied_weights_keys", None) or {}:
            shapes.pop(tied, None)
    return shapes


def _tensor(name: str, shape: tuple[int, ...], seed: int, hidden: int) -> torch.Tensor:
    """One tensor, from a generator seeded by (seed, name) only."""
    digest = hashlib.blake2b(f"darwin-tiny/{seed}/{name}".encode(), digest_size=8).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    if len(shape) == 1 and name.endswith("weight"):  # norm gains near one
        return 1.0 + 0.1 * noise
    if len(shape) == 1:  # biases
        return 0.1 * noise
    return noise * (2.0 / math.sqrt(hidden))


def _write_weights(config: Any, path: Path, seed: int) -> None:
    from safetensors.torch import save_file

    hidden = int(config.hidden_size)
    tensors = {
        name: _tensor(name, shape, seed, hidden) for name, shape in sorted(_shapes(config).items())
    }
    save_file(tensors, str(path), metadata={"format": "pt"})
