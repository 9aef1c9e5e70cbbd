"""Streaming detokenization: turn tokens arriving one by one into text that never flickers.

A byte-level tokenizer can split one character over several tokens; decoding each token alone
prints replacement characters. `TextStream` decodes the whole sequence and emits only the new,
complete suffix.
"""

from __future__ import annotations

from typing import Protocol


class Decoder(Protocol):
    """What a tokenizer offers here (transformers' ``decode`` returns a list for a batch)."""

    def decode(self, token_ids: list[int]) -> str | list[str]: ...


def decode_text(tokenizer: Decoder, ids: list[int]) -> str:
    """The text of one sequence of token ids."""
    text = tokenizer.decode(ids)
    if not isinstance(text, str):
        kind = type(text).__name__
        raise TypeError(f"{type(tokenizer).__name__}.decode gave a {kind} for one sequence")
    return text


class TextStream:
    """Accumulates token ids and returns the text each one completes."""

    def __init__(self, tokenizer: Decoder) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = 0  # characters of the decoded text already returned

    def push(self, token: int) -> str:
        """Add a token; return the newly completed text (possibly empty)."""
        self.ids.append(token)
        text = decode_text(self.tokenizer, self.ids)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
            return ""
        new = text[self.emitted:]
        self.emitted = len(text)
        return new
