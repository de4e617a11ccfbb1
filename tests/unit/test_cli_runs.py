"""``bgkit runs verify``, ``runs html`` and the ``runs list`` filters, in process."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bgkit.cli import main
from bgkit.runbook.index import append
from tests.unit.archive_factory import sample_archive, write_run


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for path in sample_archive(runs):
        path.chmod(stat.S_IRUSR | stat.S_IRGRP)
        append(runs, path)
    return runs


def test_runs_verify_exits_0_on_a_clean_archive(archive: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "verify", "--runs-dir", str(archive)]) == 0
    printed = capsys.readouterr().out
    assert "in order; 6 indexed run(s), 6 notebook(s); index head " in printed


def test_runs_verify_exits_1_and_names_each_problem(archive: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    extra = write_run(archive, "04_switch", "2026-11-20T10:00:00+00:00")
    gone = sorted(archive.glob("*/*/*_03_verify_*.ipynb"))[0]
    gone.unlink()
    assert main(["runs", "verify", "--runs-dir", str(archive)]) == 1
    printed = capsys.readouterr().out
    assert f"deleted {gone.relative_to(archive).as_posix()}: indexed at seq 5" in printed
    assert f"inserted {extra.relative_to(archive).as_posix()}: " in printed
    assert "2 problem(s)" in printed


def test_runs_verify_of_a_missing_archive_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "verify", "--runs-dir", str(tmp_path / "nope")]) == 2
    assert "no run archive" in capsys.readouterr().err


def test_runs_html_writes_the_report_beside_the_archive(
        archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sorted(archive.glob("*/*/*_04_switch_*.ipynb"))[0]
    run_id = path.stem.rsplit("_", 1)[-1]
    assert main(["runs", "html", run_id, "--runs-dir", str(archive), "--no-input"]) == 0
    target = archive.parent / "reports" / f"{path.stem}.html"
    assert f"report: {target.resolve()}" in capsys.readouterr().out
    page = target.read_text()
    code = '<span class="nn">bgkit</span>'  # `import bgkit`, highlighted
    assert run_id in page and code not in page
    chosen = archive.parent / "elsewhere" / "r.html"
    assert main(["runs", "html", run_id, "--runs-dir", str(archive), "-o", str(chosen)]) == 0
    assert code in chosen.read_text()
    assert main(["runs", "html", run_id, "--runs-dir", str(archive), "-o",
                 str(archive / "r.html")]) == 2
    assert "write-once" in capsys.readouterr().err
    assert main(["runs", "html", "ffffffff", "--runs-dir", str(archive)]) == 2


def test_runs_list_filters_by_pipeline_and_shows_the_pipeline_column(
        archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--runs-dir", str(archive), "--pipeline", "pipe1"]) == 0
    printed = capsys.readouterr().out
    assert "pipeline" in printed and printed.count("pipe1") == 2
    assert "02_deploy_green" in printed and "03_verify" not in printed


def test_runs_list_filters_by_release_since_step_and_outcome(
        archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--runs-dir", str(archive), "--release", "hello-c-2.0.0"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("hello-c-2.0.0-bbbbbbb") == 1
    assert main(["runs", "list", "--runs-dir", str(archive), "--since", "2026-11-16T10:30",
                 "--step", "switch", "--outcome", "succeeded"]) == 0
    printed = capsys.readouterr().out
    assert "2026-11-16 12:00:00Z" in printed and printed.count("04_switch") == 1
    assert main(["runs", "list", "--runs-dir", str(archive), "--since", "2099-01-01"]) == 0
    assert "no runs in" in capsys.readouterr().out


def test_runs_list_refuses_a_bad_since_naming_the_forms(
        archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--runs-dir", str(archive), "--since", "last week"]) == 2
    assert "expected an ISO date or time" in capsys.readouterr().err
