"""``specs/ledger.md`` §7 over real node processes: a generation leaves each node's step latency in
the client's ledger, once per session, and reputation and routing read it back.

One local swarm of ``darwin-node join`` processes serving the 4-block tiny Llama, ``0:2``
(bootstrap) and ``2:4``; the client is `Submission` (``darwin submit``) with its own home. A node
that breaks the protocol (``--cheat mismatch``/``replay``) is in
``tests/verifier/test_cheating_nodes.py``, which checks its violation entry and its score.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from swarm_support import local_swarm

from darwin.client.client_ledger import standing
from darwin.client.discovery import DiscoveryConfig
from darwin.client.sampling import SamplingConfig
from darwin.client.submit import Submission, SubmitConfig
from darwin.client.swarm import SwarmClient, SwarmConfig
from darwin.home import LEDGER_FILE, load_or_create_identity
from darwin.ledger import EntryKind, Latency, Ledger
from darwin.model import Checkpoint, model_id
from darwin.net.host import HostConfig, open_host
from darwin.protocol import ModelId, PeerId

pytestmark = pytest.mark.slow

NEW_TOKENS = 4
QUICK = SwarmConfig(discovery=DiscoveryConfig(find_timeout=3.0, info_timeout=3.0))


@pytest.fixture(scope="module")
def swarm(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    with local_swarm(tiny_llama, tmp_path_factory.mktemp("observations"),
                     ["0:2", "2:4"]) as running:
        yield list(running.bootstrap)


def _submit(model: Path, bootstrap: list[str], home: Path) -> list[str]:
    """One ``darwin submit`` with `home`; the nodes of its trace, in route order."""
    config = SubmitConfig(model=model, prompt="how fast", bootstrap=tuple(bootstrap), home=home,
                          sampling=SamplingConfig(max_new_tokens=NEW_TOKENS), swarm=QUICK)
    result = trio.run(Submission(config).run)
    return [hop.peer_id for hop in result.trace_hops()]


def test_each_generation_records_one_latency_per_node_that_reputation_and_routing_read(
        tiny_llama: Path, swarm: list[str], tmp_path: Path) -> None:
    nodes = _submit(tiny_llama, swarm, tmp_path)
    assert len(nodes) == 2
    _submit(tiny_llama, swarm, tmp_path)
    identity = load_or_create_identity(tmp_path)

    with Ledger.open(tmp_path / LEDGER_FILE, identity) as ledger:
        latencies = [e.record for e in ledger.entries(kinds=[EntryKind.LATENCY])]
    # One summary per node per session, not one entry per token.
    assert sorted(record.subject for record in latencies) == sorted(nodes * 2)
    assert all(isinstance(record.body, Latency) for record in latencies)

    scores = standing(tmp_path, identity)
    for node in nodes:
        measured = scores[PeerId(node)].latency_ms
        assert measured is not None and measured >= 0

    async def providers() -> dict[str, float | None]:
        host_config = HostConfig(bootstrap=tuple(swarm), dht_server=False)
        with trio.fail_after(60):
            async with open_host(identity.seed, host_config) as host:
                model = ModelId(model_id(Checkpoint.open(tiny_llama)))
                client = await SwarmClient.connect(host, model, 4, QUICK, scores)
                return {p.peer_id: p.latency_ms for p in client.providers()}

    seen = trio.run(providers)
    assert seen == {node: scores[PeerId(node)].latency_ms for node in nodes}
