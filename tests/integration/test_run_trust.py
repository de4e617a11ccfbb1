"""Runbook runs you can trust: typed parameters, honest outcomes, true reasons, a stop that
lets the step finish its safety path, secrets never on disk, the runner's own kernel.

Each test is one case reported against ``bgkit run``; the notebooks are small stand-ins
written here, run by a real Jupyter kernel under papermill.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest

from bgkit.config import load_config
from bgkit.errors import StepFailed, UsageError
from bgkit.runbook import archive, engine, index, staging
from bgkit.runbook.runner import run_step
from tests.conftest import REPO, WriteConfig
from tests.integration.test_run_archive import statuses, write_notebook

pytestmark = pytest.mark.slow
BGKIT = [sys.executable, "-m", "bgkit.cli"]
FINISH = "from bgkit.runbook.record import record_outcome\nrecord_outcome('succeeded')"
SECRET = "s3cr3t-app-value-42"


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    write_notebook(folder, "11_exit", "print('before')", "import sys\nsys.exit()",
                   "print('after')", FINISH)
    write_notebook(folder, "12_exit0", "import sys\nsys.exit(0)", "print('after')", FINISH)
    write_notebook(folder, "13_silent", "print('did its work but said nothing')")
    write_notebook(folder, "14_flood", "for i in range(300_000):\n    print('line', i)",
                   "import bgkit\nbgkit.record('after_the_flood', {'ok': True})", FINISH)
    # Cells print a line a second, as a watch does: papermill saves the running notebook
    # when output arrives, so the tests see "watching" once it is on disk.
    write_notebook(folder, "15_safety", "import time\ntry:\n    for i in range(120):\n"
                   "        print('watch' + 'ing', i, flush=True)\n        time.sleep(1)\n"
                   "except KeyboardInterrupt:\n    time.sleep(2)\n"
                   "    print('switched back', flush=True)\n    raise", "print('after')", FINISH)
    write_notebook(folder, "16_stubborn", "import time\nfor i in range(300):\n    try:\n"
                   "        print('watch' + 'ing', i, flush=True)\n        time.sleep(1)\n"
                   "    except KeyboardInterrupt:\n        print('ignoring it', flush=True)",
                   FINISH)
    write_notebook(folder, "17_leak", "import os\nprint('leaked', os.environ["
                   "'OVH_APPLICATION_SECRET'], flush=True)",
                   "import time\nfor i in range(120):\n    print('wait' + 'ing', i, flush=True)\n"
                   "    time.sleep(1)", FINISH)
    write_notebook(folder, "18_types", "import bgkit\nbgkit.record('seen', {'value': what, "
                   "'type': type(what).__name__})", FINISH)
    write_notebook(folder, "19_usage", "from bgkit.errors import UsageError\n"
                   "raise UsageError('canary: 100 is not a percent from 1 to 99')", FINISH)
    return folder


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BGKIT, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


def archived(config_path: Path) -> list[Path]:
    return sorted(load_config(config_path).runs_dir.glob("*/*/*.ipynb"))


def wait_for_staged_text(runs_dir: Path, text: str, timeout_s: float = 60) -> Path:
    """The private notebook of the running run, once papermill saved ``text`` into it
    (an output: the notebooks print it from pieces, so their source does not hold it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run in staging.pending(runs_dir):
            if text in run.notebook_path.read_text(errors="replace"):
                return run.notebook_path
        time.sleep(0.2)
    raise AssertionError(f"no running notebook showed {text!r} within {timeout_s} s")


@pytest.mark.parametrize("step", ["11_exit", "12_exit0"])
def test_a_notebook_that_exits_early_is_archived_as_failed_naming_the_cell(
        write_config: WriteConfig, notebooks: Path, step: str) -> None:
    config = load_config(write_config())
    with pytest.raises(StepFailed, match="never ran: the notebook stopped early") as caught:
        run_step(step, config=config, notebooks_dir=notebooks, progress=False)
    path = caught.value.run_path
    assert path is not None
    reason = archive.show_run(path).metadata["reason"]
    nb = nbformat.read(path, as_version=4)
    exit_cell = next(i for i, c in enumerate(nb.cells) if "sys.exit" in c.source)
    assert f"stopped early in cell {exit_cell + 1} of {len(nb.cells)} (SystemExit" in reason
    assert f"cell {exit_cell + 2} of {len(nb.cells)} never ran" in reason
    assert statuses(path)[-2:] == ["pending", "pending"]


def test_a_cell_stopped_by_bad_input_is_archived_and_exits_2_like_the_cli(
        write_config: WriteConfig, notebooks: Path) -> None:
    """A value out of range is the operator's input, not a failure of the step: the run
    is kept (it did run), and the exit code is the CLI's for bad usage."""
    config_path = write_config()
    done = cli("run", "usage", "--notebooks", str(notebooks), "--config", str(config_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "canary: 100 is not a percent from 1 to 99" in done.stderr
    (run,) = sorted(load_config(config_path).runs_dir.rglob("*_19_usage_*.ipynb"))
    assert archive.show_run(run).outcome == "failed"


def test_a_step_that_records_no_outcome_is_archived_as_failed(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    with pytest.raises(StepFailed, match="recorded no outcome") as caught:
        run_step("silent", config=config, notebooks_dir=notebooks, progress=False)
    assert caught.value.run_path is not None
    assert archive.show_run(caught.value.run_path).outcome == "failed"


def test_a_cell_that_floods_output_keeps_its_later_records(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    result = run_step("flood", config=config, notebooks_dir=notebooks, progress=False)
    assert result.outcome == "succeeded"
    assert archive.show_run(result.path).records["after_the_flood"]["value"] == {"ok": True}


def test_an_iopub_timeout_is_named_as_such_not_as_a_cell_timeout() -> None:
    from nbclient.exceptions import CellTimeoutError

    control = engine.RunControl(grace_s=1, iopub_timeout_s=120, expected_kernel={})
    error = CellTimeoutError("Timeout waiting for IOPub output")
    reason = engine._reason(error, "cell 5 of 9", 1800, control)
    assert reason.startswith("cell 5 of 9 finished, but its output did not all arrive")
    assert "IOPub timeout of 120 s" in reason and "cell timeout" not in reason
    assert engine._reason(CellTimeoutError("x"), "cell 5 of 9", 1800, control) == \
        "cell 5 of 9 ran past the cell timeout of 1800 s"


@pytest.fixture
def start_run() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``bgkit run`` in the background; whatever a test leaves running is stopped."""
    started: list[subprocess.Popen[str]] = []

    def start(config_path: Path, notebooks: Path, step: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        runner = subprocess.Popen([*BGKIT, "run", step, "--config", str(config_path),
                                   "--notebooks", str(notebooks)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        kernels = children(runner.pid)
        if runner.poll() is None:
            runner.kill()
            runner.wait(timeout=30)
        for pid in kernels:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_marks_the_running_cell_failed_and_runs_no_further_cell(
        write_config: WriteConfig, notebooks: Path,
        start_run: Callable[..., subprocess.Popen[str]]) -> None:
    config_path = write_config()
    runner = start_run(config_path, notebooks, "15_safety")
    wait_for_staged_text(load_config(config_path).runs_dir, "watching")
    runner.send_signal(signal.SIGINT)
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 1, output
    (path,) = archived(config_path)
    details = archive.show_run(path)
    assert details.outcome == "failed"
    assert "received SIGINT during cell" in details.metadata["reason"]
    assert statuses(path)[-3:] == ["failed", "pending", "pending"]


def test_sigterm_lets_the_running_cell_finish_its_safety_path_and_keeps_its_output(
        write_config: WriteConfig, notebooks: Path,
        start_run: Callable[..., subprocess.Popen[str]]) -> None:
    config_path = write_config()
    runner = start_run(config_path, notebooks, "15_safety")
    wait_for_staged_text(load_config(config_path).runs_dir, "watching")
    kernels = children(runner.pid)
    assert kernels
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 1, output
    (path,) = archived(config_path)
    details = archive.show_run(path)
    reason = details.metadata["reason"]
    assert "received SIGTERM during cell" in reason and "KeyboardInterrupt" in reason
    waited = float(reason.split("KeyboardInterrupt) ")[1].split(" s later")[0])
    assert waited >= 2.0, "the runner waited for the cell's own safety path"
    assert "switched back" in path.read_text()
    assert not any(alive(pid) for pid in kernels), "no kernel outlives its run"


def test_a_cell_that_ignores_the_interrupt_is_killed_after_the_grace(
        write_config: WriteConfig, notebooks: Path,
        start_run: Callable[..., subprocess.Popen[str]]) -> None:
    config_path = write_config({"switch": {"timeout_s": 1}})
    runner = start_run(config_path, notebooks, "16_stubborn")
    wait_for_staged_text(load_config(config_path).runs_dir, "watching")
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 1, output
    (path,) = archived(config_path)
    reason = archive.show_run(path).metadata["reason"]
    assert "did not finish within the 11 s grace, so the kernel was killed" in reason
    assert "ignoring it" in path.read_text()


def test_a_killed_runner_leaves_no_secret_on_disk_and_the_next_command_archives_it(
        write_config: WriteConfig, notebooks: Path,
        start_run: Callable[..., subprocess.Popen[str]]) -> None:
    config_path = write_config()
    runs_dir = load_config(config_path).runs_dir
    env = {**os.environ, "OVH_APPLICATION_SECRET": SECRET}
    runner = start_run(config_path, notebooks, "17_leak", env=env)
    private = wait_for_staged_text(runs_dir, "waiting")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.parent.stat().st_mode) == 0o700
    assert not private.is_relative_to(runs_dir), "never inside the archive"
    assert "leaked ***" in private.read_text() and SECRET not in private.read_text()
    assert archived(config_path) == []

    listing = cli("runs", "list", "--config", str(config_path))  # no secret in this env
    assert listing.returncode == 0, listing.stderr
    assert "finalised" in listing.stderr and "interrupted" in listing.stdout
    (path,) = archived(config_path)
    details = archive.show_run(path)
    assert details.outcome == "interrupted"
    assert "stopped without finishing the record during cell" in details.metadata["reason"]
    assert SECRET not in path.read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444 & ~umask
    assert index.verify_archive(runs_dir).ok
    assert staging.pending(runs_dir) == []
    report = cli("runs", "html", details.metadata["run_id"], "--config", str(config_path),
                 "-o", str(config_path.parent / "report.html"), env=env)
    assert report.returncode == 0, report.stderr
    assert SECRET not in (config_path.parent / "report.html").read_text()


def test_cli_values_are_converted_by_declared_type(write_config: WriteConfig,
                                                  notebooks: Path) -> None:
    config_path = str(write_config())
    common = ["--config", config_path, "--notebooks", str(notebooks)]
    done = cli("run", "18_types", "-p", "what", "1.10", *common)
    assert done.returncode == 0, done.stderr
    (path,) = archived(Path(config_path))
    assert archive.show_run(path).records["seen"]["value"] == {"value": "1.10", "type": "str"}
    assert "without encryption" not in done.stderr + done.stdout


@pytest.mark.parametrize("value", ["no", "off", "yes", "0", "1", "sure"])
@pytest.mark.parametrize("step", ["04_switch", "05_rollback"])
def test_approve_takes_only_true_or_false_and_nothing_runs_otherwise(
        write_config: WriteConfig, step: str, value: str) -> None:
    config_path = write_config()
    done = cli("run", step, "-p", "approve", value, "--config", str(config_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"parameter approve is a bool: got '{value}', expected true or false" in done.stderr
    assert not load_config(config_path).runs_dir.exists()


@pytest.mark.parametrize("step", ["02_deploy_green", "04_switch", "05_rollback"])
def test_a_headless_run_refuses_interactive_true(write_config: WriteConfig, step: str) -> None:
    config_path = write_config()
    done = cli("run", step, "-p", "interactive", "True", "--config", str(config_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no one to click a button" in done.stderr
    assert not load_config(config_path).runs_dir.exists()


def test_the_kernel_is_the_runners_own_whatever_kernelspec_is_named_python3(
        write_config: WriteConfig, notebooks: Path, tmp_path: Path) -> None:
    hijack = tmp_path / "jupyter" / "kernels" / "python3"
    hijack.mkdir(parents=True)
    (hijack / "kernel.json").write_text(json.dumps({
        "argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "another environment", "language": "python"}))
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter")}
    config_path = write_config()
    done = cli("run", "18_types", "--config", str(config_path), "--notebooks", str(notebooks),
               env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = archived(config_path)
    kernel = archive.show_run(path).metadata["kernel"]
    import bgkit

    assert kernel == {"python": sys.executable, "bgkit_version": bgkit.__version__,
                      "bgkit_path": str(Path(bgkit.__file__).parent)}


def test_a_kernel_that_reports_another_bgkit_is_refused_before_any_cell_runs(
        write_config: WriteConfig, notebooks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit.runbook import runner

    real = runner.expected_kernel()
    monkeypatch.setattr(runner, "expected_kernel", lambda: {**real, "bgkit_version": "9.9"})
    config = load_config(write_config())
    with pytest.raises(StepFailed, match="the kernel is not the runner's own") as caught:
        run_step("18_types", config=config, notebooks_dir=notebooks, progress=False)
    assert caught.value.run_path is not None
    assert set(statuses(caught.value.run_path)) == {"pending"}


def test_every_run_prints_the_archive_head_that_verify_expects(
        write_config: WriteConfig, notebooks: Path) -> None:
    config_path = str(write_config())
    common = ["--config", config_path, "--notebooks", str(notebooks)]
    first = cli("run", "18_types", *common)
    second = cli("run", "13_silent", *common)
    assert first.returncode == 0 and second.returncode == 1
    heads = [line.split()[-1] for line in (first.stdout + second.stdout).splitlines()
             if line.startswith("archive head:")]
    assert len(heads) == 2
    assert heads[1] == index.read_entries(load_config(config_path).runs_dir)[-1].hash
    for head in heads:
        assert cli("runs", "verify", "--config", config_path, "--expect-head",
                   head).returncode == 0
    unknown = cli("runs", "verify", "--config", config_path, "--expect-head", "0" * 64)
    assert unknown.returncode == 1 and "not in the chain" in unknown.stdout
    bad = cli("runs", "verify", "--config", config_path, "--expect-head", "abc")
    assert bad.returncode == 2


def test_refusals_happen_before_any_run_is_staged(write_config: WriteConfig,
                                                  notebooks: Path) -> None:
    config = load_config(write_config())
    with pytest.raises(UsageError, match="parameter what is a str"):
        run_step("18_types", config=config, parameters={"what": 1.1}, notebooks_dir=notebooks)
    assert not staging.staging_dir(config.runs_dir).exists()


def test_an_empty_config_path_means_bgkit_config_and_a_config_error_is_one_line(
        write_config: WriteConfig, tmp_path: Path) -> None:
    folder = tmp_path / "defaults"
    write_notebook(folder, "19_config",
                   "from bgkit.runbook.steps import open_config\nimport bgkit\n"
                   "bgkit.record('config', str(open_config('').path))", FINISH)
    write_notebook(folder, "20_broken",
                   "from bgkit.runbook.steps import open_config\n"
                   "open_config('/nonexistent/bgkit.toml')", FINISH)
    config_path = write_config()
    env = {**os.environ, "BGKIT_CONFIG": str(config_path)}
    common = ["--config", str(config_path), "--notebooks", str(folder)]
    done = cli("run", "19_config", *common, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = cli("run", "20_broken", *common, env=env)
    assert broken.returncode == 2  # a configuration error, as from the CLI itself
    paths = {p.stem.split("_", 1)[1].rsplit("_", 1)[0]: p for p in archived(config_path)}
    assert archive.show_run(paths["19_config"]).records["config"]["value"] == str(config_path)
    nb = nbformat.read(paths["20_broken"], as_version=4)
    (error,) = [o for c in nb.cells for o in c.get("outputs", [])
                if o.get("output_type") == "error"]
    assert error["traceback"] == ["ConfigError: /nonexistent/bgkit.toml: no such file (pass "
                                  "--config PATH or set BGKIT_CONFIG)"]


def test_a_forged_staging_entry_gets_nothing_indexed_keyed_or_deleted(
        write_config: WriteConfig, notebooks: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(index.KEY_ENV, "k3y-for-archive-XYZ")
    config = load_config(write_config())
    run_step("18_types", config=config, notebooks_dir=notebooks, progress=False)
    runs = config.runs_dir
    forged_name = "2026/11/20261130T130000Z_04_switch_deadbeef0000.ipynb"
    (runs / forged_name).parent.mkdir(parents=True, exist_ok=True)  # a month of its own
    (runs / forged_name).write_text((runs / index.read_entries(runs)[0].path).read_text())
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    folder = staging.staging_dir(runs)
    for mac in (None, "0" * 64):
        state = {"run_id": "deadbeef0000", "step": "04_switch", "archive_name": forged_name,
                 "notebook": str(victim), "source": "x", "config": "x", "host": "x",
                 "started_at": "2026-11-30T13:00:00+00:00", "runner_pid": 999999,
                 "runner_started": 1, "published_sha256": ""}
        if mac:
            state["mac"] = mac
        path = folder / "20261130T130000Z_04_switch_deadbeef0000.ipynb.state.json"
        path.write_text(json.dumps(state))
        recovery = runner_recover(runs, config)
        assert recovery.archived == () and any("no valid mac" in s for s in recovery.skipped)
        assert victim.read_text() == "keep me"
    check = index.verify_archive(runs)
    assert [f.kind for f in check.findings] == ["inserted"], "the forged run stays unindexed"


def runner_recover(runs: Path, config: object) -> object:
    from bgkit.runbook.runner import recover_interrupted

    return recover_interrupted(runs, config=config)  # type: ignore[arg-type]


def test_a_killed_run_whose_source_is_gone_is_still_archived_and_nothing_crashes(
        write_config: WriteConfig, notebooks: Path, tmp_path: Path,
        start_run: Callable[..., subprocess.Popen[str]]) -> None:
    import shutil

    checkout = tmp_path / "ci-checkout"
    shutil.copytree(notebooks, checkout)
    config_path = write_config()
    runner = start_run(config_path, checkout, "15_safety")
    wait_for_staged_text(load_config(config_path).runs_dir, "watching")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)
    shutil.rmtree(checkout)
    listing = cli("runs", "list", "--config", str(config_path))
    assert listing.returncode == 0, listing.stderr
    (path,) = archived(config_path)
    assert archive.show_run(path).outcome == "interrupted"
    assert "watching 0" in path.read_text(), "the running cell's output was saved while it ran"
    leftovers = list(Path(tempfile.gettempdir()).glob(
        f"bgkit-k-{archive.show_run(path).metadata['run_id']}-*"))
    assert leftovers == [], "the killed runner's kernel folder is removed"


def test_exit_and_skip_execution_cannot_make_a_run_succeed(
        write_config: WriteConfig, tmp_path: Path) -> None:
    folder = tmp_path / "tricks"
    write_notebook(folder, "21_exit", "print('gate failed')\nexit()", FINISH)
    write_notebook(folder, "22_quit", "quit()", FINISH)
    skipped = tmp_path / "tricks" / "23_skip.ipynb"
    write_notebook(folder, "23_skip", "raise RuntimeError('deploy failed')", FINISH)
    nb = nbformat.read(skipped, as_version=4)
    nb.cells[1].metadata["tags"] = ["skip-execution"]
    nbformat.write(nb, skipped)
    write_notebook(folder, "24_fake", "import bgkit\nbgkit.record('outcome', 'interrupted')")
    config = load_config(write_config())
    for step, reason in (("21_exit", "EarlyExit"), ("22_quit", "EarlyExit"),
                         ("23_skip", "RuntimeError: deploy failed"),
                         ("24_fake", "which only the runner gives")):
        with pytest.raises(StepFailed, match=reason) as caught:
            run_step(step, config=config, notebooks_dir=folder, progress=False)
        assert caught.value.run_path is not None
        assert archive.show_run(caught.value.run_path).outcome == "failed"


def test_reasons_name_the_cell_a_reader_counts_in_the_archived_notebook(
        write_config: WriteConfig, notebooks: Path) -> None:
    config = load_config(write_config())
    with pytest.raises(StepFailed) as caught:
        run_step("03_verify", config=config, progress=False,
                 parameters={"artifact": "/nonexistent/hello.tar.gz"})
    path = caught.value.run_path
    assert path is not None
    nb = nbformat.read(path, as_version=4)
    reason = archive.show_run(path).metadata["reason"]
    number = int(reason.split("cell ")[1].split(" of ")[0])
    assert nb.cells[number - 1].cell_type == "code"
    assert "artifact" in nb.cells[number - 1].source and "raised UsageError" in reason


def test_a_notebook_without_run_id_gets_no_unknown_parameter_warning(
        write_config: WriteConfig, tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(FINISH)]
    nbformat.write(nb, folder / "30_bare.ipynb")
    done = cli("run", "30_bare", "--config", str(write_config()), "--notebooks", str(folder))
    assert done.returncode == 0, done.stderr
    assert "unknown parameter" not in done.stderr.lower()
