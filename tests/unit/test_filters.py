"""Filters of the run table: step, outcome, release, since and pipeline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from bgkit.errors import UsageError
from bgkit.runbook.archive import list_runs
from bgkit.runbook.filters import (
    PIPELINE_COLUMN,
    has_pipelines,
    parse_since,
    select_runs,
    with_pipeline,
)
from tests.unit.archive_factory import runs_table, sample_archive, write_run

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def table() -> pd.DataFrame:
    runs = runs_table(
        ("2026-11-20T10:00:00+00:00", "02_deploy_green", "succeeded", 5.0),
        ("2026-11-25T10:00:00+00:00", "04_switch", "switched back", 9.0),
        ("2026-11-26T11:30:00+00:00", "04_switch", "succeeded", 8.0),
        ("2026-11-26T11:45:00+00:00", "01_build", "failed", 1.0),
    )
    runs["release"] = ["hello-1.2.0-aaaaaaa", "hello-1.2.0-aaaaaaa", "hello-1.2.01-bbbbbbb",
                       None]
    runs[PIPELINE_COLUMN] = ["p1", "p1", None, "p2"]
    return runs


def ids(runs: pd.DataFrame) -> list[str]:
    return list(runs["run_id"])


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", "2026-11-19T12:00:00+00:00"),
    ("12h", "2026-11-26T00:00:00+00:00"),
    ("30m", "2026-11-26T11:30:00+00:00"),
    ("2w", "2026-11-12T12:00:00+00:00"),
    (" 3D ", "2026-11-23T12:00:00+00:00"),
    ("2026-11-20", "2026-11-20T00:00:00+00:00"),
    ("2026-11-20T14:00", "2026-11-20T14:00:00+00:00"),
    ("2026-11-20T14:00Z", "2026-11-20T14:00:00+00:00"),
    ("2026-11-20T14:00+02:00", "2026-11-20T12:00:00+00:00"),
])
def test_since_reads_iso_dates_and_times_and_relative_ages(text: str, expected: str) -> None:
    assert parse_since(text, now=NOW) == pd.Timestamp(expected)


@pytest.mark.parametrize("text", ["7x", "yesterday", "-3d", "2026-13-01", "", "7 days"])
def test_a_bad_since_is_a_usage_error_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(UsageError, match=r"expected an ISO date or time .* 12h, 7d"):
        parse_since(text, now=NOW)


def test_no_filter_keeps_every_run() -> None:
    assert ids(select_runs(table())) == ["r1", "r2", "r3", "r4"]


def test_step_matches_the_end_of_the_step_name_and_outcome_matches_exactly() -> None:
    assert ids(select_runs(table(), step="switch")) == ["r2", "r3"]
    assert ids(select_runs(table(), step="deploy_green")) == ["r1"]
    assert ids(select_runs(table(), outcome="succeeded")) == ["r1", "r3"]
    assert ids(select_runs(table(), step="switch", outcome="succeeded")) == ["r3"]


def test_release_matches_a_name_or_a_prefix_up_to_a_dash() -> None:
    assert ids(select_runs(table(), release="hello-1.2.0")) == ["r1", "r2"]
    assert ids(select_runs(table(), release="hello-1.2.01-bbbbbbb")) == ["r3"]
    assert ids(select_runs(table(), release="hello-1.2")) == []


def test_since_keeps_runs_started_at_or_after_the_instant() -> None:
    since = parse_since("30m", now=NOW)
    assert ids(select_runs(table(), since=since)) == ["r3", "r4"]
    assert ids(select_runs(table(), since=parse_since("2026-11-25", now=NOW))) == [
        "r2", "r3", "r4"]


def test_pipeline_matches_exactly_and_runs_without_one_never_match() -> None:
    assert ids(select_runs(table(), pipeline="p1")) == ["r1", "r2"]
    assert ids(select_runs(table(), pipeline="p")) == []


def test_filters_on_an_empty_table_return_an_empty_table() -> None:
    empty = list_runs(Path("/nonexistent"))
    assert select_runs(empty, step="switch", release="x", since=parse_since("1d"),
                       outcome="succeeded", pipeline="p").empty


def test_pipeline_ids_are_read_from_the_notebooks_when_present(tmp_path: Path) -> None:
    sample_archive(tmp_path)
    runs = with_pipeline(list_runs(tmp_path))
    assert list(runs[PIPELINE_COLUMN].fillna("-")) == ["pipe1", "pipe1", "-", "-", "-", "-"]
    assert has_pipelines(runs)
    assert ids(select_runs(runs, pipeline="pipe1")) == list(runs["run_id"][:2])


def test_an_archive_without_pipeline_ids_has_none(tmp_path: Path) -> None:
    write_run(tmp_path, "01_build", "2026-11-01T10:00:00+00:00")
    assert not has_pipelines(with_pipeline(list_runs(tmp_path)))
