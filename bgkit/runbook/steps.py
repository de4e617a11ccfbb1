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

__all__ = ["deploy_plan", "deploy_step"]


def _show(value: Any) -> None:
    from IPython.display import display

    display(value)


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
