"""The addresses a host advertises: a wildcard listen address becomes the machine's own.

A host listening on ``/ip4/0.0.0.0/tcp/P`` accepts connections on every interface, but
``0.0.0.0`` is not an address anyone can dial. Advertised as is (in the ``listening`` line,
identify and DHT provider records), it leaves a node unreachable for every peer that learns
its addresses from the swarm, and pushing hops could not dial each other. So, as go-libp2p
does, a wildcard is advertised as one address per IPv4 address of the machine: the one its
default route leaves from first, then the host name's, then the loopback.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import multiaddr

__all__ = ["WILDCARD", "expand_wildcards", "local_ipv4_addresses"]

WILDCARD = "/ip4/0.0.0.0/"
_NOWHERE = ("192.0.2.1", 9)  # TEST-NET-1: connecting a UDP socket sends nothing


def expand_wildcards(addrs: Sequence[multiaddr.Multiaddr],
                     ips: Sequence[str]) -> list[multiaddr.Multiaddr]:
    """`addrs` with every ``/ip4/0.0.0.0/...`` replaced by the same address on each of `ips`."""
    expanded: list[multiaddr.Multiaddr] = []
    for addr in addrs:
        text = str(addr)
        if text.startswith(WILDCARD):
            rest = text[len(WILDCARD):]
            expanded.extend(multiaddr.Multiaddr(f"/ip4/{ip}/{rest}") for ip in ips)
        else:
            expanded.append(addr)
    return list({str(addr): addr for addr in expanded}.values())


def local_ipv4_addresses() -> list[str]:
    """This machine's IPv4 addresses: the outward one, the host name's, then 127.0.0.1."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_NOWHERE)  # picks the interface of the default route
            found.append(probe.getsockname()[0])
        except OSError:
            pass  # no route out: loopback only
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        found.extend(str(info[4][0]) for info in infos)
    except OSError:
        pass
    found.append("127.0.0.1")
    return [ip for ip in dict.fromkeys(found) if ip != "0.0.0.0"]
