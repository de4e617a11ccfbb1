"""Archive review numbers on hand-built run tables with known answers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from bgkit.plots import figure_to_png
from bgkit.runbook import report
from bgkit.runbook.archive import list_runs
from tests.unit.archive_factory import runs_table, sample_archive

PNG = b"\x89PNG\r\n\x1a\n"


def history() -> pd.DataFrame:
    """Two weeks with runs and an empty one between; one recovered and one open incident."""
    return runs_table(
        ("2026-11-02T09:00:00+00:00", "02_deploy_green", "succeeded", 60.0),  # r1
        ("2026-11-02T10:00:00+00:00", "04_switch", "succeeded", 30.0),  # r2
        ("2026-11-04T10:00:00+00:00", "03_verify", "inconclusive", 20.0),  # r3
        ("2026-11-17T09:00:00+00:00", "02_deploy_green", "failed", 10.0),  # r4: incident 1
        ("2026-11-17T10:00:00+00:00", "02_deploy_green", "succeeded", 60.0),  # r5
        ("2026-11-17T11:00:00+00:00", "04_switch", "switched back", 120.0),  # r6: same incident
        ("2026-11-17T12:00:00+00:00", "04_switch", "not approved", 5.0),  # r7: stopped
        ("2026-11-17T13:00:00+00:00", "04_switch", "succeeded", 1800.0),  # r8: recovers
        ("2026-11-18T09:00:00+00:00", "04_switch", "switch failed", 50.0),  # r9: incident 2
        ("2026-11-18T10:00:00+00:00", "05_rollback", "succeeded", 40.0),  # r10: not a switch
    )


def empty() -> pd.DataFrame:
    return list_runs(Path("/nonexistent"))


@pytest.mark.parametrize(("step", "name"), [("04_switch", "switch"),
                                            ("02_deploy_green", "deploy_green"),
                                            ("switch", "switch"), ("runs_report", "runs_report"),
                                            (None, "")])
def test_step_names_drop_the_number_prefix(step: str | None, name: str) -> None:
    assert report.step_name(step) == name


def test_deployments_per_week_counts_by_monday_and_fills_empty_weeks() -> None:
    weekly = report.deployments_per_week(history().sample(frac=1, random_state=3))
    assert list(weekly.index.strftime("%Y-%m-%d")) == ["2026-11-02", "2026-11-09",
                                                       "2026-11-16"]
    assert weekly.to_dict(orient="list") == {"deploys": [1, 0, 1], "switches": [1, 0, 1],
                                             "failed": [0, 0, 3]}


def test_failure_rate_counts_stopped_runs_apart_from_failures() -> None:
    rates = report.failure_rate_by_step(history())
    assert list(rates["step"]) == ["02_deploy_green", "03_verify", "04_switch", "05_rollback"]
    assert rates[["runs", "succeeded", "stopped", "failed"]].to_numpy().tolist() == [
        [3, 2, 0, 1], [1, 0, 1, 0], [5, 2, 1, 2], [1, 1, 0, 0]]
    assert rates["failure_rate"].tolist() == pytest.approx([1 / 3, 0.0, 0.4, 0.0])


def test_time_to_recover_runs_from_the_first_failure_to_the_end_of_the_next_good_switch(
        ) -> None:
    incidents = report.time_to_recover(history())
    assert len(incidents) == 2
    first, second = incidents.to_dict(orient="records")
    assert first["failed_at"] == pd.Timestamp("2026-11-17T09:00:00+00:00")
    assert (first["failed_step"], first["failed_run_id"], first["outcome"]) == (
        "02_deploy_green", "r4", "failed")
    assert first["failures"] == 2
    assert first["recovered_by"] == "r8"
    assert first["recovered_at"] == pd.Timestamp("2026-11-17T13:30:00+00:00")
    assert first["time_to_recover"] == pd.Timedelta(hours=4, minutes=30)
    assert (second["failed_run_id"], second["failures"]) == ("r9", 1)
    assert pd.isna(second["recovered_at"]) and pd.isna(second["time_to_recover"])


def test_a_failed_build_or_verify_is_not_an_incident() -> None:
    runs = runs_table(("2026-11-02T09:00:00+00:00", "01_build", "failed", 1.0),
                      ("2026-11-02T10:00:00+00:00", "03_verify", "failed", 1.0),
                      ("2026-11-02T11:00:00+00:00", "04_switch", "succeeded", 1.0))
    assert report.time_to_recover(runs).empty


def test_switch_latency_sorts_drops_unapplied_and_takes_a_rolling_median() -> None:
    switches = pd.DataFrame({
        "time": pd.to_datetime(["2026-11-05", "2026-11-01", "2026-11-03", "2026-11-04",
                                "2026-11-02"], utc=True),
        "run_id": ["e", "a", "c", "d", "b"],
        "outcome": ["succeeded"] * 5,
        "applied_s": [10.0, 1.0, None, 2.0, 3.0],
    })
    latency = report.switch_latency(switches, window=3)
    assert list(latency["run_id"]) == ["a", "b", "d", "e"]
    assert latency["rolling_median_s"].tolist() == [1.0, 2.0, 2.0, 3.0]
    assert list(latency.columns) == report.LATENCY_COLUMNS


def test_switch_records_are_read_from_the_switch_runs_of_an_archive(tmp_path: Path) -> None:
    sample_archive(tmp_path)
    switches = report.load_switch_records(list_runs(tmp_path))
    assert switches["applied_s"].tolist() == [0.5, 0.7, 0.9]
    assert switches["switch_outcome"].tolist() == ["switched", "switched back", "switched"]
    assert switches["outcome"].tolist() == ["succeeded", "switched back", "succeeded"]


def test_describe_says_no_runs_yet_or_counts_them(tmp_path: Path) -> None:
    assert report.describe(empty(), "../runs") == "no runs yet in ../runs"
    sample_archive(tmp_path)
    text = report.describe(list_runs(tmp_path), "x")
    assert text == ("6 run(s) in x, 2026-11-02 09:00 to 2026-11-16 12:00 UTC: "
                    "4 succeeded, 1 stopped, 1 failed")


def test_every_report_is_empty_but_well_formed_on_an_empty_archive() -> None:
    runs = empty()
    assert list(report.deployments_per_week(runs).columns) == report.WEEK_COLUMNS
    assert list(report.failure_rate_by_step(runs).columns) == report.RATE_COLUMNS
    assert list(report.time_to_recover(runs).columns) == report.RECOVERY_COLUMNS
    switches = report.load_switch_records(runs)
    assert list(report.switch_latency(switches).columns) == report.LATENCY_COLUMNS


def figures(runs: pd.DataFrame, switches: pd.DataFrame) -> list[Figure]:
    return [report.figure_deployments(report.deployments_per_week(runs)),
            report.figure_failure_rate(report.failure_rate_by_step(runs)),
            report.figure_time_to_recover(report.time_to_recover(runs)),
            report.figure_switch_latency(report.switch_latency(switches))]


def test_figures_draw_the_data_and_render_to_png(tmp_path: Path) -> None:
    sample_archive(tmp_path)
    runs = list_runs(tmp_path)
    drawn = figures(runs, report.load_switch_records(runs))
    weekly, rates, recover, latency = (fig.axes[0] for fig in drawn)
    assert len(weekly.patches) == 3 * 3  # three weeks, three series
    assert [bar.get_width() for bar in rates.patches] == pytest.approx([0.0, 0.0, 100 / 3])
    assert recover.lines[0].get_ydata().tolist() == pytest.approx([2 + 1 / 60])
    assert latency.lines[0].get_ydata().tolist() == [0.5, 0.7, 0.9]
    assert all(figure_to_png(fig).startswith(PNG) for fig in drawn)


def test_figures_of_an_empty_archive_say_so() -> None:
    for fig in figures(empty(), report.load_switch_records(empty())):
        texts = [text.get_text() for text in fig.axes[0].texts]
        assert texts and texts[0].startswith("no ")
        assert figure_to_png(fig).startswith(PNG)


def test_the_overview_summarises_each_pool_and_draws_the_latest_runs() -> None:
    from bgkit.runbook.overview import figure_timeline, pool_summary

    hosts = pd.DataFrame([
        {"pool": "blue", "host": "127.0.1.1", "release": "app-1.0.0-aaa", "health": "ok"},
        {"pool": "blue", "host": "127.0.1.2", "release": "app-1.0.0-aaa", "health": "ok"},
        {"pool": "green", "host": "127.0.2.1", "release": "app-2.0.0-bbb", "health": "ok"},
        {"pool": "green", "host": "127.0.2.2", "release": "-", "health": "refused"},
    ])
    summary = pool_summary(hosts, "blue")
    assert summary.to_dict("records") == [
        {"pool": "blue", "role": "live", "hosts": 2, "healthy": 2, "releases": "app-1.0.0-aaa"},
        {"pool": "green", "role": "idle", "hosts": 2, "healthy": 1, "releases": "app-2.0.0-bbb"}]
    runs = pd.DataFrame([
        {"time": pd.Timestamp(f"2026-11-30T1{hour}:00:00Z"), "step": step, "outcome": outcome}
        for hour, step, outcome in ((0, "04_switch", "succeeded"),
                                    (1, "04_switch", "not approved"),
                                    (2, "02_deploy_green", "failed"))])
    ax = figure_timeline(runs).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["deploy_green", "switch"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["succeeded", "stopped", "failed"]
    empty = figure_timeline(runs.iloc[0:0]).axes[0]
    assert [t.get_text() for t in empty.texts] == ["no runs yet"]


def test_the_kernel_check_compares_paths_normalised_not_spelled() -> None:
    from bgkit.runbook.engine import _kernel_mismatch

    runner = {"python": "/w/a/../venv/bin/python", "bgkit_path": "/w/repo/./bgkit",
              "bgkit_version": "0.1.0"}
    kernel = {"python": "/w/venv/bin/python", "bgkit_path": "/w/repo/bgkit",
              "bgkit_version": "0.1.0"}
    assert _kernel_mismatch(runner, kernel) is None
    other = {**kernel, "bgkit_path": "/w/other/bgkit"}
    assert "its bgkit_path is '/w/other/bgkit'" in (_kernel_mismatch(runner, other) or "")
