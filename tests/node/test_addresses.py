"""A wildcard listen address is advertised as the machine's own addresses, never as 0.0.0.0."""

from __future__ import annotations

import multiaddr

from darwin.net.addresses import expand_wildcards, local_ipv4_addresses


def _addrs(*texts: str) -> list[multiaddr.Multiaddr]:
    return [multiaddr.Multiaddr(text) for text in texts]


def test_a_wildcard_becomes_one_address_per_local_ip_and_others_stay() -> None:
    addrs = _addrs("/ip4/0.0.0.0/tcp/4001", "/ip4/10.0.0.5/tcp/4002")
    expanded = expand_wildcards(addrs, ["192.0.2.7", "127.0.0.1"])
    assert [str(a) for a in expanded] == [
        "/ip4/192.0.2.7/tcp/4001", "/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.5/tcp/4002"]


def test_an_address_that_is_already_advertised_is_not_repeated() -> None:
    addrs = _addrs("/ip4/0.0.0.0/tcp/4001", "/ip4/127.0.0.1/tcp/4001")
    assert [str(a) for a in expand_wildcards(addrs, ["127.0.0.1"])] == ["/ip4/127.0.0.1/tcp/4001"]


def test_the_local_addresses_end_with_the_loopback_and_hold_no_wildcard() -> None:
    ips = local_ipv4_addresses()
    assert ips[-1] == "127.0.0.1" and "0.0.0.0" not in ips
    assert len(ips) == len(set(ips))
