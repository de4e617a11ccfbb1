"""Numbers a reviewer reads from the whole run archive, and their figures.

Input is the run table of :func:`bgkit.runbook.archive.list_runs` (``time``, ``step``,
``run_id``, ``outcome``, ``duration_s``...). Every function here is pure over that
table except :func:`load_switch_records`, which reads each switch run's ``switch``
record from its notebook. Figures use matplotlib's object API (no pyplot state).

How runs are counted:

- a *deploy* is a run of a ``deploy*`` step, a *switch* a run of the ``switch`` step
  (the number prefix ``04_`` is ignored);
- ``succeeded`` is success; ``not approved``, ``refused`` and ``inconclusive`` are
  *stopped* (a gate or a person said no, nothing broke); every other outcome
  (``failed``, ``switched back``, ``switch failed``, ``needs attention``,
  ``interrupted``...) is a *failure*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["STOPPED_OUTCOMES", "SUCCEEDED", "as_png", "deployments_per_week", "describe",
           "failure_rate_by_step", "figure_deployments", "figure_failure_rate",
           "figure_switch_latency", "figure_time_to_recover", "load_runs",
           "load_switch_records", "step_name", "switch_latency", "time_to_recover"]

SUCCEEDED = "succeeded"
STOPPED_OUTCOMES = frozenset({"not approved", "refused", "inconclusive"})
WEEK_COLUMNS = ["deploys", "switches", "failed"]
RATE_COLUMNS = ["step", "runs", "succeeded", "stopped", "failed", "failure_rate"]
RECOVERY_COLUMNS = ["failed_at", "failed_step", "failed_run_id", "outcome", "failures",
                    "recovered_at", "recovered_by", "time_to_recover"]
LATENCY_COLUMNS = ["time", "run_id", "outcome", "applied_s", "rolling_median_s"]
SIZE = (8.0, 3.5)


def step_name(step: object) -> str:
    """``04_switch`` -> ``switch``; ``02_deploy_green`` -> ``deploy_green``."""
    text = str(step or "")
    head, _, rest = text.partition("_")
    return rest if head.isdigit() and rest else text


def load_runs(*, runs_dir: str = "", config_path: str = "") -> tuple[pd.DataFrame, str]:
    """The run table to review and where it comes from: the folder ``runs_dir``, else the
    archive of ``config_path`` (else ``$BGKIT_CONFIG``, else ./bgkit.toml) — for an
    ``s3://`` archive, its bucket, read through the local copy — else ``../runs``.

    Raises:
        ConfigError: the config given is missing or invalid.
        StorageError: the bucket could not be read.
    """
    import os

    from bgkit.config import CONFIG_ENV, DEFAULT_NAME, load_config
    from bgkit.runbook.archive import list_runs
    from bgkit.runbook.backends import open_archive

    if runs_dir:
        return list_runs(Path(runs_dir)), runs_dir
    if not (config_path or os.environ.get(CONFIG_ENV) or Path(DEFAULT_NAME).exists()):
        return list_runs(Path("../runs")), "../runs"
    archive = open_archive(load_config(config_path or None))
    archive.refresh()
    return list_runs(archive.folder), archive.location


def describe(runs: pd.DataFrame, runs_dir: Path | str) -> str:
    """One line saying what the archive holds: "no runs yet", or how many and when."""
    frame = _prepared(runs)
    if frame.empty:
        return f"no runs yet in {runs_dir}"
    first, last = (stamp.strftime("%Y-%m-%d %H:%M") for stamp in frame["time"].iloc[[0, -1]])
    return (f"{len(frame)} run(s) in {runs_dir}, {first} to {last} UTC: "
            f"{int(frame['ok'].sum())} succeeded, {int(frame['stopped'].sum())} stopped, "
            f"{int(frame['failed'].sum())} failed")


def as_png(fig: Figure) -> Any:
    """``fig`` as an IPython PNG image, for a notebook cell to show."""
    from IPython.display import Image

    from bgkit.plots import figure_to_png

    return Image(data=figure_to_png(fig), format="png")


def deployments_per_week(runs: pd.DataFrame) -> pd.DataFrame:
    """Per week (index: the Monday, UTC), succeeded ``deploys`` and ``switches`` and
    ``failed`` deploy or switch runs. Weeks without runs are rows of zeros."""
    frame = _prepared(runs)
    frame = frame[frame["is_deploy"] | frame["is_switch"]]
    if frame.empty:
        return pd.DataFrame(columns=WEEK_COLUMNS, index=pd.DatetimeIndex([], name="week"),
                            dtype="int64")
    week = frame["time"].dt.tz_convert(None).dt.to_period("W-SUN").dt.start_time
    counts = pd.DataFrame({
        "deploys": (frame["is_deploy"] & frame["ok"]).groupby(week).sum(),
        "switches": (frame["is_switch"] & frame["ok"]).groupby(week).sum(),
        "failed": frame["failed"].groupby(week).sum(),
    })
    weeks = pd.date_range(counts.index.min(), counts.index.max(), freq="7D", name="week")
    return counts.reindex(weeks, fill_value=0).astype("int64")


def failure_rate_by_step(runs: pd.DataFrame) -> pd.DataFrame:
    """Per step (sorted by name): runs, succeeded, stopped, failed, and ``failure_rate`` =
    failed / runs."""
    frame = _prepared(runs)
    if frame.empty:
        return pd.DataFrame(columns=RATE_COLUMNS)
    grouped = frame.groupby("step", sort=True)
    table = pd.DataFrame({
        "runs": grouped.size(),
        "succeeded": grouped["ok"].sum(),
        "stopped": grouped["stopped"].sum(),
        "failed": grouped["failed"].sum(),
    }).astype("int64")
    table["failure_rate"] = table["failed"] / table["runs"]
    return table.reset_index()[RATE_COLUMNS]


def time_to_recover(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per incident: a failed deploy or switch run, up to the next succeeded
    switch. Failures before that switch belong to the same incident (``failures`` counts
    them; ``failed_at`` is the first). ``time_to_recover`` runs from the first failure's
    start to the end of the recovering switch; it is NaT while the incident is open."""
    frame = _prepared(runs)
    rows: list[dict[str, object]] = []
    open_incident: dict[str, object] | None = None
    for run in frame.itertuples(index=False):
        if run.failed and (run.is_deploy or run.is_switch):
            if open_incident is None:
                open_incident = {"failed_at": run.time, "failed_step": run.step,
                                 "failed_run_id": run.run_id, "outcome": run.outcome,
                                 "failures": 0}
            open_incident["failures"] = int(str(open_incident["failures"])) + 1
        elif run.is_switch and run.ok and open_incident is not None:
            rows.append({**open_incident, "recovered_at": run.finished,
                         "recovered_by": run.run_id})
            open_incident = None
    if open_incident is not None:
        rows.append({**open_incident, "recovered_at": pd.NaT, "recovered_by": None})
    table = pd.DataFrame(rows, columns=RECOVERY_COLUMNS[:-1])
    table["failed_at"] = pd.to_datetime(table["failed_at"], utc=True)
    table["recovered_at"] = pd.to_datetime(table["recovered_at"], utc=True)
    table["time_to_recover"] = table["recovered_at"] - table["failed_at"]
    return table


def load_switch_records(runs: pd.DataFrame) -> pd.DataFrame:
    """The ``switch`` record of every switch run in ``runs``, read from its notebook:
    ``time``, ``run_id``, ``outcome`` (the run's), ``action``, ``switch_outcome``,
    ``applied_s``, ``switch_back_applied_s``. Runs without the record are left out."""
    columns = ["time", "run_id", "outcome", "action", "switch_outcome", "applied_s",
               "switch_back_applied_s"]
    frame = _prepared(runs)
    rows = []
    for run in frame[frame["is_switch"]].itertuples(index=False):
        value = _switch_record(Path(str(run.path)))
        if value is not None:
            rows.append({"time": run.time, "run_id": run.run_id, "outcome": run.outcome,
                         "action": value.get("action"), "switch_outcome": value.get("outcome"),
                         "applied_s": value.get("applied_s"),
                         "switch_back_applied_s": value.get("switch_back_applied_s")})
    table = pd.DataFrame(rows, columns=columns)
    table["time"] = pd.to_datetime(table["time"], utc=True)
    return table


def switch_latency(switches: pd.DataFrame, *, window: int = 5) -> pd.DataFrame:
    """Switches whose load balancer change was applied, oldest first: ``time``, ``run_id``,
    ``outcome``, ``applied_s`` and the rolling median of the last ``window``."""
    if switches.empty:
        return pd.DataFrame(columns=LATENCY_COLUMNS)
    table = switches.assign(applied_s=pd.to_numeric(switches["applied_s"], errors="coerce"))
    table = table.dropna(subset=["applied_s"]).sort_values("time", kind="stable")
    table["rolling_median_s"] = table["applied_s"].rolling(window, min_periods=1).median()
    return table.reset_index(drop=True)[LATENCY_COLUMNS]


def figure_deployments(weekly: pd.DataFrame) -> Figure:
    """Bars per week: succeeded deploys and switches, failed runs."""
    fig, ax = _figure("Deploys and switches per week")
    if weekly.empty:
        return _nothing(fig, ax)
    labels = [stamp.strftime("%Y-%m-%d") for stamp in weekly.index]
    positions = list(range(len(labels)))
    for offset, column, colour in ((-0.27, "deploys", "#1f77b4"),
                                   (0.0, "switches", "#2ca02c"), (0.27, "failed", "#d62728")):
        ax.bar([p + offset for p in positions], weekly[column], width=0.27, color=colour,
               label=column)
    ax.set_xticks(positions, labels, rotation=45, ha="right")
    ax.set_xlabel("week starting (UTC)")
    ax.set_ylabel("runs")
    ax.legend()
    return fig


def figure_failure_rate(rates: pd.DataFrame) -> Figure:
    """Horizontal bars: failure rate per step, with the run count."""
    fig, ax = _figure("Failure rate per step")
    if rates.empty:
        return _nothing(fig, ax)
    ax.barh(rates["step"], rates["failure_rate"] * 100, color="#d62728")
    for y, (rate, count) in enumerate(zip(rates["failure_rate"], rates["runs"], strict=True)):
        ax.annotate(f"{rate:.0%} of {count}", (rate * 100, y), xytext=(4, 0),
                    textcoords="offset points", va="center")
    ax.set_xlim(0, 110)
    ax.invert_yaxis()
    ax.set_xlabel("failed runs (%)")
    return fig


def figure_time_to_recover(incidents: pd.DataFrame) -> Figure:
    """Hours from each incident's first failure to the switch that ended it."""
    fig, ax = _figure("Time to recover (failed deploy or switch -> next good switch)")
    closed = incidents.dropna(subset=["time_to_recover"])
    if closed.empty:
        return _nothing(fig, ax, "no recovered incidents")
    hours = closed["time_to_recover"].dt.total_seconds() / 3600
    ax.plot(closed["failed_at"].dt.tz_convert(None), hours, marker="o", color="#9467bd")
    ax.set_xlabel("incident start (UTC)")
    ax.set_ylabel("hours to recover")
    fig.autofmt_xdate()
    return fig


def figure_switch_latency(latency: pd.DataFrame) -> Figure:
    """Seconds the load balancer took to apply each switch, with its rolling median."""
    fig, ax = _figure("Switch latency (load balancer change applied)")
    if latency.empty:
        return _nothing(fig, ax, "no applied switches")
    when = latency["time"].dt.tz_convert(None)
    ax.plot(when, latency["applied_s"], linestyle="none", marker="o", label="applied_s")
    ax.plot(when, latency["rolling_median_s"], color="black", label="rolling median")
    ax.set_xlabel("switch start (UTC)")
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.autofmt_xdate()
    return fig


def _switch_record(path: Path) -> dict[str, object] | None:
    from bgkit.runbook.archive import show_run

    try:
        value = show_run(path).records.get("switch", {}).get("value")
    except (OSError, ValueError):  # an unreadable notebook is listed by list_runs already
        return None
    return value if isinstance(value, dict) else None


def _prepared(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` oldest first with UTC times and the flags the reports count by."""
    frame = runs.copy()
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame = frame.dropna(subset=["time"]).sort_values("time", kind="stable")
    names = frame["step"].map(step_name)
    outcome = frame["outcome"].astype(object).fillna("unknown").astype(str)
    frame["outcome"] = outcome
    frame["is_deploy"] = names.str.startswith("deploy").astype(bool)
    frame["is_switch"] = (names == "switch").astype(bool)
    frame["ok"] = outcome == SUCCEEDED
    frame["stopped"] = outcome.isin(STOPPED_OUTCOMES)
    frame["failed"] = ~(frame["ok"] | frame["stopped"])
    duration = pd.to_timedelta(pd.to_numeric(frame["duration_s"], errors="coerce"), unit="s")
    frame["finished"] = frame["time"] + duration.fillna(pd.Timedelta(0))
    return frame.reset_index(drop=True)


def _figure(title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    return fig, ax


def _nothing(fig: Figure, ax: Axes, text: str = "no runs yet") -> Figure:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig
