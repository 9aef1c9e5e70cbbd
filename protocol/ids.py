"""Identifiers that name models, adapters and sessions on the wire.

Rules: model and adapter ids are 32-byte BLAKE2b-256 digests computed by ``darwin.model``
over canonical bytes (the same files give the same id on every machine); a session id is 16
random bytes chosen by the client and shared by every hop of one inference session.
"""

from __future__ import annotations

import secrets
from typing import NewType

ModelId = NewType("ModelId", bytes)
AdapterId = NewType("AdapterId", bytes)
SessionId = NewType("SessionId", bytes)

DIGEST_SIZE = 32
SESSION_ID_SIZE = 16


def new_session_id() -> SessionId:
    """Draw a fresh random session id."""
    return SessionId(secrets.token_bytes(SESSION_ID_SIZE))


def optional_adapter_id(value: bytes | None) -> AdapterId | None:
    """Tag an optional decoded adapter id (nil on the wire means no adapter)."""
    return None if value is None else AdapterId(value)
