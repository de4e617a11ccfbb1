"""Where things stand, for ``00_overview.ipynb``: the fleet and the latest runs.

:func:`pool_summary` and :func:`figure_timeline` are pure (over a fleet status table and
the run table of :func:`bgkit.runbook.archive.list_runs`); :func:`overview_step` reads the
load balancer, the hosts and the archive, shows it all and records it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure

from bgkit.runbook.report import STOPPED_OUTCOMES, SUCCEEDED, step_name

if TYPE_CHECKING:
    from bgkit.config import Config
    from bgkit.lb.base import LoadBalancer

__all__ = ["POOL_COLUMNS", "figure_timeline", "overview_step", "pool_summary"]

POOL_COLUMNS = ["pool", "role", "hosts", "healthy", "releases"]
OUTCOME_COLOURS = {"succeeded": "#2ca02c", "stopped": "#ff7f0e", "failed": "#d62728"}


def pool_summary(hosts: pd.DataFrame, live_pool: str) -> pd.DataFrame:
    """One row per pool from a fleet status table (``bgkit.status.FleetStatus.table``):
    its role, how many hosts, how many healthy, and the releases they run."""
    rows = []
    for pool in ("blue", "green"):
        mine = hosts[hosts["pool"] == pool]
        releases = sorted({str(r) for r in mine["release"] if str(r) not in ("", "-")})
        rows.append({"pool": pool, "role": "live" if pool == live_pool else "idle",
                     "hosts": len(mine), "healthy": int((mine["health"] == "ok").sum()),
                     "releases": ", ".join(releases) or "-"})
    return pd.DataFrame(rows, columns=POOL_COLUMNS)


def figure_timeline(runs: pd.DataFrame, *, last: int = 50) -> Figure:
    """The ``last`` runs on a time line, one row per step, coloured by how they ended
    (succeeded, stopped by a gate or a person, failed); "no runs yet" without any."""
    fig = Figure(figsize=(8.0, 3.0), layout="constrained")
    ax = fig.add_subplot()
    frame = runs.dropna(subset=["time"]).sort_values("time", kind="stable").tail(last)
    if frame.empty:
        ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes)
        ax.set(title="Latest runs", xticks=[], yticks=[])
        return fig
    steps = sorted({step_name(step) for step in frame["step"]})
    kind = frame["outcome"].map(lambda o: "succeeded" if o == SUCCEEDED else
                                "stopped" if o in STOPPED_OUTCOMES else "failed")
    times = pd.to_datetime(frame["time"], utc=True).dt.tz_convert(None)
    rows = frame["step"].map(lambda step: steps.index(step_name(step)))
    for name, colour in OUTCOME_COLOURS.items():
        chosen = kind == name
        if chosen.any():
            ax.scatter(times[chosen], rows[chosen], color=colour, label=name, s=36,
                       edgecolors="black", linewidths=0.4)
    ax.set_yticks(range(len(steps)), steps)
    ax.set(title=f"Latest {len(frame)} run(s)", xlabel="time (UTC)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", ncols=3)
    return fig


def overview_step(config: Config, *, lb: LoadBalancer, runs: int = 20) -> dict[str, Any]:
    """Show and record the fleet (pools, hosts, releases, the live pool) and the latest
    ``runs`` runs with their time line; returns what was recorded."""
    from IPython.display import display

    from bgkit.runbook.archive import list_runs
    from bgkit.runbook.evidence import html_table
    from bgkit.runbook.record import record
    from bgkit.runbook.report import as_png
    from bgkit.status import fleet_status

    status = fleet_status(config, lb=lb)
    hosts = status.table()
    pools = pool_summary(hosts, status.live_pool)
    print(f"{status.headline()} (read from the load balancer)")
    record("pools", pools)
    record("hosts", hosts)
    from IPython.display import HTML

    display(HTML(html_table(pools)))
    display(HTML(html_table(hosts)))
    archive = list_runs(config.runs_dir) if config.runs_dir.is_dir() else \
        pd.DataFrame(columns=["time", "step", "run_id", "outcome", "operator", "release"])
    latest = archive.tail(runs)[["time", "step", "run_id", "outcome", "operator", "release"]]
    record("latest_runs", latest.astype({"time": "string"}))
    display(HTML(html_table(latest.iloc[::-1])))
    display(as_png(figure_timeline(archive)))
    return {"live_pool": status.live_pool, "pools": len(pools), "runs": len(latest)}
