"""``/darwin/proof/1``: fetch a fraud proof's bytes by their hash from a peer that holds them.

Rules of this module (normative text: ``specs/gossip.md`` section 6):

- One request per stream: the asker sends a ``ProofRequest`` frame (a 32-byte hash), the
  holder answers with one ``ProofAnswer`` frame (the bytes as stored) or an ``ErrorFrame``
  (``not_found``, ``busy``, ``bad_request``) and closes.
- The holder serves from its ``ProofStore`` only proofs of at most ``max_proof_bytes``,
  reads them in a worker thread, answers at most ``serve_concurrency`` requests at once and
  ``serve_rate`` per second per peer (``busy`` past it): a 40-byte request must not buy
  unbounded upload.
- The asker bounds the whole exchange by ``timeout`` (dial included) and the answer frame by
  ``max_proof_bytes``; bytes that do not hash to the hash asked for, a refusal, an
  undecodable answer and a timeout all raise ``ProofFetchError``. Decoding the bytes as a
  proof is the caller's business.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from darwin.gossip.policy import RateLimiter
from darwin.gossip.proof_store import ProofStore
from darwin.net.framing import (
    FrameConfig,
    FramedStream,
    FrameTooLarge,
    TransportError,
    read_frame,
    write_frame,
)
from darwin.net.host import Host, Stream, stream_peer_id
from darwin.net.protocols import PROOF_PROTOCOL
from darwin.protocol import ErrorCode, ErrorFrame, RemoteProtocolError
from darwin.protocol.proof_request import (
    MAX_PROOF_REQUEST_BYTES,
    PROOF_ANSWER_OVERHEAD,
    ProofAnswer,
    ProofRequest,
    decode_proof_answer,
)

__all__ = ["ProofExchangeConfig", "ProofFetchError", "ProofHandler",
           "fetch_proof"]

logger = logging.getLogger(__name__)

MIB = 2**20


class ProofFetchError(TransportError):
    """A peer did not give us the proof asked for (refused, broke the protocol, too slow)."""


@dataclass(frozen=True)
class ProofExchangeConfig:
    """Both sides of ``/darwin/proof/1``."""

    # Largest proof served or fetched, in bytes (64 positions of a 4096-wide float32 layer
    # are 1 MiB; a 2048-token prefill of an 8192-wide one is 64 MiB).
    max_proof_bytes: int = 64 * MIB
    # Seconds for one exchange, dial included (asker), or to read the request and write the
    # answer, each (holder).
    timeout: float = 30.0
    # Requests per second one peer may make of us, sustained, and at once.
    serve_rate: float = 1.0
    serve_burst: int = 10
    # Requests answered at once (each may hold one proof in memory).
    serve_concurrency: int = 4
    # Peers whose request buckets we keep.
    max_tracked_peers: int = 1024

    def __post_init__(self) -> None:
        if self.max_proof_bytes < 1 or self.timeout <= 0:
            raise ValueError("max_proof_bytes and timeout must be positive")
        if self.serve_rate <= 0 or self.serve_burst < 1 or self.serve_concurrency < 1:
            raise ValueError("serve_rate, serve_burst and serve_concurrency must be positive")

    @property
    def max_frame(self) -> int:
        return self.max_proof_bytes + PROOF_ANSWER_OVERHEAD


class ProofHandler:
    """Serves ``/darwin/proof/1`` from a proof store: ``host.set_stream_handler(
    PROOF_PROTOCOL, ProofHandler(store))``."""

    def __init__(self, store: ProofStore,
                 config: ProofExchangeConfig = ProofExchangeConfig()) -> None:
        self.store = store
        self.config = config
        self._limiter = RateLimiter(config.serve_rate, config.serve_burst,
                                    config.max_tracked_peers)
        self._serving = trio.CapacityLimiter(config.serve_concurrency)

    async def __call__(self, stream: Stream) -> None:
        """Answer one request (raises TransportError when the peer breaks the stream)."""
        peer = stream_peer_id(stream)
        timeout = self.config.timeout
        try:
            data = await read_frame(stream, MAX_PROOF_REQUEST_BYTES, timeout=timeout,
                                    idle_timeout=timeout)
            request = ProofRequest.from_wire(data)
        except (FrameTooLarge, RemoteProtocolError) as exc:
            reason = exc.reason if isinstance(exc, RemoteProtocolError) else str(exc)
            logger.info("proof request from %s refused: %s", peer, reason)
            await self._answer(stream, ErrorFrame.refusal(ErrorCode.BAD_REQUEST, reason))
            return
        if not self._limiter.allow(peer, trio.current_time()):
            logger.debug("proof request from %s refused: over its rate", peer)
            await self._answer(stream, ErrorFrame(ErrorCode.BUSY, "too many proof requests"))
            return
        async with self._serving:
            proof = await trio.to_thread.run_sync(self.store.get, request.proof_hash,
                                                  self.config.max_proof_bytes)
            if proof is None:
                logger.debug("proof %s asked by %s: not held", request.proof_hash.hex(), peer)
                await self._answer(stream, ErrorFrame(ErrorCode.NOT_FOUND, "no such proof"))
                return
            await self._answer(stream, ProofAnswer(proof))
            logger.debug("proof %s (%d bytes) sent to %s", request.proof_hash.hex(),
                         len(proof), peer)

    async def _answer(self, stream: Stream, message: ProofAnswer | ErrorFrame) -> None:
        await write_frame(stream, message.to_wire(), self.config.max_frame,
                          timeout=self.config.timeout)


async def fetch_proof(host: Host, peer_id: str, digest: bytes,
                      config: ProofExchangeConfig = ProofExchangeConfig()) -> bytes:
    """The bytes of the proof named ``digest``, from ``peer_id``, checked against the hash.

    Raises:
        ProofFetchError: the peer refused, sent other bytes, broke the protocol or was too
            slow.
        TransportError: the peer could not be reached or the stream failed.
    """
    request = ProofRequest(digest)
    answer: ProofAnswer | ErrorFrame | None = None
    with trio.move_on_after(config.timeout):
        stream = await host.open_stream(peer_id, PROOF_PROTOCOL, timeout=config.timeout)
        framed = FramedStream(stream, FrameConfig(max_frame_size=config.max_frame,
                                                  frame_timeout=config.timeout,
                                                  write_timeout=config.timeout))
        try:
            await framed.write(request.to_wire())
            data = await framed.read()
            answer = await trio.to_thread.run_sync(decode_proof_answer, data,
                                                   config.max_proof_bytes)
        except RemoteProtocolError as exc:
            await _reset(framed)
            raise ProofFetchError(f"{peer_id} sent a bad proof answer: {exc.reason}") from exc
        except BaseException:
            await _reset(framed)
            raise
        await framed.close()
    if answer is None:
        raise ProofFetchError(f"proof fetch from {peer_id} timed out after {config.timeout} s")
    if isinstance(answer, ErrorFrame):
        raise ProofFetchError(f"{peer_id} refused the proof: {answer.code.value}, "
                              f"{answer.message}")
    try:
        return await trio.to_thread.run_sync(answer.check, digest)
    except RemoteProtocolError as exc:
        raise ProofFetchError(f"{peer_id}: {exc.reason}") from exc


async def _reset(framed: FramedStream) -> None:
    """Reset even while being cancelled (a timed-out exchange must not leave the stream)."""
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        await framed.reset()
