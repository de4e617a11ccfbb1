"""Build run archives by hand, for tests: notebooks shaped exactly like archived runs.

    write_run(runs_dir, "04_switch", "2026-11-02T10:00:00+00:00", outcome="succeeded",
              records={"switch": {"action": "switch", "outcome": "switched",
                                  "applied_s": 0.8}})

Each file lands at ``<runs>/<YYYY>/<MM>/<stamp>_<step>_<run_id>.ipynb`` with
``metadata.bgkit`` and ``metadata.papermill.parameters``, and every record as a
``bgkit.record()`` display output. No kernel runs.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from bgkit.runbook.archive import RUN_COLUMNS
from bgkit.runbook.record import RECORD_MIME
from bgkit.runbook.runner import archive_path

_ids = itertools.count(1)


def write_run(runs_dir: Path, step: str, started: str, *, outcome: str = "succeeded",
              duration_s: float = 10.0, records: dict[str, Any] | None = None,
              parameters: dict[str, Any] | None = None, pipeline_id: str | None = None,
              run_id: str | None = None) -> Path:
    """One archived run notebook; returns its path."""
    when = datetime.fromisoformat(started)
    run_id = run_id or f"{next(_ids):012x}"
    meta: dict[str, Any] = {
        "schema": 1, "run_id": run_id, "step": step, "operator": "ci@runner",
        "bgkit_version": "0.1.0", "git": {"commit": "abc123", "dirty": False},
        "started_at": when.isoformat(), "outcome": outcome, "reason": None,
        "duration_s": duration_s,
        "finished_at": (when + timedelta(seconds=duration_s)).isoformat(),
    }
    if pipeline_id:
        meta["pipeline_id"] = pipeline_id
    nb = nbformat.v4.new_notebook()
    nb.metadata["bgkit"] = meta
    nb.metadata["papermill"] = {"parameters": {**(parameters or {}), "run_id": run_id}}
    cell = nbformat.v4.new_code_cell("import bgkit")
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={RECORD_MIME: {"name": name, "kind": "value", "value": value},
                              "text/plain": f"recorded {name!r}"})
        for name, value in (records or {}).items()]
    nb.cells = [cell]
    path = archive_path(runs_dir, when, step, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def runs_table(*rows: tuple[str, str, str, float | None]) -> pd.DataFrame:
    """A ``list_runs``-shaped table from (time, step, outcome, duration_s) tuples."""
    records = [{"time": pd.Timestamp(time), "step": step, "run_id": f"r{number}",
                "outcome": outcome, "duration_s": duration, "operator": "ci",
                "release": None, "path": f"/nowhere/r{number}.ipynb"}
               for number, (time, step, outcome, duration) in enumerate(rows, start=1)]
    return pd.DataFrame(records, columns=RUN_COLUMNS)


def sample_archive(runs_dir: Path) -> list[Path]:
    """A small archive with deploys, switches, a failed switch and a recovery, over
    three weeks (weeks starting 2026-11-02, 11-09 and 11-16)."""
    def switched(applied: float, outcome: str = "switched") -> dict[str, Any]:
        return {"switch": {"action": "switch", "outcome": outcome, "applied_s": applied,
                           "switch_back_applied_s": None}}

    return [
        write_run(runs_dir, "02_deploy_green", "2026-11-02T09:00:00+00:00",
                  parameters={"release": "dist/hello-c-1.0.0-aaaaaaa.tar.gz"},
                  pipeline_id="pipe1"),
        write_run(runs_dir, "04_switch", "2026-11-02T10:00:00+00:00",
                  records=switched(0.5), pipeline_id="pipe1"),
        write_run(runs_dir, "02_deploy_green", "2026-11-16T09:00:00+00:00",
                  parameters={"release": "dist/hello-c-2.0.0-bbbbbbb.tar.gz"}),
        write_run(runs_dir, "04_switch", "2026-11-16T10:00:00+00:00",
                  outcome="switched back", duration_s=30.0,
                  records=switched(0.7, "switched back")),
        write_run(runs_dir, "03_verify", "2026-11-16T11:00:00+00:00", outcome="inconclusive"),
        write_run(runs_dir, "04_switch", "2026-11-16T12:00:00+00:00", duration_s=60.0,
                  records=switched(0.9)),
    ]
