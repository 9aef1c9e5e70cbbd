"""The families this build supports, looked up by ``config.json``'s ``model_type``."""

from __future__ import annotations

from .bert import BertFamily
from .errors import UnsupportedArchitecture
from .family import Family
from .gpt2 import GPT2Family
from .llama import LlamaFamily

__all__ = ["FAMILIES", "family_class", "supported_model_types"]

FAMILIES: tuple[type[Family], ...] = (LlamaFamily, GPT2Family, BertFamily)


def supported_model_types() -> list[str]:
    """Every ``model_type`` some family accepts, sorted."""
    return sorted(t for family in FAMILIES for t in family.model_types)


def family_class(model_type: str) -> type[Family]:
    """The family class for a ``model_type``.

    Raises:
        UnsupportedArchitecture: no family accepts it.
    """
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UnsupportedArchitecture(
        f"model_type {model_type!r} is not supported; supported: "
        f"{', '.join(supported_model_types())}"
    )
