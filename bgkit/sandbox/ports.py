"""Free TCP ports for a sandbox that must not disturb anything else on this machine.

A port is free for the sandbox only if it can be bound on 127.0.0.1 (HAProxy's public
port) *and* on every host address (127.0.1.i and 127.0.2.i serve the app and SSH): a
service already listening on 127.0.1.1:8080 is invisible to a check of 127.0.0.1 alone.
Candidates come from :func:`bgkit.sandbox.processes.free_port` (``$BGKIT_PORT_RANGE``).
"""

from __future__ import annotations

import contextlib
import socket

from bgkit.errors import SandboxError
from bgkit.sandbox.processes import free_port

__all__ = ["free_ports", "host_addresses"]


def host_addresses(hosts: int) -> list[str]:
    """Every address a sandbox of ``hosts`` hosts per pool listens on."""
    return ["127.0.0.1", *(f"127.0.{pool}.{i}" for pool in (1, 2) for i in range(1, hosts + 1))]


def free_ports(count: int, *, hosts: int, attempts: int = 50) -> list[int]:
    """``count`` distinct ports that every sandbox address can bind right now.

    Raises:
        SandboxError: none found after ``attempts`` candidates each.
    """
    addresses = host_addresses(hosts)
    found: list[int] = []
    for _ in range(attempts * count):
        if len(found) == count:
            break
        port = free_port()
        if port not in found and all(_bindable(address, port) for address in addresses):
            found.append(port)
    if len(found) < count:
        raise SandboxError(f"found only {len(found)} of {count} ports free on every sandbox "
                           f"address ({addresses[0]} ... {addresses[-1]})")
    return found


def _bindable(address: str, port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True
