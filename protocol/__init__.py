"""darwin.protocol: the pure, sans-I/O protocol core of Darwin.

Identities and signatures, the tensor codec, msgpack messages with strict validation, Merkle
commitments, signed receipts and trace checking. It takes and returns bytes, numpy arrays and
frozen dataclasses; it never imports torch, trio or libp2p and never touches the network.
The normative formats are in ``specs/wire-format.md`` and ``specs/receipts-and-traces.md``.
"""

from __future__ import annotations

from .challenge import (
    CHALLENGE_LIMITS,
    MAX_CHALLENGE_STEPS,
    Challenge,
    Reveal,
    RevealedLayer,
    RevealError,
    UnattributableReveal,
    check_reveal,
    decode_answer,
)
from .errors import (
    IdentityFileError,
    LocalProtocolError,
    ProtocolError,
    ReceiptError,
    RemoteProtocolError,
    SignatureError,
    TraceError,
)
from .fraud_proof import FraudProof
from .hashing import HASH_ALG
from .identity import (
    Identity,
    PeerId,
    peer_id_from_public_key,
    public_key_from_peer_id,
    short_peer_id,
    verify_signature,
)
from .ids import AdapterId, ModelId, SessionId, new_session_id
from .merkle import MerkleProof, merkle_proof, merkle_root, verify_merkle_proof
from .messages import (
    CloseSession,
    ErrorCode,
    ErrorFrame,
    InfoRequest,
    Message,
    NodeInfo,
    OpenSession,
    PushedStepRequest,
    SessionOpened,
    StepReceipt,
    StepRequest,
    StepResult,
    decode,
    encode,
)
from .receipt import Receipt, ReceiptBody, layer_root_for
from .tensors import DType, TensorHasher, TensorLimits, WireTensor, tensor_digest
from .trace import Trace, check_receipt, verify_trace
from .verdict import Outcome, Verdict, VerdictBody
from .wire import PROTOCOL_VERSION, WireLimits

__all__ = [
    "CHALLENGE_LIMITS",
    "HASH_ALG",
    "MAX_CHALLENGE_STEPS",
    "PROTOCOL_VERSION",
    "AdapterId",
    "Challenge",
    "CloseSession",
    "DType",
    "ErrorCode",
    "ErrorFrame",
    "FraudProof",
    "Identity",
    "IdentityFileError",
    "InfoRequest",
    "LocalProtocolError",
    "MerkleProof",
    "Message",
    "ModelId",
    "NodeInfo",
    "OpenSession",
    "Outcome",
    "PeerId",
    "ProtocolError",
    "PushedStepRequest",
    "Receipt",
    "ReceiptBody",
    "ReceiptError",
    "RemoteProtocolError",
    "Reveal",
    "RevealError",
    "RevealedLayer",
    "SessionId",
    "SessionOpened",
    "SignatureError",
    "StepReceipt",
    "StepRequest",
    "StepResult",
    "TensorHasher",
    "TensorLimits",
    "Trace",
    "TraceError",
    "UnattributableReveal",
    "Verdict",
    "VerdictBody",
    "WireLimits",
    "WireTensor",
    "check_receipt",
    "check_reveal",
    "decode",
    "decode_answer",
    "encode",
    "layer_root_for",
    "merkle_proof",
    "merkle_root",
    "new_session_id",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "short_peer_id",
    "tensor_digest",
    "verify_merkle_proof",
    "verify_signature",
    "verify_trace",
]
