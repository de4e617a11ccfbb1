"""What every load balancer provider offers: the primitives, never the algorithm.

A provider reads which pool is live, switches to a pool (returning once the change is
applied), splits a share of requests to the idle pool for a canary where it can (or
says why it cannot), reports each backend server's health as the load balancer sees it,
and — when it can see them — the sessions it holds open to each server (a deploy waits
for them to close before restarting a host; a provider that cannot see them says so).
For a switch that was interrupted it also reports the whole state — a change staged but not
applied, an application still in progress, or a live pool that cannot be known — and
can discard a staged change. It never guesses: ``live`` is None when it is not known.
The switch algorithm (lease, gates, watch, automatic switch-back, converging after a
crash) lives in one place, ``bgkit.switch``, and only calls these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["BackendServer", "LbState", "LoadBalancer", "PoolName", "ServerSessions",
           "SwitchResult", "other_pool"]

from bgkit.words import PoolName, other_pool


@dataclass(frozen=True, slots=True)
class BackendServer:
    """One server of one pool, as the load balancer's health checks see it."""

    pool: PoolName
    name: str
    address: str
    port: int
    status: str  # the provider's own word: UP, DOWN, MAINT, NOLB...; Octavia: online...
    healthy: bool
    detail: str = ""
    monitored: bool = True  # False: the load balancer does not check it (no monitor)


# Open sessions per server of one pool, by (address, port) as ``backend_health`` names them.
ServerSessions = dict[tuple[str, int], int]


@dataclass(frozen=True, slots=True)
class SwitchResult:
    """A switch that the load balancer has applied."""

    previous: PoolName
    live: PoolName
    applied_s: float  # from the switch call to the load balancer reporting it applied


@dataclass(frozen=True, slots=True)
class LbState:
    """What the load balancer says now, without guessing.

    ``live`` is None when it cannot be known: a change is staged but not applied
    (``staged`` names the pool it would make live, ``pending`` counts the staged changes;
    OVH IPLB: a frontend PUT without its refresh; Octavia: a listener change whose
    provisioning ended in error) or an application is in progress (``applying`` says
    which: an IPLB refresh task, an Octavia provisioning). ``detail`` says what was
    read, and any repair the provider made (HAProxy: a runtime entry set back to its map
    file after an interrupted switch).
    """

    live: PoolName | None
    staged: PoolName | None = None
    pending: int = 0
    applying: str = ""
    detail: str = ""

    canary: int = 0  # percent of requests sent to ``canary_pool`` (0: no split)
    canary_pool: PoolName | None = None

    @property
    def settled(self) -> bool:
        return self.live is not None and not self.applying and not self.pending

    def describe(self) -> str:
        if self.settled:
            text = f"{self.live} is live"
        elif self.applying:
            text = f"unknown: {self.applying}" + (
                f" (staged: {self.staged})" if self.staged else "")
        else:
            text = f"unknown: {self.pending} change(s) staged but not applied" + (
                f" ({self.staged} staged)" if self.staged else "")
        if self.canary:
            text += f", {self.canary}% of requests to {self.canary_pool} (canary)"
        return text + (f"; {self.detail}" if self.detail else "")


class LoadBalancer(Protocol):
    """The primitives a provider implements."""

    name: str

    def live_pool(self) -> PoolName:
        """The pool that receives traffic now, read from the load balancer itself."""
        ...

    def switch(self, pool: PoolName, *, timeout_s: float) -> SwitchResult:
        """Send all traffic to ``pool``; return once applied, or raise LoadBalancerError."""
        ...

    def split(self, pool: PoolName, percent: int, *, timeout_s: float) -> None:
        """Send ``percent`` (0-99) of requests to ``pool`` (the idle one), the rest to the
        live pool, without touching the live pool's servers; 0 ends a split. Returns once
        applied. Raises SplitUnsupported when the provider cannot (saying why), else
        LoadBalancerError."""
        ...

    def split_refusal(self) -> str | None:
        """Why this load balancer can never split traffic (the text :meth:`split` raises
        SplitUnsupported with); None when it can. Read without any request, so that a
        canary is refused before anything (a ``pre_switch`` hook) runs."""
        ...

    def backend_health(self) -> list[BackendServer]:
        """Every server of both pools with its health-check state."""
        ...

    def state(self, *, wait_s: float = 0.0) -> LbState:
        """The whole state; first wait up to ``wait_s`` for applications in progress to end.

        Raises LoadBalancerError only when the load balancer cannot be read at all.
        """
        ...

    def discard_staged(self, keep: PoolName) -> LbState:
        """Undo a staged, unapplied switch so that ``keep`` (the pool the caller knows is
        applied) is staged again, then return the state. Refuses (LoadBalancerError) when
        an application is in progress or other changes are staged too."""
        ...

    def open_sessions(self, pool: PoolName) -> ServerSessions | None:
        """How many sessions the load balancer holds open to each server of ``pool`` now,
        by (address, port) as :meth:`backend_health` names the servers (HAProxy: ``show
        stat``'s ``scur``); None when this load balancer cannot tell, so that a deploy
        relies on ``[deploy].min_idle_s`` and the hosts' own count. Raises
        LoadBalancerError when it can tell but cannot be read."""
        ...
