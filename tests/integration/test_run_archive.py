"""bgkit run: executed notebooks land in the archive with an honest outcome."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from bgkit.config import load_config
from bgkit.errors import SecretParameterError, StepFailed, UsageError
from bgkit.runbook import archive, staging
from bgkit.runbook.runner import run_step
from tests.conftest import REPO, WriteConfig

pytestmark = pytest.mark.slow
BGKIT = [sys.executable, "-m", "bgkit.cli"]


def write_notebook(folder: Path, name: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    parameters = nbformat.v4.new_code_cell('run_id: str = ""  # set by bgkit\n'
                                           'what: str = "hello"')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, *(nbformat.v4.new_code_cell(c) for c in cells)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    write_notebook(folder, "10_ok", "import bgkit\nbgkit.record('greeting', {'said': what})",
                   "from bgkit.runbook.record import record_outcome\n"
                   "record_outcome('succeeded')")
    write_notebook(folder, "20_crash", "print('before')",
                   "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "print('after')")
    write_notebook(folder, "30_raise", "raise ValueError('boom')", "print('after')")
    write_notebook(folder, "40_slow", "import time\nprint('sleeping', flush=True)\n"
                   "time.sleep(60)", "print('after')")
    write_notebook(folder, "50_not_approved", "import bgkit\nbgkit.record('outcome', "
                   "'not approved')")
    return folder


def statuses(path: Path) -> list[str | None]:
    nb = nbformat.read(path, as_version=4)
    return [c.metadata.get("papermill", {}).get("status") for c in nb.cells
            if c.cell_type == "code"]


def test_a_successful_run_is_archived_with_run_id_operator_and_records(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    result = run_step("ok", config=config, parameters={"what": "hi"}, notebooks_dir=notebooks,
                      progress=False)
    assert result.outcome == "succeeded"
    relative = result.path.relative_to(config.runs_dir)
    assert relative.parts[:2] == (time.strftime("%Y", time.gmtime()),
                                  time.strftime("%m", time.gmtime()))
    assert relative.name.endswith(f"_10_ok_{result.run_id}.ipynb")
    assert not result.path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    details = archive.show_run(result.path)
    assert details.metadata["run_id"] == result.run_id
    assert details.metadata["operator"].count("@") == 1
    assert details.metadata["bgkit_version"]
    assert "commit" in details.metadata["git"]
    assert details.parameters == {"what": "hi", "run_id": result.run_id}
    assert details.records == {"greeting": {"kind": "value", "value": {"said": "hi"}},
                               "outcome": {"kind": "value", "value": "succeeded"}}


def test_a_killed_kernel_is_archived_as_failed_not_completed(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    with pytest.raises(StepFailed, match="kernel died") as caught:
        run_step("crash", config=config, notebooks_dir=notebooks, progress=False)
    path = caught.value.run_path
    assert path is not None
    details = archive.show_run(path)
    assert details.outcome == "failed"
    assert "kernel died" in details.metadata["reason"]
    # parameters, injected, print, kill, print-after
    assert statuses(path) == ["completed", "completed", "completed", "failed", "pending"]
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.papermill.exception is True
    assert "bgkit-failure" in nb.cells[0].metadata["tags"]


def test_a_raising_cell_is_archived_as_failed_with_the_error(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    with pytest.raises(StepFailed, match="raised ValueError: boom") as caught:
        run_step("30_raise", config=config, notebooks_dir=notebooks, progress=False)
    assert caught.value.run_path is not None
    assert archive.show_run(caught.value.run_path).outcome == "failed"


def test_a_cell_past_its_timeout_is_archived_as_failed(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config({"runs": {"cell_timeout_s": 2}}))
    with pytest.raises(StepFailed, match="cell timeout of 2 s") as caught:
        run_step("slow", config=config, notebooks_dir=notebooks, progress=False)
    assert caught.value.run_path is not None
    assert statuses(caught.value.run_path)[2:] == ["failed", "pending"]


def test_a_recorded_outcome_such_as_not_approved_is_the_runs_outcome(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    with pytest.raises(StepFailed) as caught:
        run_step("not_approved", config=config, notebooks_dir=notebooks, progress=False)
    assert caught.value.outcome == "not approved"


def test_a_secret_like_parameter_is_refused_before_anything_runs(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    for name in ("api_key", "OVH_APPLICATION_SECRET", "token", "db_password"):
        with pytest.raises(SecretParameterError, match=name):
            run_step("ok", config=config, parameters={name: "x"}, notebooks_dir=notebooks)
    assert not config.runs_dir.exists()


def test_unknown_steps_and_parameters_are_refused_listing_the_valid_ones(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    with pytest.raises(UsageError, match="steps: 10_ok, 20_crash"):
        run_step("deploy", config=config, notebooks_dir=notebooks)
    with pytest.raises(UsageError, match="no parameter.*wat.*takes: run_id, what"):
        run_step("ok", config=config, parameters={"wat": 1}, notebooks_dir=notebooks)
    with pytest.raises(UsageError, match="run_id are set by bgkit"):
        run_step("ok", config=config, parameters={"run_id": "x"}, notebooks_dir=notebooks)
    assert not config.runs_dir.exists()


def test_sigterm_to_the_runner_archives_the_run_as_failed_and_stops_the_kernel(
        write_config: WriteConfig, notebooks: Path) -> None:
    config_path = write_config()
    runner = subprocess.Popen(
        [*BGKIT, "run", "slow", "--config", str(config_path), "--notebooks", str(notebooks)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    runs_dir = load_config(config_path).runs_dir
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the run executes privately until it is archived
        found = [run.notebook_path for run in staging.pending(runs_dir)]
        if found and "time.sleep(60)" in found[0].read_text():
            break
        time.sleep(0.2)
    assert list(runs_dir.glob("*/*/*.ipynb")) == [], "nothing is archived while it runs"
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=60)
    assert runner.returncode == 1, output
    (path,) = runs_dir.glob("*/*/*.ipynb")
    details = archive.show_run(path)
    assert details.outcome == "failed"
    assert "SIGTERM" in details.metadata["reason"]
    kernels = subprocess.run(["pgrep", "-f", f"ipykernel.*{os.getpid()}"], capture_output=True)
    assert kernels.returncode == 1


def test_a_record_left_running_by_a_killed_runner_lists_as_interrupted(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    run_step("ok", config=config, notebooks_dir=notebooks, progress=False)
    (path,) = config.runs_dir.glob("*/*/*.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.metadata.bgkit.outcome = "running"
    copy = path.with_name(path.name.replace("_10_ok_", "_10_ok_ffff"))
    nbformat.write(nb, copy)
    table = archive.list_runs(config.runs_dir)
    assert sorted(table["outcome"]) == ["interrupted", "succeeded"]


def test_cli_run_and_runs_list_and_show(write_config: WriteConfig, notebooks: Path) -> None:
    config_path = write_config()
    done = subprocess.run([*BGKIT, "run", "ok", "-p", "what", "from cli", "--config",
                           str(config_path), "--notebooks", str(notebooks)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
    run_id = done.stdout.split(" run ")[1].split()[0]
    listing = subprocess.run([*BGKIT, "runs", "list", "--config", str(config_path)],
                             capture_output=True, text=True, cwd=REPO)
    assert run_id in listing.stdout and "succeeded" in listing.stdout
    shown = subprocess.run([*BGKIT, "runs", "show", run_id[:6], "--config", str(config_path)],
                           capture_output=True, text=True, cwd=REPO)
    assert shown.returncode == 0, shown.stderr
    assert "from cli" in shown.stdout and "greeting" in shown.stdout


def test_cli_exit_codes_for_failed_steps_and_bad_usage(
        write_config: WriteConfig, notebooks: Path) -> None:
    config_path = str(write_config())
    common = ["--config", config_path, "--notebooks", str(notebooks)]
    failed = subprocess.run([*BGKIT, "run", "30_raise", *common], capture_output=True,
                            text=True, cwd=REPO)
    assert failed.returncode == 1
    assert "raised ValueError: boom" in failed.stderr
    secret = subprocess.run([*BGKIT, "run", "ok", "-p", "api_token", "x", *common],
                            capture_output=True, text=True, cwd=REPO)
    assert secret.returncode == 2 and "api_token" in secret.stderr
    bad_config = subprocess.run([*BGKIT, "run", "ok", "--config", "/nonexistent.toml"],
                                capture_output=True, text=True, cwd=REPO)
    assert bad_config.returncode == 2 and "no such file" in bad_config.stderr
