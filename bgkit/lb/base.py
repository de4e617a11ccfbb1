"""What every load balancer provider offers: the primitives, never the algorithm.

A provider reads which pool is live, switches to a pool (returning once the change is
applied), and reports each backend server's health as the load balancer sees it. The
switch algorithm (lock, gates, watch, automatic switch-back) lives in one place,
``bgkit.switch``, and only calls these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["BackendServer", "LoadBalancer", "PoolName", "SwitchResult", "other_pool"]

PoolName = Literal["blue", "green"]


def other_pool(pool: PoolName) -> PoolName:
    return "green" if pool == "blue" else "blue"


@dataclass(frozen=True, slots=True)
class BackendServer:
    """One server of one pool, as the load balancer's health checks see it."""

    pool: PoolName
    name: str
    address: str
    port: int
    status: str  # the provider's own word: UP, DOWN, MAINT, NOLB...; OVH: active/...
    healthy: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SwitchResult:
    """A switch that the load balancer has applied."""

    previous: PoolName
    live: PoolName
    applied_s: float  # from the switch call to the load balancer reporting it applied


class LoadBalancer(Protocol):
    """The primitives a provider implements."""

    name: str

    def live_pool(self) -> PoolName:
        """The pool that receives traffic now, read from the load balancer itself."""
        ...

    def switch(self, pool: PoolName, *, timeout_s: float) -> SwitchResult:
        """Send all traffic to ``pool``; return once applied, or raise LoadBalancerError."""
        ...

    def backend_health(self) -> list[BackendServer]:
        """Every server of both pools with its health-check state."""
        ...
