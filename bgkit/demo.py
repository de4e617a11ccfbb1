"""``make demo``: two releases go live and a rollback drill, with zero failed requests.

Starts the sandbox with the OVH API emulator as the load balancer, runs ``bgkit release``
for version 1, then for version 2 while a load generator runs through the public address,
then a rollback drill (``05_rollback``) under load, back to the release the previous pool
served when it was live (it names it); prints the failed-request count, the archived runs
and how to open them, and stops the sandbox.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from bgkit.config import load_config
from bgkit.errors import BgkitError
from bgkit.loadgen import LoadGenerator
from bgkit.pipeline import release
from bgkit.runbook.archive import list_runs
from bgkit.runbook.runner import run_step
from bgkit.sandbox import sandbox_down, sandbox_up

__all__ = ["main"]

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    state = Path(args[0] if args else ".sandbox-demo").resolve()
    runs = Path(args[1] if len(args) > 1 else "runs").resolve()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    started = time.monotonic()
    console.rule("bgkit demo: the local sandbox with the OVH API emulator in front of HAProxy")
    info = sandbox_up(state, lb="ovh-iplb", runs_dir=runs)
    try:
        return _drill(info.config_file, started)
    except BgkitError as error:
        console.print(f"[red]demo failed:[/] {error}")
        return 1
    finally:
        sandbox_down(state)
        console.print(f"sandbox stopped ({time.monotonic() - started:.0f} s in all)")


def _drill(config_file: Path, started: float) -> int:
    config = load_config(config_file)
    console.rule("release 1.0.0 (build, deploy to the idle pool, verify, switch)")
    first = release(config, approve=True, version="1.0.0", progress=False)
    _pipeline(first)
    if not first.ok:
        return 1
    url = config.lb.public_url.rstrip("/") + "/"
    with LoadGenerator(url, max_seconds=240) as load:
        console.rule("release 2.0.0 while a load generator runs through the public address")
        second = release(config, approve=True, version="2.0.0", progress=False)
        _pipeline(second)
        console.rule("rollback drill: back to the previous pool, under the same load")
        drill = run_step("05_rollback", config=config, parameters={"approve": True},
                         progress=False)
        console.print(f"  {drill.step}: {drill.outcome} ({drill.duration_s:.1f} s), back to "
                      f"{_rolled_back_to(drill.path)}")
    report = load.report
    colour = "green" if report.failed == 0 else "red"
    console.rule("result")
    console.print(f"requests sent through the load balancer: {report.sent}, "
                  f"[{colour}]failed: {report.failed}[/]  answers by version: "
                  f"{dict(report.versions)}")
    _runs_table(config.runs_dir)
    console.print(f"open a run: bgkit runs show RUN_ID --runs-dir {config.runs_dir}, or the "
                  ".ipynb itself in JupyterLab")
    console.print(f"demo took {time.monotonic() - started:.0f} s")
    return 0 if second.ok and report.failed == 0 else 1


def _rolled_back_to(run: Path) -> str:
    """The pool and release the rollback drill went back to, from its archived record."""
    from bgkit.runbook.archive import show_run

    switched = show_run(run).records.get("switch", {}).get("value") or {}
    return f"{switched.get('to_pool', '?')}, {switched.get('release') or 'an unknown release'}"


def _pipeline(result: object) -> None:
    from bgkit.pipeline import PipelineResult

    assert isinstance(result, PipelineResult)
    for run in result.runs:
        console.print(f"  {run.step:<16} {run.outcome:<10} {run.duration_s:5.1f} s  {run.path}")
    if result.failed is not None:
        console.print(f"  [red]stopped:[/] {result.failed}")


def _runs_table(runs_dir: Path) -> None:
    table = Table(title=f"archived runs in {runs_dir}")
    for column in ("time", "step", "run id", "outcome", "duration", "release"):
        table.add_column(column)
    for row in list_runs(runs_dir).tail(12).to_dict(orient="records"):
        table.add_row(str(row["time"])[:19], str(row["step"]), str(row["run_id"]),
                      str(row["outcome"]), f"{row['duration_s'] or 0:.1f} s",
                      "" if pd.isna(row["release"]) else str(row["release"]))
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
