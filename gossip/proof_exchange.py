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
from functools import partial

import trio

from darwin.gossip.fetch import fetch
from darwin.gossip.policy import RateLimiter
from darwin.gossip.proof_store import ProofStore
from darwin.net.framing import FrameConfig, FramedStream, FrameTooLarge, TransportError
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
        self._frames = FrameConfig.bounded(MAX_PROOF_REQUEST_BYTES, config.timeout,
                                           max_write_size=config.max_frame)

    async def __call__(self, stream: Stream) -> None:
        """Answer one request (raises TransportError when the peer breaks the stream)."""
        peer = stream_peer_id(stream)
        framed = FramedStream(stream, self._frames)
        try:
            request = ProofRequest.from_wire(await framed.read())
        except (FrameTooLarge, RemoteProtocolError) as exc:
            reason = exc.reason if isinstance(exc, RemoteProtocolError) else str(exc)
            logger.info("proof request from %s refused: %s", peer, reason)
            await self._answer(framed, ErrorFrame.refusal(ErrorCode.BAD_REQUEST, reason))
            return
        if not self._limiter.allow(peer, trio.current_time()):
            logger.debug("proof request from %s refused: over its rate", peer)
            await self._answer(framed, ErrorFrame(ErrorCode.BUSY, "too many proof requests"))
            return
        async with self._serving:
            proof = await trio.to_thread.run_sync(self.store.get, request.proof_hash,
                                                  self.config.max_proof_bytes)
            if proof is None:
                logger.debug("proof %s asked by %s: not held", request.proof_hash.hex(), peer)
                await self._answer(framed, ErrorFrame(ErrorCode.NOT_FOUND, "no such proof"))
                return
            await self._answer(framed, ProofAnswer(proof))
            logger.debug("proof %s (%d bytes) sent to %s", request.proof_hash.hex(),
                         len(proof), peer)

    async def _answer(self, framed: FramedStream, message: ProofAnswer | ErrorFrame) -> None:
        await framed.write(message.to_wire())


async def fetch_proof(host: Host, peer_id: str, digest: bytes,
                      config: ProofExchangeConfig = ProofExchangeConfig()) -> bytes:
    """The bytes of the proof named ``digest``, from ``peer_id``, checked against the hash.

    Raises:
        ProofFetchError: the peer refused, sent other bytes, broke the protocol or was too
            slow.
        TransportError: the peer could not be reached or the stream failed.
    """
    decode = partial(decode_proof_answer, max_proof_bytes=config.max_proof_bytes)
    answer: ProofAnswer = await fetch(
        host, peer_id, PROOF_PROTOCOL, ProofRequest(digest).to_wire(), decode,
        what="proof fetch", error=ProofFetchError, max_request=MAX_PROOF_REQUEST_BYTES,
        max_answer=config.max_frame, timeout=config.timeout)
    try:
        return await trio.to_thread.run_sync(answer.check, digest)
    except RemoteProtocolError as exc:
        raise ProofFetchError(f"{peer_id}: {exc.reason}") from exc

