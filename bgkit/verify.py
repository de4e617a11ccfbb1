"""The verify step: fresh samples of the idle and live pools, judged by the gates.

``verify(config)`` reads the live pool from the load balancer, samples every host of
both pools directly and the load balancer's public address, reads over SSH which release
each host serves (where ``current`` points), summarises with pandas, compares idle with
live, and evaluates ``[gates]`` — including the load balancer's own health checks of the
idle servers, whether its servers are bgkit.toml's hosts, and, given the release id,
whether every idle host serves that very build. It changes nothing anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bgkit.analysis import Comparison, Verdict, evaluate
from bgkit.analysis.served import HostRelease
from bgkit.config import Config
from bgkit.drift import drift
from bgkit.errors import UsageError
from bgkit.lb.base import BackendServer, LoadBalancer, PoolName, other_pool
from bgkit.ledger import HostServes, Ledger, SshLedger
from bgkit.parity import ParityReport, collect
from bgkit.probe import host_targets, lb_target, sample
from bgkit.version_signal import VersionSource, build_of
from bgkit.words import Outcome, exit_code

__all__ = ["VERDICT_OUTCOMES", "VerifyResult", "verify"]

# A verdict as the outcome of a verify step: pass succeeded, fail failed, else inconclusive.
VERDICT_OUTCOMES = {"pass": Outcome.SUCCEEDED, "fail": Outcome.FAILED,
                    "inconclusive": Outcome.INCONCLUSIVE}


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
    version_signal: str = ""  # where the hosts' versions came from
    release: str | None = None  # the release id the idle pool should serve, when known
    served: tuple[HostServes, ...] = ()  # what each host serves, read over SSH
    parity: ParityReport | None = None  # both pools' host facts, when they were read

    def releases(self, pool: PoolName) -> list[str]:
        """The releases the hosts of ``pool`` serve (read over SSH), each once."""
        return sorted({h.release for h in self.served if h.pool == pool and h.release})

    @property
    def exit_code(self) -> int:
        return exit_code(VERDICT_OUTCOMES[self.verdict.overall])

    def lb_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"pool": s.pool, "server": s.name, "address": s.address,
                              "port": s.port, "status": s.status, "healthy": s.healthy,
                              "detail": s.detail} for s in self.lb_servers])

    def to_dict(self) -> dict[str, Any]:
        return {"idle_pool": self.idle_pool, "live_pool": self.live_pool,
                "expected_version": self.expected_version, "release": self.release,
                "samples": len(self.samples),
                "version_signal": self.version_signal,
                "releases": {h.address: h.release or h.error for h in self.served},
                "verdict": self.verdict.to_dict(), "comparison": self.comparison.to_dict(),
                "parity": self.parity.to_dict() if self.parity is not None else None}


def verify(config: Config, *, lb: LoadBalancer, expected_version: str | None,
           samples_per_host: int | None = None, rate_per_s: float = 200.0,
           timeout_s: float = 2.0, release: str | None = None,
           live_pool: PoolName | None = None, ledger: Ledger | None = None,
           parity: bool | None = None) -> VerifyResult:
    """Sample both pools and the public address, then judge the idle pool.

    ``release`` (the release id the idle pool should serve): every idle host must serve
    it (``ledger``, default over SSH, says what each serves), and an answer naming
    another build (``<version>+<build>``) is from another release. ``live_pool``, when
    the caller has just read it, is not read again. ``parity``: read both pools' host
    facts over SSH (one command per host) and judge them as the ``parity`` gate
    (:mod:`bgkit.parity`); None reads them only when ``[gates] parity = "fail"`` makes
    them decide.

    Raises:
        UsageError: ``samples_per_host`` below 1.
        LoadBalancerError: the live pool or the servers' health could not be read.
    """
    count = samples_per_host if samples_per_host is not None else \
        max(2 * config.gates.min_samples_per_host, 20)
    if count < 1:
        raise UsageError(f"samples per host must be at least 1, got {count}")
    live = live_pool or lb.live_pool()
    idle = other_pool(live)
    signal = VersionSource.parse(config.service.version_source)
    # Without a version on the wire, answers are judged by the version read over SSH.
    on_wire = expected_version if signal.says_version else None
    build = build_of(release, name=config.app.name, version=expected_version)
    targets = [*host_targets(config, idle, expected_version=on_wire, expected_build=build),
               *host_targets(config, live, expected_version=None),
               lb_target(config, live_pool=live, expected_version=None)]
    samples = sample(targets, samples_per_target=count, rate_per_s=rate_per_s,
                     timeout_s=timeout_s, version_from=signal)
    served = tuple((ledger or SshLedger(config)).serving([idle, live]))
    described = f"each answer's {signal.describe()}"
    if not signal.says_version:
        samples = _versions_over_ssh(samples, served)
        described = "each host's current release, read over SSH (version_from = none)"
    servers = tuple(lb.backend_health())
    releases = {h.address: HostRelease(None if h.error else h.release, h.version,
                                       h.error or "") for h in served if h.pool == idle}
    verdict = evaluate(samples, config.gates, idle_pool=idle, live_pool=live,
                       expected_version=expected_version, lb_servers=servers,
                       expected_hosts=[h.address for h in config.pools.get(idle).hosts],
                       expected_release=release, releases=releases,
                       drift=drift(config, servers))
    facts = None
    if parity or (parity is None and config.gates.parity == "fail"):
        facts = collect(config)
        verdict = verdict.with_gates(facts.gate())
    return VerifyResult(idle_pool=idle, live_pool=live, expected_version=expected_version,
                        samples=samples, comparison=verdict.comparison, verdict=verdict,
                        lb_servers=servers, version_signal=described, release=release,
                        served=served, parity=facts)


def _versions_over_ssh(samples: pd.DataFrame, served: tuple[HostServes, ...]) -> pd.DataFrame:
    """``samples`` with each host row's version set to the version of the release the
    host's ``current`` points at (read over SSH); None where it could not be read."""
    found = {(h.pool, h.address): h.version for h in served}
    out = samples.copy()
    is_host = out["target"] == "host"
    out.loc[is_host, "version"] = [found.get((pool, host)) for pool, host in
                                   zip(out.loc[is_host, "pool"], out.loc[is_host, "host"],
                                       strict=True)]
    return out
