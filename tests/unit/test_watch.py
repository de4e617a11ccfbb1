"""The post-switch watch judges every answer as it comes: the first breach ends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from bgkit.config import GatesConfig
from bgkit.lb.base import BackendServer
from bgkit.watch import P99_WINDOW, WatchJudge, judge_watch
from tests.unit.sample_factory import make_samples

START = datetime(2024, 5, 1, 12, tzinfo=UTC)


def row(index: int, *, ok: bool = True, latency_ms: float = 2.0, error: str = "",
        version: str = "2.0.0", status: int | None = 200) -> dict[str, Any]:
    return {"timestamp": START + timedelta(milliseconds=20 * index), "status": status,
            "ok": ok, "latency_ms": latency_ms, "version": version, "error": error}


def judge(planned: int = 500, **gates: Any) -> WatchJudge:
    return WatchJudge(GatesConfig(**gates), "2.0.0", "green", planned)


def feed(watch: WatchJudge, rows: list[dict[str, Any]]) -> int | None:
    """The index of the row that breached, or None."""
    for index, item in enumerate(rows):
        if watch.add(item):
            return index
    return None


def test_with_no_error_budget_the_first_failed_answer_breaches() -> None:
    watch = judge()
    rows = [row(i) for i in range(30)] + [row(30, ok=False, error="bad_status", status=503)]
    assert feed(watch, rows) == 30
    assert watch.breach is not None and "over the error budget of 0" in watch.breach
    assert watch.first_failure_at == watch.breached_at == rows[30]["timestamp"]


def test_the_error_budget_is_a_share_of_the_planned_samples() -> None:
    watch = judge(planned=100, max_error_ratio=0.05, max_consecutive_failures=100)
    rows = [row(i, ok=i % 3 != 0, error="" if i % 3 else "bad_status") for i in range(40)]
    assert feed(watch, rows) == 15  # the 6th failure (0, 3, 6, 9, 12, 15)
    assert "6 request(s) failed (bad_status), over the error budget of 5" in str(watch.breach)
    assert watch.first_failure_at == rows[0]["timestamp"]


def test_failures_in_a_row_breach_before_the_budget_does() -> None:
    watch = judge(planned=100, max_error_ratio=0.5, max_consecutive_failures=3)
    rows = [row(0), *(row(i, ok=False, error="timeout", status=None) for i in range(1, 4)),
            row(4), *(row(i, ok=False, error="refused", status=None) for i in range(5, 10))]
    assert feed(watch, rows) == 8  # three in a row are allowed, the fourth is not
    assert "4 requests failed in a row" in str(watch.breach)


def test_an_answer_from_another_release_breaches_at_once() -> None:
    watch = judge(max_error_ratio=1.0)
    assert feed(watch, [row(0), row(1, ok=False, error="wrong_version",
                                    version="1.0.0")]) == 1
    assert "another release (1.0.0), expected 2.0.0" in str(watch.breach)


def test_p99_is_judged_over_a_sliding_window_and_one_outlier_is_not_a_breach() -> None:
    watch = judge(max_p99_ms=50)
    calm = [row(i, latency_ms=3.0) for i in range(P99_WINDOW)]
    assert feed(watch, [*calm, row(P99_WINDOW, latency_ms=900.0)]) is None
    slow = [row(P99_WINDOW + 1 + i, latency_ms=80.0) for i in range(10)]
    assert feed(watch, slow) == 0  # with the outlier, two slow of 100: p99 is slow
    assert "p99 latency" in str(watch.breach) and "last 100 answers" in str(watch.breach)


def test_a_short_watch_judges_p99_over_every_answer_at_the_end() -> None:
    watch = judge(max_p99_ms=50)
    assert feed(watch, [row(i, latency_ms=80.0) for i in range(25)]) is None
    reasons = watch.finish()
    assert len(reasons) == 1 and "p99 latency 80.0 ms over 25 answers" in reasons[0]


def test_the_load_balancer_seeing_a_new_server_down_breaches() -> None:
    watch = judge()
    up = BackendServer("green", "green-1", "127.0.2.1", 80, "UP", True)
    down = BackendServer("green", "green-2", "127.0.2.2", 80, "DOWN", False,
                         "L7STS Layer7 wrong status: 500")
    blue_down = BackendServer("blue", "blue-1", "127.0.1.1", 80, "DOWN", False)
    assert watch.servers([up, blue_down], START) is None  # the old pool may go down
    assert watch.servers([up, down], START) is not None
    assert "green-2 (127.0.2.2:80) DOWN: L7STS" in str(watch.breach)


def test_judge_watch_replays_a_frame_through_the_same_judge() -> None:
    applied = pd.Timestamp("2024-05-01T12:00:01Z")
    ok = make_samples([2.0] * 20, pool="green", host="lb", target="lb", version="2.0.0",
                      start="2024-05-01T12:00:01Z", step_s=0.02)
    before = make_samples([2.0] * 5, pool="green", host="lb", target="lb", version="1.0.0",
                          errors="wrong_version", wrong_version="1.0.0",
                          start="2024-05-01T12:00:00Z")
    bad = make_samples([2.0] * 3, pool="green", host="lb", target="lb", version="2.0.0",
                       errors="bad_status", start="2024-05-01T12:00:02Z")
    frame = pd.concat([before, ok, bad], ignore_index=True)
    result = judge_watch(frame, GatesConfig(), expected_version="2.0.0",
                         switched_at=applied.to_pydatetime() - timedelta(seconds=1),
                         applied_at=applied.to_pydatetime(), pool="green", planned=100)
    assert not result.ok and result.samples == 23  # every sample from applied_at on
    assert result.errors == 3 and result.wrong_version == 0
    assert result.breached_at == bad["timestamp"].iloc[0].to_pydatetime()
    assert result.moved_s is not None and result.moved_s > 0
    assert result.to_dict()["detect_s"] == 0.0
