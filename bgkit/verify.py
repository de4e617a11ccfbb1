"""The verify step: fresh samples of the idle and live pools, judged by the gates.

``verify(config)`` reads the live pool from the load balancer, samples every host of
both pools directly and the load balancer's public address, summarises with pandas,
compares idle with live, and evaluates ``[gates]`` — including the load balancer's own
health checks of the idle servers. It changes nothing anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bgkit.analysis import Comparison, Verdict, evaluate
from bgkit.config import Config
from bgkit.errors import UsageError
from bgkit.lb.base import BackendServer, LoadBalancer, PoolName, other_pool
from bgkit.probe import host_targets, lb_target, sample
from bgkit.release_check import check_release, latest_release

__all__ = ["EXIT_CODES", "VerifyResult", "expected_release_version", "verify"]

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The evidence and the verdict of one verify run."""

    idle_pool: PoolName
    live_pool: PoolName
    expected_version: str | None
    samples: pd.DataFrame
    comparison: Comparison
    verdict: Verdict
    lb_servers: tuple[BackendServer, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict.verdict]

    def lb_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"pool": s.pool, "server": s.name, "address": s.address,
                              "port": s.port, "status": s.status, "healthy": s.healthy,
                              "detail": s.detail} for s in self.lb_servers])

    def to_dict(self) -> dict[str, Any]:
        return {"idle_pool": self.idle_pool, "live_pool": self.live_pool,
                "expected_version": self.expected_version, "samples": len(self.samples),
                "verdict": self.verdict.to_dict(), "comparison": self.comparison.to_dict()}


def expected_release_version(config: Config, release: Path | None) -> str:
    """The version the idle pool should answer with: that of ``release`` or the newest build."""
    return check_release(release or latest_release(config.dist_dir),
                         max_unpacked_mb=config.deploy.max_unpacked_mb).version


def verify(config: Config, *, lb: LoadBalancer, expected_version: str | None,
           samples_per_host: int | None = None, rate_per_s: float = 200.0,
           timeout_s: float = 2.0) -> VerifyResult:
    """Sample both pools and the public address, then judge the idle pool.

    Raises:
        UsageError: ``samples_per_host`` below 1.
        LoadBalancerError: the live pool or the servers' health could not be read.
    """
    count = samples_per_host if samples_per_host is not None else \
        max(2 * config.gates.min_samples_per_host, 20)
    if count < 1:
        raise UsageError(f"samples per host must be at least 1, got {count}")
    live = lb.live_pool()
    idle = other_pool(live)
    targets = [*host_targets(config, idle, expected_version=expected_version),
               *host_targets(config, live, expected_version=None),
               lb_target(config, live_pool=live, expected_version=None)]
    samples = sample(targets, samples_per_target=count, rate_per_s=rate_per_s,
                     timeout_s=timeout_s, version_header=config.service.version_header)
    servers = tuple(lb.backend_health())
    verdict = evaluate(samples, config.gates, idle_pool=idle, live_pool=live,
                       expected_version=expected_version, lb_servers=servers,
                       expected_hosts=[h.address for h in config.pools.get(idle).hosts])
    return VerifyResult(idle_pool=idle, live_pool=live, expected_version=expected_version,
                        samples=samples, comparison=verdict.comparison, verdict=verdict,
                        lb_servers=servers)
