"""One-shot gossip fetches (``/darwin/proof/1``, ``/darwin/ledger-sync/1``) and their errors.

Rules (normative text: ``specs/gossip.md`` §5 and §6): a fetch is one
``darwin.net.request.request`` whose dial and exchange share the fetch's ``timeout``. A
timeout, an answer that does not decode and a refusal (an ``ErrorFrame``) are all the
protocol's own error (a ``TransportError``), so a caller catching that one class skips the
peer; the host's and the framing's errors (unreachable, a broken stream, an oversized
answer) pass as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from darwin.net.framing import TransportError
from darwin.net.host import Host
from darwin.net.request import RequestTimeout, request
from darwin.protocol import ErrorFrame, RemoteProtocolError

__all__ = ["fetch"]

T = TypeVar("T")


async def fetch(host: Host, peer: str, protocol: str, payload: bytes,
                decode: Callable[[bytes], T | ErrorFrame], *, what: str,
                error: type[TransportError], max_request: int, max_answer: int,
                timeout: float) -> T:
    """The decoded answer of ``peer`` to ``payload``; ``what`` names the fetch in errors.

    Raises:
        error: no answer within ``timeout``, an undecodable answer, or a refusal.
        TransportError: ``peer`` unreachable, the stream broke, or a frame over its limit.
    """
    try:
        reply = await request(host, peer, protocol, payload, decode, max_request=max_request,
                              max_answer=max_answer, timeout=timeout, dial_timeout=timeout)
    except RequestTimeout:
        raise error(f"{what} from {peer} timed out after {timeout} s") from None
    except RemoteProtocolError as exc:
        raise error(f"{peer} sent a bad answer to {what}: {exc.reason}") from exc
    answer: T | ErrorFrame = reply.answer
    if isinstance(answer, ErrorFrame):
        raise error(f"{peer} refused {what}: {answer.code.value}, {answer.message}")
    return answer
