"""One call per notebook step: do the work, show it, record it.

Each function shows its results as tables (``IPython.display``), records them with
``record()`` for the archive, and re-raises a failure after recording it, so an archived
run always holds the evidence of what happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bgkit.config import Config
from bgkit.errors import DeployError
from bgkit.lb.base import LoadBalancer, other_pool
from bgkit.runbook.record import record

__all__ = ["deploy_plan", "deploy_step", "verify_step"]


def _show(value: Any) -> None:
    from IPython.display import display

    display(value)


def _png(data: bytes) -> Any:
    from IPython.display import Image

    return Image(data=data, format="png")


def deploy_plan(config: Config, *, lb: LoadBalancer) -> pd.DataFrame:
    """Which pool is live, which will receive the release, and its hosts; recorded."""
    live = lb.live_pool()
    idle = other_pool(live)
    print(f"live pool: {live} (serving traffic; bgkit will not touch it)")
    print(f"idle pool: {idle} (will receive the release)")
    plan = pd.DataFrame([
        {"pool": pool, "role": "live" if pool == live else "idle (target)",
         "host": host.address, "ssh_port": host.port, "user": host.user,
         "deploy_root": host.deploy_root}
        for pool in ("blue", "green") for host in config.pools.get(pool).hosts
    ])
    record("plan", {"live_pool": live, "target_pool": idle})
    return plan


def deploy_step(config: Config, *, release: str = "", lb: LoadBalancer | None = None) -> Any:
    """Deploy to the idle pool with per-host progress; record the per-host table."""
    from bgkit.deploy import deploy, hosts_table
    from bgkit.progress import LineProgress

    try:
        result = deploy(config, release=Path(release) if release else None, lb=lb,
                        progress=LineProgress())
    except DeployError as error:
        table = hosts_table(error.results)
        record("deploy", {"ok": False, "error": str(error)})
        record("hosts", table)
        _show(table)
        raise
    record("deploy", {"ok": True, "release": result.release, "sha256": result.sha256,
                      "pool": result.pool, "live_pool": result.live_pool,
                      "moved": result.moved})
    record("hosts", result.table())
    return result


def verify_step(config: Config, *, lb: LoadBalancer, release: str = "",
                samples_per_host: int = 0) -> Any:
    """Sample, judge, show and record; a fail or inconclusive verdict becomes the outcome."""
    from bgkit import plots
    from bgkit.runbook.display import styled_gates, styled_summary, verdict_banner
    from bgkit.verify import expected_release_version, verify

    expected = expected_release_version(config, Path(release) if release else None)
    live = lb.live_pool()
    print(f"live pool: {live}; idle pool: {other_pool(live)}; the idle pool must answer "
          f"version {expected}")
    result = verify(config, lb=lb, expected_version=expected,
                    samples_per_host=samples_per_host or None)
    verdict = result.verdict
    record("verify", result.to_dict())
    record("summary", verdict.summary)
    record("gates", verdict.gate_table())
    record("lb_view", result.lb_table())
    record("samples", result.samples)
    _show(styled_summary(verdict.summary, config.gates, idle_pool=result.idle_pool))
    _show(result.lb_table())
    for figure in (plots.latency_cdf(result.samples, max_p99_ms=config.gates.max_p99_ms),
                   plots.latency_by_host(result.samples), plots.over_time(result.samples)):
        _show(_png(plots.figure_to_png(figure)))
    _show(styled_gates(verdict.gate_table()))
    _show(verdict_banner(verdict.verdict, verdict.reasons()))
    if verdict.verdict != "pass":
        record("outcome", "failed" if verdict.verdict == "fail" else "inconclusive")
    return result
