"""Drift: the load balancer's servers of each pool against those bgkit.toml names.

One rule for deploy, verify and switch: every server the load balancer has in a pool must
be a host of that pool in bgkit.toml (same address, the service's port), and every host of
bgkit.toml must be a server of that pool. A server bgkit does not know would take traffic
it never deployed to nor verified; a host the load balancer lacks was verified for nothing.

:func:`server_drift` is pure; :func:`expected_servers` reads bgkit.toml's hosts and
resolves the names among them (the load balancer holds addresses).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from bgkit.config import Config
from bgkit.lb.base import BackendServer
from bgkit.words import POOLS

__all__ = ["ExpectedServer", "addresses", "drift", "expected_servers", "normal_address",
           "server_drift"]


@dataclass(frozen=True, slots=True)
class ExpectedServer:
    """A host of bgkit.toml as the load balancer should list it."""

    pool: str
    address: str  # as bgkit.toml writes it
    port: int
    addresses: frozenset[str]  # that address normalised, and what a name resolves to


def server_drift(expected: Sequence[ExpectedServer],
                 servers: Sequence[BackendServer]) -> list[str]:
    """Every server the load balancer has that bgkit.toml lacks, and every host of
    bgkit.toml the load balancer lacks, pool by pool, each named (pure)."""
    problems: list[str] = []
    for pool in POOLS:
        wanted = [e for e in expected if e.pool == pool]
        found: set[ExpectedServer] = set()
        for server in (s for s in servers if s.pool == pool):
            match = next((e for e in wanted if e.port == server.port
                          and normal_address(server.address) in e.addresses), None)
            if match is None:
                problems.append(f"{server.name} ({server.address}:{server.port}) serves the "
                                f"{pool} pool in the load balancer but is not a host of "
                                f"pools.{pool} in bgkit.toml")
            else:
                found.add(match)
        problems += [f"{e.address}:{e.port} is a host of pools.{pool} in bgkit.toml but not a "
                     f"server of the {pool} pool in the load balancer"
                     for e in wanted if e not in found]
    return problems


def expected_servers(config: Config) -> list[ExpectedServer]:
    """bgkit.toml's hosts, each with the addresses it may appear as in the load balancer."""
    port = config.service.port
    return [ExpectedServer(pool, host.address, port, addresses(host.address))
            for pool in POOLS for host in config.pools.get(pool).hosts]


def drift(config: Config, servers: Sequence[BackendServer]) -> list[str]:
    """:func:`server_drift` of ``config``'s hosts and the load balancer's ``servers``."""
    return server_drift(expected_servers(config), servers)


def normal_address(address: str) -> str:
    """An IP address in its one written form (``::1``, not ``0:0::1``); a name lowercased."""
    try:
        return str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return address.lower()


def addresses(address: str) -> frozenset[str]:
    """The address normalised; for a name, also every address it resolves to now."""
    found = {normal_address(address)}
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        try:
            infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
        except OSError:
            infos = []
        found |= {normal_address(str(info[4][0])) for info in infos}
    return frozenset(found)
