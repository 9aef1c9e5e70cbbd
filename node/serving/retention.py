"""Retention of committed activations, so that a node can answer challenges.

Rules (``specs/verification.md``, "Retention"):

* Per (session, span) the store keeps every step's layer inputs and output together with the
  Merkle leaves behind that step's receipt. The promise of step ``k``'s receipt (its
  ``retention_s``) covers steps ``0 .. k`` of the session, since answering a challenge at
  step ``k`` needs the whole prefix: a session is kept until ``retention_s`` after its last
  step, then dropped as a whole.
* Bounded in bytes: past ``memory_bytes`` the oldest in-memory steps spill to one file each in
  ``directory``; past ``disk_bytes`` (or past ``memory_bytes`` with no directory) whole
  sessions are evicted, least recently stepped first. Evicting inside the promised window
  makes the node unresponsive to challenges on that session: size the budgets for the
  retention the node announces.
* Bounded in time: expiry runs on every ``put`` and ``answer`` against an injected clock,
  from the least recently stepped session on, and stops at the first one still promised.
* ``answer`` serves only challenges about this node's own retained receipts (each equal to
  the receipt it signed) and re-hashes every tensor it reveals against the stored leaf, so a
  corrupted spill file is never revealed (it is reported as not retained).
* Thread-safe: puts come from step worker threads; one lock guards the index. Tensors are
  kept by reference (copied to host memory first when they live on an accelerator); nothing
  in the serving path mutates them after the step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from darwin.model.torch_wire import to_wire, wire_dtype
from darwin.node.config import RetentionConfig
from darwin.node.serving.committed_span import CommittedStep
from darwin.protocol import (
    Challenge,
    ErrorCode,
    Identity,
    Receipt,
    Reveal,
    SessionId,
    WireTensor,
    merkle_proof,
)

logger = logging.getLogger(__name__)

SPILL_SUFFIX = ".act"
_Key = tuple[SessionId, int, int]  # (session_id, span_start, span_end)


class RetentionError(Exception):
    """A challenge the store cannot answer.

    Attributes:
        code: the error code the challenge handler answers with.
    """

    code = ErrorCode.INTERNAL

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotRetained(RetentionError):
    """The activations asked for are not (or no longer) held: expired, evicted or corrupt."""

    code = ErrorCode.UNKNOWN_SESSION


class ForeignChallenge(RetentionError):
    """The challenge is not about receipts this node signed and retained."""

    code = ErrorCode.BAD_REQUEST


@dataclass(frozen=True)
class RetentionStats:
    """A snapshot of the store, for logs, metrics and tests."""

    sessions: int
    steps: int
    memory_bytes: int
    disk_bytes: int
    spilled_steps: int  # steps written to disk so far
    evicted_sessions: int  # sessions dropped for lack of space so far
    expired_sessions: int  # sessions dropped at the end of their retention so far


@dataclass
class _StepRecord:
    """One step of one session: its receipt, leaves, and tensors (in memory or in a file)."""

    receipt: Receipt
    leaves: tuple[bytes, ...]  # layer input digests then the output digest
    forms: tuple[tuple[torch.dtype, tuple[int, ...]], ...]  # dtype and shape per leaf
    sizes: tuple[int, ...]  # bytes per leaf
    tensors: tuple[torch.Tensor, ...] | None  # None once spilled
    path: Path | None = None

    @property
    def nbytes(self) -> int:
        return sum(self.sizes)


@dataclass
class _Session:
    steps: list[_StepRecord] = field(default_factory=list)
    deadline: float = 0.0  # store clock when the last step's promise ends


def _host(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor in contiguous host memory (itself when it already is: the usual case)."""
    if tensor.device.type == "cpu" and tensor.is_contiguous() and not tensor.requires_grad:
        return tensor
    return tensor.detach().to("cpu").contiguous()


def _raw(tensor: torch.Tensor) -> memoryview:
    return tensor.reshape(-1).view(torch.uint8).numpy().data


class RetentionStore:
    """A node's committed activations, kept for the window its receipts promise."""

    def __init__(
        self,
        identity: Identity,
        config: RetentionConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open the store; with a spill directory, create it and remove stale spill files.

        Args:
            identity: the node's key; signs reveals and must be the receipts' signer.
            config: budgets; the defaults keep 512 MiB in memory and spill nowhere.
            clock: seconds, monotonic; injected by tests.
        """
        self.identity = identity
        self.config = config if config is not None else RetentionConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[_Key, _Session] = OrderedDict()  # least recent first
        self._in_memory: OrderedDict[tuple[_Key, int], _StepRecord] = OrderedDict()
        self._memory_bytes = 0
        self._disk_bytes = 0
        self._spilled = self._evicted = self._expired = 0
        if self.config.directory is not None:
            self.config.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.config.directory.glob(f"*{SPILL_SUFFIX}"):
                stale.unlink(missing_ok=True)

    # -- serving path ----------------------------------------------------------------------

    def put(self, committed: CommittedStep) -> None:
        """Keep one committed step for challenges.

        A step number already held (a session restarted under the same id) replaces that
        step and every later one; a step past the next expected one (a gap) cannot be
        answered for, so the session is dropped and nothing is kept.
        """
        body = committed.receipt.body
        key: _Key = (body.session_id, body.span_start, body.span_end)
        tensors = tuple(_host(t) for t in (*committed.layer_inputs, committed.output))
        record = _StepRecord(
            receipt=committed.receipt,
            leaves=tuple(committed.layer_digests),
            forms=tuple((t.dtype, tuple(t.shape)) for t in tensors),
            sizes=tuple(t.numel() * t.element_size() for t in tensors),
            tensors=tensors,
        )
        with self._lock:
            now = self._clock()
            self._expire(now)
            session = self._sessions.setdefault(key, _Session())
            if body.step > len(session.steps):
                logger.debug("retention: session %s step %d after %d steps; dropping it",
                             body.session_id.hex(), body.step, len(session.steps))
                self._drop(key)
                return
            self._truncate(key, session, body.step)
            session.steps.append(record)
            session.deadline = now + body.retention_s
            self._sessions.move_to_end(key)
            self._in_memory[(key, body.step)] = record
            self._memory_bytes += record.nbytes
            self._enforce_budgets()

    def answer(self, challenge: Challenge) -> Reveal:
        """The signed reveal of ``challenge.layer`` for steps ``0 .. challenge.step``.

        Raises:
            ForeignChallenge: the receipts are not this node's, or differ from the ones it
                signed for that session and span.
            NotRetained: the session or a step was never held, has expired or been evicted,
                or its stored bytes no longer match their digest.
        """
        if challenge.node_id != self.identity.peer_id:
            raise ForeignChallenge(f"receipts are signed by {challenge.node_id}, not this node")
        records = self._records(challenge)
        for step, (record, receipt) in enumerate(zip(records, challenge.receipts, strict=True)):
            if record.receipt != receipt:
                raise ForeignChallenge(f"the receipt of step {step} is not the one this node "
                                       "signed for that session")
        index = challenge.leaf_index
        inputs = [self._load(record, index) for record in records]
        output = self._load(records[-1], index + 1)
        proofs = [merkle_proof(record.leaves, index) for record in records]
        output_proof = merkle_proof(records[-1].leaves, index + 1)
        return Reveal.create(challenge, self.identity, inputs, proofs, output, output_proof)

    def expire(self) -> int:
        """Drop the sessions whose retention has ended; returns how many were dropped."""
        with self._lock:
            return self._expire(self._clock())

    @property
    def stats(self) -> RetentionStats:
        with self._lock:
            return RetentionStats(
                sessions=len(self._sessions),
                steps=sum(len(s.steps) for s in self._sessions.values()),
                memory_bytes=self._memory_bytes,
                disk_bytes=self._disk_bytes,
                spilled_steps=self._spilled,
                evicted_sessions=self._evicted,
                expired_sessions=self._expired,
            )

    def close(self) -> None:
        """Drop everything, removing every spill file."""
        with self._lock:
            for key in list(self._sessions):
                self._drop(key)

    # -- internals (called with the lock held unless said otherwise) -------------------------

    def _records(self, challenge: Challenge) -> list[_StepRecord]:
        key: _Key = (challenge.session_id, *challenge.span)
        with self._lock:
            self._expire(self._clock())
            session = self._sessions.get(key)
            if session is None:
                raise NotRetained(f"session {challenge.session_id.hex()} on layers "
                                  f"{list(challenge.span)} is not retained")
            if len(session.steps) <= challenge.step:
                raise NotRetained(f"step {challenge.step} of session "
                                  f"{challenge.session_id.hex()} is not retained")
            return session.steps[: challenge.step + 1]

    def _load(self, record: _StepRecord, index: int) -> WireTensor:
        """One retained tensor, checked against its leaf (called without the lock).

        Raises:
            NotRetained: the spill file is gone or its bytes do not match the digest.
        """
        tensors = record.tensors  # a spill sets the path before it clears the tensors
        path = record.path
        if tensors is not None:
            wire = to_wire(tensors[index])
        elif path is None:
            raise NotRetained(f"step {record.receipt.body.step} was evicted meanwhile")
        else:
            dtype, shape = record.forms[index]
            try:
                with path.open("rb") as handle:
                    handle.seek(sum(record.sizes[:index]))
                    data = handle.read(record.sizes[index])
            except OSError as exc:
                raise NotRetained(f"spilled step {record.receipt.body.step} is gone") from exc
            if len(data) != record.sizes[index]:
                raise NotRetained(f"spilled step {record.receipt.body.step} is truncated")
            wire = WireTensor(wire_dtype(dtype), shape, data)
        if wire.digest() != record.leaves[index]:
            raise NotRetained(f"retained step {record.receipt.body.step} is corrupt")
        return wire

    def _expire(self, now: float) -> int:
        """Drop the sessions past their deadline, from the least recently stepped on.

        Sessions are ordered by their last step, so with the node's one ``retention_s`` they
        are ordered by deadline and this stops at the first one still promised: a step costs
        O(expired), not O(sessions). (A session whose receipts promised less than the one
        before it is then dropped a little late, never early.)
        """
        expired = 0
        while self._sessions:
            key, session = next(iter(self._sessions.items()))
            if session.deadline >= now:
                break
            self._drop(key)
            expired += 1
        self._expired += expired
        return expired

    def _truncate(self, key: _Key, session: _Session, keep: int) -> None:
        for step in range(keep, len(session.steps)):
            self._forget_record(key, step, session.steps[step])
        del session.steps[keep:]

    def _drop(self, key: _Key) -> None:
        session = self._sessions.pop(key, None)
        if session is not None:
            self._truncate(key, session, 0)

    def _forget_record(self, key: _Key, step: int, record: _StepRecord) -> None:
        if record.tensors is not None:
            self._in_memory.pop((key, step), None)
            self._memory_bytes -= record.nbytes
            record.tensors = None
        if record.path is not None:
            record.path.unlink(missing_ok=True)
            self._disk_bytes -= record.nbytes
            record.path = None

    def _enforce_budgets(self) -> None:
        while self._memory_bytes > self.config.memory_bytes and self._in_memory:
            if self.config.directory is None:
                self._evict_oldest()
                continue
            (key, step), record = next(iter(self._in_memory.items()))
            self._spill(key, step, record)
        while self._disk_bytes > self.config.disk_bytes and self._sessions:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        key = next(iter(self._sessions))
        logger.warning("retention: evicting session %s on layers [%d, %d) for space",
                       key[0].hex(), key[1], key[2])
        self._drop(key)
        self._evicted += 1

    def _spill(self, key: _Key, step: int, record: _StepRecord) -> None:
        assert self.config.directory is not None and record.tensors is not None
        path = self.config.directory / f"{key[0].hex()}-{key[1]}-{key[2]}-{step}{SPILL_SUFFIX}"
        try:
            with path.open("wb") as handle:
                for tensor in record.tensors:
                    handle.write(_raw(tensor))
        except OSError as exc:
            logger.warning("retention: cannot spill to %s (%s); evicting instead", path, exc)
            path.unlink(missing_ok=True)
            self._evict_oldest()
            return
        del self._in_memory[(key, step)]
        record.path = path
        record.tensors = None
        self._memory_bytes -= record.nbytes
        self._disk_bytes += record.nbytes
        self._spilled += 1
