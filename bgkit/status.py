"""What is where: the live pool (and any canary split), each host's release, service and
health, and per pool the release it last served live (``last-live``, recorded by the
switch)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pandas as pd

from bgkit.commands import remote, service
from bgkit.commands.remote import LastLive
from bgkit.config import Config
from bgkit.health import health_url, probe_once
from bgkit.hosts import Fleet, Host, Session, hosts_of
from bgkit.lb.base import BackendServer, LoadBalancer, PoolName
from bgkit.version_signal import VersionSource

__all__ = ["FleetStatus", "HostStatus", "fleet_status"]


@dataclass(frozen=True, slots=True)
class HostStatus:
    host: Host
    release: str
    running: bool | None
    health: str  # "ok" or what is wrong
    version: str | None
    lb_status: str
    last_live: LastLive | None = None


@dataclass(frozen=True, slots=True)
class FleetStatus:
    live_pool: PoolName
    hosts: tuple[HostStatus, ...]
    canary: int = 0  # percent of requests a canary split sends to canary_pool
    canary_pool: PoolName | None = None

    def headline(self) -> str:
        """``live pool: blue``, and the canary split when there is one."""
        text = f"live pool: {self.live_pool}"
        if self.canary:
            text += f"; canary: {self.canary}% of requests to {self.canary_pool}"
        return text

    def pools_table(self) -> pd.DataFrame:
        """Per pool: the release its hosts served when it was last live, since when, and
        when traffic left it (the hosts' ``last-live`` records; "-" where none)."""
        rows = []
        for pool in ("blue", "green"):
            records = [h.last_live for h in self.hosts if h.host.pool == pool]
            releases = sorted({r.release if r and r.release else "-" for r in records})
            since = sorted({r.live_since for r in records if r and r.live_since})
            left = sorted({r.left_at for r in records if r and r.left_at})
            rows.append({"pool": pool, "live": pool == self.live_pool,
                         "last live": ", ".join(releases) or "-",
                         "live since": since[-1] if since else "-",
                         "left at": "-" if pool == self.live_pool or not left else left[-1]})
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "pool": h.host.pool, "live": h.host.pool == self.live_pool,
            "host": h.host.address, "release": h.release or "-",
            "running": h.running, "health": h.health, "version": h.version or "-",
            "lb": h.lb_status,
        } for h in self.hosts])


def fleet_status(config: Config, *, lb: LoadBalancer) -> FleetStatus:
    """Read the live pool from the load balancer and every host's state over SSH and HTTP."""
    state = lb.state()
    live = state.live if state.settled and state.live is not None else lb.live_pool()
    seen: dict[tuple[str, str], BackendServer] = {
        (s.pool, s.address): s for s in lb.backend_health()}
    hosts = [*hosts_of(config, "blue"), *hosts_of(config, "green")]
    facts = Fleet(config).each(hosts, lambda session: _facts(session, config))
    rows = []
    signal = VersionSource.parse(config.service.version_source)
    with httpx.Client(timeout=2.0) as client:
        for result in facts:
            host = result.host
            url = health_url(host.address, config.service.port, config.service.health_path)
            answer = probe_once(client, url, version_from=signal,
                                expected_version=None)
            served, running = result.value if result.value else (None, None)
            backend = seen.get((host.pool, host.address))
            release = served.release if served else ""
            rows.append(HostStatus(
                host=host, release=release if result.ok else f"unreachable: {result.error}",
                running=running, health="ok" if answer.ok else answer.problem,
                version=answer.version, lb_status=_lb_word(backend),
                last_live=served.last_live if served else None))
    return FleetStatus(live_pool=live, hosts=tuple(rows), canary=state.canary,
                       canary_pool=state.canary_pool)


def _lb_word(backend: BackendServer | None) -> str:
    return backend.status if backend is not None else "not in the load balancer"


def _facts(session: Session, config: Config) -> tuple[remote.Served, bool]:
    served = remote.parse_served(session.run(remote.served(session.host.root),
                                             check=False).stdout)
    commands = service.service_commands(config, root=session.host.root)
    return served, session.run(commands.is_running, check=False).ok

