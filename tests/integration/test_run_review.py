"""Archived runs are indexed by the runner, verify clean, and render to offline HTML."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bgkit.config import load_config
from bgkit.errors import StepFailed
from bgkit.runbook.html import external_sources
from bgkit.runbook.index import read_entries, verify_archive
from bgkit.runbook.runner import run_step
from tests.conftest import REPO, WriteConfig
from tests.integration.test_run_archive import write_notebook

pytestmark = pytest.mark.slow
BGKIT = [sys.executable, "-m", "bgkit.cli"]

PLOT = """import bgkit
import pandas as pd
from IPython.display import Image, display
from matplotlib.figure import Figure
from bgkit.plots import figure_to_png

figure = Figure(figsize=(3, 2))
figure.add_subplot().plot([1, 2, 3], [3, 1, 2])
display(Image(data=figure_to_png(figure), format="png"))
bgkit.record("latency", pd.DataFrame({"host": ["a", "b"], "p99_ms": [1.5, 2.5]}))"""


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    write_notebook(folder, "10_plot", PLOT,
                   "from bgkit.runbook.record import record_outcome\nrecord_outcome('succeeded')")
    write_notebook(folder, "20_raise", "raise ValueError('boom')")
    return folder


def png_outputs(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [output["data"]["image/png"] for cell in nb.cells
            for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]


def bgkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BGKIT, *args], capture_output=True, text=True, cwd=REPO)


def test_the_runner_indexes_every_run_and_the_archive_verifies(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    good = run_step("plot", config=config, parameters={"what": "x"}, notebooks_dir=notebooks,
                    progress=False)
    with pytest.raises(StepFailed) as failed:
        run_step("raise", config=config, notebooks_dir=notebooks, progress=False)
    entries = read_entries(config.runs_dir)
    assert [entry.run_id for entry in entries[:1]] == [good.run_id]
    assert [entry.path for entry in entries] == [
        path.relative_to(config.runs_dir).as_posix()
        for path in (good.path, failed.value.run_path) if path is not None]
    assert verify_archive(config.runs_dir).ok
    done = bgkit("runs", "verify", "--runs-dir", str(config.runs_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in order; 2 indexed run(s), 2 notebook(s)" in done.stdout
    good.path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with good.path.open("a") as handle:
        handle.write("\n")
    done = bgkit("runs", "verify", "--runs-dir", str(config.runs_dir))
    assert done.returncode == 1
    assert f"modified {good.path.relative_to(config.runs_dir).as_posix()}" in done.stdout


def test_runs_html_renders_a_real_run_offline_with_its_plot_embedded(
        write_config: WriteConfig, notebooks: Path, tmp_path: Path) -> None:
    config_path = write_config()
    config = load_config(config_path)
    result = run_step("plot", config=config, parameters={"what": "PARAM_VALUE"},
                      notebooks_dir=notebooks, progress=False)
    (image,) = png_outputs(result.path)

    done = bgkit("runs", "html", result.run_id, "--config", str(config_path))
    assert done.returncode == 0, done.stderr
    target = tmp_path / "reports" / f"{result.path.stem}.html"
    assert f"report: {target}" in done.stdout
    page = target.read_text()
    assert f"data:image/png;base64,{image}" in page
    assert external_sources(page) == []
    assert "figure_to_png" in page and "injected-parameters" in page

    bare = tmp_path / "bare.html"
    done = bgkit("runs", "html", result.run_id[:6], "--config", str(config_path), "--no-input",
                 "-o", str(bare))
    assert done.returncode == 0, done.stderr
    page = bare.read_text()
    assert f"data:image/png;base64,{image}" in page
    assert external_sources(page) == []
    for code in ("figure_to_png", "injected-parameters", "# Parameters", "# set by bgkit"):
        assert code not in page
    assert "PARAM_VALUE" in page  # the parameter values stay, in the run summary
    assert result.run_id in page and "succeeded" in page
    assert sorted(p.suffix for p in config.runs_dir.rglob("*") if p.is_file()) == [
        ".ipynb", ".jsonl"]
