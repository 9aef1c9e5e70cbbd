"""Base58btc, the text encoding of libp2p peer ids (Bitcoin alphabet, no checksum).

Rules: each leading zero byte is written as one ``"1"``; decoding rejects characters outside
the alphabet and inputs longer than the caller's bound, since the big-integer conversion is
quadratic in the length.
"""

from __future__ import annotations

from .errors import RemoteProtocolError

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(ALPHABET)}


def b58encode(data: bytes) -> str:
    """Encode bytes as base58btc text."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(ALPHABET[remainder])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str, *, max_chars: int) -> bytes:
    """Decode base58btc text that a peer sent.

    Raises:
        RemoteProtocolError: if the text is longer than ``max_chars`` or has a character
            outside the alphabet.
    """
    if len(text) > max_chars:
        raise RemoteProtocolError(f"base58 text longer than {max_chars} characters")
    number = 0
    for char in text:
        value = _INDEX.get(char)
        if value is None:
            raise RemoteProtocolError("base58 text has a character outside the alphabet")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * zeros + body
