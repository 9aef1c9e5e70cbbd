"""The ledger's boundaries: what it imports, and hostile bytes from the wire."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_support import PEER, VERIFIER, verdict

from darwin.ledger import EntryKind, InvalidEntryError, Record
from darwin.ledger.entries import decode_payload
from darwin.ledger.record import Entry

PROBE = """
import importlib, json, pkgutil, sys
import darwin.ledger as ledger
for module in pkgutil.iter_modules(ledger.__path__):
    importlib.import_module(f"darwin.ledger.{module.name}")
print(json.dumps(sorted(sys.modules)))
"""


def test_the_ledger_imports_only_darwin_protocol_and_no_heavy_stack() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True, timeout=60)
    modules = json.loads(result.stdout)
    darwin = {name.split(".")[1] for name in modules if name.startswith("darwin.")}
    assert darwin <= {"ledger", "protocol"}
    assert [name for name in modules if name.split(".")[0] in ("torch", "trio", "libp2p")] == []


ints = st.integers(-(2**63), 2**64 - 1)  # what msgpack can encode
values = st.one_of(st.none(), st.booleans(), ints, st.floats(),
                   st.text(max_size=80), st.binary(max_size=80), st.just(PEER.peer_id),
                   st.sampled_from([str(kind) for kind in EntryKind]),
                   st.lists(ints, max_size=3), st.dictionaries(st.text(), ints, max_size=3))
record_keys = ("v", "kind", "subject", "payload", "signer", "time_ms", "anchor", "signature")
wire_maps = st.one_of(
    st.binary(max_size=300),
    st.fixed_dictionaries({key: values for key in record_keys}).map(msgpack.packb),
    st.dictionaries(st.sampled_from((*record_keys, "reason", "outcome", "refs")), values)
    .map(msgpack.packb),
)


@settings(max_examples=300, deadline=None)
@given(data=wire_maps)
def test_hostile_wire_bytes_raise_only_invalid_entry(data: bytes) -> None:
    for decode in (Record.from_wire, Entry.from_wire):
        with contextlib.suppress(InvalidEntryError):
            decode(data)
    for kind in EntryKind:
        with contextlib.suppress(InvalidEntryError):
            decode_payload(kind, data)


@settings(max_examples=200, deadline=None)
@given(index=st.integers(min_value=0), xor=st.integers(1, 255))
def test_a_flipped_byte_in_a_wire_record_is_refused_or_fails_its_signature(
        index: int, xor: int) -> None:
    wire = bytearray(verdict(VERIFIER, PEER, "fail").to_wire())
    wire[index % len(wire)] ^= xor
    try:
        Record.from_wire(bytes(wire)).check_signature()
    except InvalidEntryError:
        return
    raise AssertionError("a changed record was accepted")
