"""Random-layer challenges: what a verifier asks of a node, and what the node must reveal.

Rules (layout in ``specs/verification.md``):

* A ``Challenge`` carries the challenged hop's own signed receipts for steps ``0 .. step`` of
  one session (same node, model, adapter, session and span; steps consecutive from 0;
  positions chained from 0) and a layer ``layer`` inside that span. Holding the receipts is
  what entitles the asker: only the client (or whom it gave its trace) has them.
* Its ``digest`` binds the layer, the step and every receipt; the node signs its ``Reveal``
  over that digest, so a reveal is attributable to the node and to exactly this challenge.
* A ``Reveal`` holds the input of ``layer`` at every step ``0 .. step`` (the prefix that
  rebuilds the layer's KV cache) and the layer's output at ``step``, each with a Merkle proof
  against the ``layer_root`` of that step's receipt: the input of layer ``l`` is leaf
  ``l - span_start``, its output is leaf ``l - span_start + 1``.
* ``check_reveal`` is pure: a reveal that is not signed by the node for this challenge raises
  ``UnattributableReveal`` (it proves nothing about the node: count it as no answer); a signed
  reveal that contradicts the signed receipts raises ``RevealError`` (a fault of the node: the
  signed reveal and receipts are the evidence).
* Decoding hostile input raises ``RemoteProtocolError`` only; the bounds are ``CHALLENGE_LIMITS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from .errors import LocalProtocolError, RemoteProtocolError, SignatureError, blame_peer
from .hashing import hash256
from .identity import SIGNATURE_SIZE, Identity, PeerId, verify_signature
from .ids import DIGEST_SIZE, AdapterId, ModelId, SessionId
from .merkle import MerkleProof, verify_merkle_proof
from .messages import ErrorFrame
from .receipt import Receipt
from .schema import MAX_LAYERS, U32_MAX, MapReader, require_bytes, require_int, shown
from .tensors import DType, TensorLimits, WireTensor
from .wire import PROTOCOL_VERSION, WireLimits, pack, unpack

CHALLENGE_DOMAIN = b"darwin/challenge/1\0"
REVEAL_DOMAIN = b"darwin/reveal/1\0"
# Most steps one challenge may cover (receipts, revealed inputs).
MAX_CHALLENGE_STEPS = 4096
# Bounds for decoding challenges, reveals and fraud proofs: arrays as long as the step count,
# at most 64 msgpack objects per step, and a frame that fits a long prefix of activations.
CHALLENGE_LIMITS = WireLimits(
    max_message_bytes=512 * 2**20 + 2**20,
    max_array_len=MAX_CHALLENGE_STEPS,
    max_objects=64 * MAX_CHALLENGE_STEPS + 1024,
    tensor=TensorLimits(),
)


class RevealError(RemoteProtocolError):
    """A reveal signed by the node contradicts its signed receipts: the node is at fault.

    Attributes:
        step: the step whose revealed tensor or proof is wrong, if one step is to blame.
    """

    def __init__(self, reason: str, *, step: int | None = None) -> None:
        super().__init__(reason if step is None else f"step {step}: {reason}")
        self.step = step


class UnattributableReveal(RemoteProtocolError):
    """A reveal that is not the node's signed answer to this challenge; it proves nothing."""


def receipt_digest(receipt: Receipt) -> bytes:
    """``H`` of a receipt's signed bytes: the receipt's name inside a challenge."""
    return hash256(receipt.body.signing_bytes())


def _envelope(kind: str, fields: dict[str, object]) -> dict[str, object]:
    return {"v": PROTOCOL_VERSION, "kind": kind, **fields}


def open_envelope(obj: object, kind: str, keys: Sequence[str]) -> MapReader:
    """A reader over a map with ``v``, ``kind`` and exactly ``keys``.

    Raises:
        RemoteProtocolError: if the map is malformed, or ``v`` or ``kind`` is not this one.
    """
    reader = MapReader(obj, ("v", "kind", *keys), kind)
    if reader.integer("v") != PROTOCOL_VERSION or reader.text("kind") != kind:
        raise RemoteProtocolError(f"{kind}: wrong version or kind")
    return reader


def _require_tuple_of(name: str, value: object, kind: type, low: int, high: int) -> None:
    """Raises LocalProtocolError: unless ``value`` is a tuple of ``low..high`` ``kind`` items."""
    if not isinstance(value, tuple) or not all(isinstance(item, kind) for item in value):
        raise LocalProtocolError(f"{name} must be a tuple of {kind.__name__}")
    require_int(f"len({name})", len(value), low, high)


def _check_history(receipts: tuple[Receipt, ...]) -> None:
    """One hop's receipts of steps ``0..k``, in order, chained in positions.

    Raises:
        LocalProtocolError: naming the first receipt that breaks the rule.
    """
    first = receipts[0].body
    same = ("node_id", "model_id", "adapter_id", "session_id", "span_start", "span_end")
    next_position = 0
    for index, receipt in enumerate(receipts):
        body = receipt.body
        if body.step != index:
            raise LocalProtocolError(f"receipt {index} is of step {body.step}, not {index}")
        differing = [name for name in same if getattr(body, name) != getattr(first, name)]
        if differing:
            raise LocalProtocolError(f"receipt of step {index} differs in {', '.join(differing)}")
        if body.position_start != next_position:
            raise LocalProtocolError(
                f"step {index} starts at position {body.position_start}, not {next_position}"
            )
        next_position = body.position_start + body.position_count


@dataclass(frozen=True)
class Challenge:
    """Verifier → node: reveal layer ``layer`` of your span for steps ``0 .. step``.

    Raises (on construction):
        LocalProtocolError: unless ``receipts`` are one hop's receipts of steps ``0 .. step``
            of one session (see the module rules) and ``layer`` is inside their span.
    """

    KIND: ClassVar[str] = "challenge"
    receipts: tuple[Receipt, ...]  # the hop's signed receipts of steps 0..step, in order
    layer: int  # global index of the challenged layer, inside the receipts' span
    step: int  # the step whose output of `layer` is checked; == len(receipts) - 1

    def __post_init__(self) -> None:
        _require_tuple_of("receipts", self.receipts, Receipt, 1, MAX_CHALLENGE_STEPS)
        require_int("step", self.step, 0, U32_MAX)
        if self.step != len(self.receipts) - 1:
            raise LocalProtocolError(f"step {self.step} needs the receipts of steps 0..{self.step}")
        first = self.receipts[0].body
        require_int("layer", self.layer, first.span_start, first.span_end - 1)
        _check_history(self.receipts)

    @property
    def node_id(self) -> PeerId:
        """The challenged node: the signer of every receipt."""
        return self.receipts[0].body.node_id

    @property
    def model_id(self) -> ModelId:
        return self.receipts[0].body.model_id

    @property
    def adapter_id(self) -> AdapterId | None:
        return self.receipts[0].body.adapter_id

    @property
    def session_id(self) -> SessionId:
        return self.receipts[0].body.session_id

    @property
    def span(self) -> tuple[int, int]:
        """``(span_start, span_end)`` of the challenged hop."""
        body = self.receipts[0].body
        return body.span_start, body.span_end

    @property
    def leaf_index(self) -> int:
        """The Merkle leaf of the layer's input; its output is the next leaf."""
        return self.layer - self.receipts[0].body.span_start

    @property
    def leaf_count(self) -> int:
        """Leaves of each receipt's layer tree: the span's layers and its output."""
        start, end = self.span
        return end - start + 1

    @property
    def positions(self) -> tuple[tuple[int, int], ...]:
        """``(position_start, position_count)`` of every step ``0 .. step``."""
        return tuple((r.body.position_start, r.body.position_count) for r in self.receipts)

    @property
    def deadline_ms(self) -> int:
        """Until when the node promised to answer: the last receipt's time plus its retention.

        The promise of step ``k``'s receipt covers the layer inputs of steps ``0 .. k`` of its
        session, which is what answering a challenge at step ``k`` takes.
        """
        last = self.receipts[-1].body
        return last.time_ms + 1000 * last.retention_s

    @cached_property
    def _digest(self) -> bytes:
        names = [receipt_digest(receipt) for receipt in self.receipts]
        payload = CHALLENGE_DOMAIN + pack([self.layer, self.step, names])
        return hash256(payload)

    def digest(self) -> bytes:
        """``H`` binding the layer, the step and every receipt (computed once)."""
        return self._digest

    def verify(self) -> None:
        """Check every receipt's signature.

        Raises:
            SignatureError: naming the first step whose receipt does not verify.
        """
        for receipt in self.receipts:
            try:
                receipt.verify()
            except SignatureError as exc:
                raise SignatureError(f"step {receipt.body.step}: {exc.reason}") from exc

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this challenge."""
        return _envelope(self.KIND, {"receipts": [r.to_obj() for r in self.receipts],
                                     "layer": self.layer, "step": self.step})

    def to_wire(self) -> bytes:
        """The encoded frame of this challenge."""
        return pack(self.to_obj())

    @classmethod
    def from_obj(cls, obj: object) -> Challenge:
        """Decode a challenge a peer sent; does not check signatures.

        Raises:
            RemoteProtocolError: if the map or a receipt is malformed or the receipts are not
                one hop's history up to ``step``.
        """
        reader = open_envelope(obj, cls.KIND, ("receipts", "layer", "step"))
        items = reader.array("receipts")
        with blame_peer(cls.KIND):
            require_int("len(receipts)", len(items), 1, MAX_CHALLENGE_STEPS)
        receipts = tuple(Receipt.from_obj(item) for item in items)
        with blame_peer(cls.KIND):
            return cls(receipts, reader.integer("layer"), reader.integer("step"))

    @classmethod
    def from_wire(cls, data: bytes, limits: WireLimits = CHALLENGE_LIMITS) -> Challenge:
        """Decode a challenge frame (raises ``RemoteProtocolError``)."""
        return cls.from_obj(unpack(data, limits))


@dataclass(frozen=True)
class Reveal:
    """Node → verifier: the challenged layer's inputs for steps ``0 .. step`` and its output.

    Signed by the node over ``signing_bytes`` (which names the challenge digest, every
    tensor digest and every proof), so a reveal that contradicts the receipts is evidence.

    Raises (on construction):
        LocalProtocolError: if a field has the wrong type or size, or the number of inputs
            or proofs is not ``step + 1``.
    """

    KIND: ClassVar[str] = "reveal"
    challenge_digest: bytes  # Challenge.digest() of the challenge answered
    layer: int
    step: int
    inputs: tuple[WireTensor, ...]  # input of `layer` at steps 0..step, (batch, count_j, hidden)
    input_proofs: tuple[MerkleProof, ...]  # each against its step's layer_root
    output: WireTensor  # output of `layer` at `step`, (batch, count_step, hidden)
    output_proof: MerkleProof  # against the layer_root of `step`
    signature: bytes  # the node's ed25519 signature over signing_bytes()

    def __post_init__(self) -> None:
        require_bytes("challenge_digest", self.challenge_digest, DIGEST_SIZE)
        require_int("layer", self.layer, 0, MAX_LAYERS - 1)
        require_int("step", self.step, 0, MAX_CHALLENGE_STEPS - 1)
        _require_tuple_of("inputs", self.inputs, WireTensor, self.step + 1, self.step + 1)
        _require_tuple_of("input_proofs", self.input_proofs, MerkleProof, self.step + 1,
                          self.step + 1)
        if not isinstance(self.output, WireTensor):
            raise LocalProtocolError("output must be a WireTensor")
        if not isinstance(self.output_proof, MerkleProof):
            raise LocalProtocolError("output_proof must be a MerkleProof")
        require_bytes("signature", self.signature, SIGNATURE_SIZE)

    @staticmethod
    def payload_bytes(
        challenge_digest: bytes,
        layer: int,
        step: int,
        inputs: Sequence[WireTensor],
        input_proofs: Sequence[MerkleProof],
        output: WireTensor,
        output_proof: MerkleProof,
    ) -> bytes:
        """The bytes a node signs for these reveal fields (tensors enter by their digests)."""
        return REVEAL_DOMAIN + pack([
            challenge_digest, layer, step, [tensor.digest() for tensor in inputs],
            [proof.to_obj() for proof in input_proofs], output.digest(), output_proof.to_obj(),
        ])

    def signing_bytes(self) -> bytes:
        """The exact bytes the node signed."""
        return self.payload_bytes(self.challenge_digest, self.layer, self.step, self.inputs,
                                  self.input_proofs, self.output, self.output_proof)

    @classmethod
    def create(
        cls,
        challenge: Challenge,
        identity: Identity,
        inputs: Sequence[WireTensor],
        input_proofs: Sequence[MerkleProof],
        output: WireTensor,
        output_proof: MerkleProof,
    ) -> Reveal:
        """Build and sign the answer to ``challenge``.

        Raises:
            LocalProtocolError: if ``identity`` is not the challenged node or a field is invalid.
        """
        if identity.peer_id != challenge.node_id:
            raise LocalProtocolError(f"{identity.peer_id} cannot answer for {challenge.node_id}")
        inputs, input_proofs = tuple(inputs), tuple(input_proofs)
        payload = cls.payload_bytes(challenge.digest(), challenge.layer, challenge.step,
                                    inputs, input_proofs, output, output_proof)
        return cls(challenge.digest(), challenge.layer, challenge.step, inputs, input_proofs,
                   output, output_proof, identity.sign(payload))

    def verify(self, node_id: PeerId) -> None:
        """Check the signature against ``node_id``.

        Raises:
            SignatureError: if it does not verify.
            RemoteProtocolError: if ``node_id`` is malformed.
        """
        verify_signature(node_id, self.signing_bytes(), self.signature)

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data revealed."""
        return sum(len(t.data) for t in self.inputs) + len(self.output.data)

    def to_obj(self) -> dict[str, object]:
        """The msgpack map of this reveal."""
        return _envelope(self.KIND, {
            "challenge_digest": self.challenge_digest,
            "layer": self.layer,
            "step": self.step,
            "inputs": [tensor.to_obj() for tensor in self.inputs],
            "input_proofs": [proof.to_obj() for proof in self.input_proofs],
            "output": self.output.to_obj(),
            "output_proof": self.output_proof.to_obj(),
            "signature": self.signature,
        })

    def to_wire(self) -> bytes:
        """The encoded frame of this reveal."""
        return pack(self.to_obj())

    @classmethod
    def from_obj(cls, obj: object, limits: TensorLimits | None = None) -> Reveal:
        """Decode a reveal a peer sent; checks form only (see ``check_reveal``).

        Raises:
            RemoteProtocolError: if the map, a tensor or a proof is malformed.
        """
        tensor_limits = limits if limits is not None else CHALLENGE_LIMITS.tensor
        reader = open_envelope(obj, cls.KIND, ("challenge_digest", "layer", "step", "inputs",
                                               "input_proofs", "output", "output_proof",
                                               "signature"))
        items, proof_items = reader.array("inputs"), reader.array("input_proofs")
        with blame_peer(cls.KIND):
            require_int("len(inputs)", len(items), 1, MAX_CHALLENGE_STEPS)
            require_int("len(input_proofs)", len(proof_items), 1, MAX_CHALLENGE_STEPS)
        inputs = tuple(WireTensor.from_obj(item, tensor_limits) for item in items)
        proofs = tuple(MerkleProof.from_obj(item) for item in proof_items)
        output = WireTensor.from_obj(reader.value("output"), tensor_limits)
        output_proof = MerkleProof.from_obj(reader.value("output_proof"))
        with blame_peer(cls.KIND):
            return cls(reader.binary("challenge_digest"), reader.integer("layer"),
                       reader.integer("step"), inputs, proofs, output, output_proof,
                       reader.binary("signature"))

    @classmethod
    def from_wire(cls, data: bytes, limits: WireLimits = CHALLENGE_LIMITS) -> Reveal:
        """Decode a reveal frame (raises ``RemoteProtocolError``)."""
        return cls.from_obj(unpack(data, limits), limits.tensor)


def decode_answer(data: bytes, limits: WireLimits = CHALLENGE_LIMITS) -> Reveal | ErrorFrame:
    """Decode the node's answer to a challenge: a reveal or an error frame.

    Raises:
        RemoteProtocolError: if the frame is malformed or holds another kind.
    """
    obj = unpack(data, limits)
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind == Reveal.KIND:
        return Reveal.from_obj(obj, limits.tensor)
    if kind == ErrorFrame.KIND:
        return ErrorFrame.from_obj(obj, limits)
    raise RemoteProtocolError(f"expected a reveal or an error, got kind {shown(kind)}")


@dataclass(frozen=True)
class RevealedLayer:
    """A reveal that ``check_reveal`` accepted: what recomputing the layer takes."""

    layer: int
    dtype: DType  # of every revealed tensor: the dtype the node committed in
    inputs: tuple[WireTensor, ...]  # (batch, count_j, hidden) for steps 0..step
    positions: tuple[tuple[int, int], ...]  # (position_start, position_count) per step
    output: WireTensor  # (batch, count_step, hidden): the layer's claimed output at `step`

    @property
    def step(self) -> int:
        return len(self.inputs) - 1


def _check_shapes(challenge: Challenge, reveal: Reveal) -> DType:
    """Every tensor is ``(batch, count_j, hidden)`` of one dtype, batch and width.

    Raises:
        RevealError: naming the first step whose tensor does not fit.
    """
    dtype = reveal.output.dtype
    first = reveal.inputs[0].shape
    if len(first) != 3 or first[0] < 1 or first[2] < 1:
        raise RevealError(f"input is not (batch, seq, hidden) but {list(first)}", step=0)
    batch, width = first[0], first[2]
    for step, (tensor, (_, count)) in enumerate(zip(reveal.inputs, challenge.positions,
                                                    strict=True)):
        if tensor.dtype is not dtype:
            raise RevealError(f"input is {tensor.dtype.value}, output {dtype.value}", step=step)
        if tensor.shape != (batch, count, width):
            raise RevealError(f"input has shape {list(tensor.shape)}, the receipt's positions "
                              f"make it {[batch, count, width]}", step=step)
    if reveal.output.shape != reveal.inputs[-1].shape:
        raise RevealError(f"output has shape {list(reveal.output.shape)}, its input "
                          f"{list(reveal.inputs[-1].shape)}", step=challenge.step)
    return dtype


def _check_opening(proof: MerkleProof, tensor: WireTensor, root: bytes, index: int,
                   leaf_count: int, what: str, step: int) -> None:
    if (proof.index, proof.leaf_count) != (index, leaf_count):
        raise RevealError(f"{what} proof opens leaf {proof.index} of {proof.leaf_count}, "
                          f"not {index} of {leaf_count}", step=step)
    if not verify_merkle_proof(tensor.digest(), proof, root):
        raise RevealError(f"{what} is not the tensor committed in the receipt's layer_root",
                          step=step)


def check_reveal(challenge: Challenge, reveal: Reveal) -> RevealedLayer:
    """Check that ``reveal`` is the node's signed answer to ``challenge`` and agrees with every
    signed receipt. Does not check the receipts' own signatures (``Challenge.verify``).

    Raises:
        UnattributableReveal: if the reveal answers another challenge or is not signed by
            the challenged node (it is no answer; nothing can be proved with it).
        RevealError: if the signed reveal contradicts the receipts: wrong layer or step,
            tensors of the wrong dtype or shape, or a tensor whose proof does not open the
            committed leaf. The node is at fault.
    """
    if reveal.challenge_digest != challenge.digest():
        raise UnattributableReveal("the reveal answers another challenge")
    try:
        reveal.verify(challenge.node_id)
    except SignatureError as exc:
        raise UnattributableReveal(f"reveal not signed by the node: {exc.reason}") from exc
    if (reveal.layer, reveal.step) != (challenge.layer, challenge.step):
        raise RevealError(f"reveal of layer {reveal.layer} step {reveal.step} for a challenge "
                          f"of layer {challenge.layer} step {challenge.step}")
    dtype = _check_shapes(challenge, reveal)
    index, count = challenge.leaf_index, challenge.leaf_count
    for step, (tensor, proof, receipt) in enumerate(
        zip(reveal.inputs, reveal.input_proofs, challenge.receipts, strict=True)
    ):
        _check_opening(proof, tensor, receipt.body.layer_root, index, count, "input", step)
    _check_opening(reveal.output_proof, reveal.output, challenge.receipts[-1].body.layer_root,
                   index + 1, count, "output", challenge.step)
    return RevealedLayer(challenge.layer, dtype, reveal.inputs, challenge.positions,
                         reveal.output)
