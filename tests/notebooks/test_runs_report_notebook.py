"""notebooks/runs_report.ipynb runs cleanly on a missing, an empty and a real archive."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bgkit.config import load_config
from bgkit.runbook.runner import run_step
from tests.conftest import REPO, WriteConfig
from tests.unit.archive_factory import sample_archive

pytestmark = pytest.mark.slow
NOTEBOOK = REPO / "notebooks" / "runs_report.ipynb"


def placed(folder: Path) -> Path:
    """The report notebook copied to ``folder/notebooks``, so its ``../runs`` default
    reads ``folder/runs``."""
    (folder / "notebooks").mkdir(parents=True)
    return Path(shutil.copy(NOTEBOOK, folder / "notebooks" / NOTEBOOK.name))


def outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
                     for cell in nb.cells for output in cell.get("outputs", []))


def test_the_report_notebook_passes_nbval_on_missing_empty_and_real_archives(
        tmp_path: Path) -> None:
    missing = placed(tmp_path / "missing")
    empty = placed(tmp_path / "empty")
    (tmp_path / "empty" / "runs").mkdir()
    real = placed(tmp_path / "real")
    sample_archive(tmp_path / "real" / "runs")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--rootdir", str(tmp_path), str(missing), str(empty), str(real)],
        capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_the_report_says_no_runs_yet_and_draws_every_figure_when_run_as_a_step(
        write_config: WriteConfig, tmp_path: Path) -> None:
    config = load_config(write_config())
    nothing = run_step("runs_report", config=config, notebooks_dir=NOTEBOOK.parent,
                       parameters={"runs_dir": str(tmp_path / "none")}, progress=False)
    assert "no runs yet in" in outputs_text(nothing.path)
    sample_archive(tmp_path / "review")
    full = run_step("runs_report", config=config, notebooks_dir=NOTEBOOK.parent,
                    parameters={"runs_dir": str(tmp_path / "review")}, progress=False)
    text = outputs_text(full.path)
    assert "6 run(s) in" in text and "4 succeeded, 1 stopped, 1 failed" in text
    nb = nbformat.read(full.path, as_version=4)
    pngs = [output for cell in nb.cells for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})]
    assert len(pngs) == 4
