"""Drain before restart: a host of the idle pool is restarted only once nothing uses it.

One mechanism for every host (:class:`Drain`), before its service restarts:

1. traffic left its pool at least ``[deploy].min_idle_s`` ago, by the host's
   ``last-live`` record (the switch writes when traffic left); like Argo Rollouts'
   scale-down delay, it covers what nobody can count (clients, proxies and DNS still
   holding the old pool, a load balancer that cannot report sessions);
2. then no connection is open to its service, counted both by the load balancer (when
   it can see sessions: HAProxy's ``scur``) and on the host itself (``ss``, which also
   sees clients that bypass the load balancer), for up to ``[deploy].drain_timeout_s``.

Whatever is still open then is cut by the restart, and counted. The service's own
``[service].drain_timeout_s`` (SIGTERM to exit, the systemd unit's ``TimeoutStopSec``)
is another matter: how long the service may take to finish once told to stop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bgkit.commands import remote
from bgkit.commands.remote import LastLive
from bgkit.config import Config
from bgkit.drift import addresses, normal_address
from bgkit.errors import LoadBalancerError
from bgkit.hosts import Session
from bgkit.lb.base import LoadBalancer, PoolName

__all__ = ["Drain"]

POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class Drain:
    """Waiting, before a restart, until nothing uses the service (one mechanism for every
    host): the pool idle for ``[deploy].min_idle_s``, then no connection open by the load
    balancer's count (when it can see sessions) nor by the host's (``ss``)."""

    lb: LoadBalancer
    began: float  # when the deploy started (time.monotonic())

    def wait(self, session: Session, config: Config, record: LastLive | None) -> int:
        """Wait (``record``: the host's last-live, read at preflight); the connections
        still open when ``[deploy].drain_timeout_s`` ran out (0: nothing is cut)."""
        self._idle_long_enough(session, config, record)
        timeout = config.deploy.drain_timeout_s
        deadline = time.monotonic() + timeout
        said = ""
        while True:
            count, seen_by = self._open(session, config)
            if count == 0:
                return 0
            if time.monotonic() >= deadline:
                session.step(f"{count} connection(s) still open after {timeout:g} s "
                             "([deploy].drain_timeout_s); the restart cuts them")
                return count
            saying = f"draining: {count} connection(s) open ({seen_by})"
            if saying != said:
                session.step(saying)
                said = saying
            time.sleep(POLL_S)

    def _idle_long_enough(self, session: Session, config: Config,
                          record: LastLive | None) -> None:
        """Sleep until traffic left this host's pool ``min_idle_s`` ago, by its last-live
        record (written by the switch); a record that still says live (the switch that
        moved traffic away could not record it) counts from when this deploy began."""
        if record is None:
            return  # the pool never went live through bgkit
        idle_s = time.monotonic() - self.began
        if record.left_at:
            try:
                left = datetime.fromisoformat(record.left_at)
                idle_s = (datetime.now(UTC) - left).total_seconds()
            except ValueError:
                pass
        remaining = config.deploy.min_idle_s - idle_s
        if remaining > 0:
            session.step(f"traffic left this pool {max(idle_s, 0):.0f} s ago; leaving it "
                         f"idle {remaining:.1f} s more ([deploy].min_idle_s)")
            time.sleep(remaining)

    def _open(self, session: Session, config: Config) -> tuple[int, str]:
        """The connections open to this host's service, and who counted them."""
        host = session.host
        answer = session.run(remote.open_connections(host.address, config.service.port),
                             check=False).stdout.strip()
        on_host = int(answer) if answer.isdigit() else 0
        try:
            sessions = self.lb.open_sessions(_pool_name(host.pool))
        except LoadBalancerError:
            sessions = None
        if sessions is None:
            return on_host, f"{on_host} on the host"
        mine = addresses(host.address)
        by_lb = sum(count for (address, port), count in sessions.items()
                    if port == config.service.port and normal_address(address) in mine)
        return max(on_host, by_lb), f"{by_lb} by the load balancer, {on_host} on the host"


def _pool_name(pool: str) -> PoolName:
    return "blue" if pool == "blue" else "green"
