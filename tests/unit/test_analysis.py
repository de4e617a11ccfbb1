"""The verify step's pure analysis: summary numbers, idle-vs-live comparison, gates."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bgkit.analysis import (
    POOL_ROW,
    SUMMARY_COLUMNS,
    GateResult,
    Verdict,
    compare,
    evaluate,
    summarise,
)
from bgkit.config import GatesConfig
from bgkit.errors import UsageError
from bgkit.lb.base import BackendServer
from bgkit.samples import SAMPLE_COLUMNS, empty_samples, validate_samples
from tests.unit.sample_factory import join, make_pool, make_samples

IDLE = ("127.0.2.1", "127.0.2.2")
LIVE = ("127.0.1.1", "127.0.1.2")
GATES = GatesConfig(min_samples_per_host=10, max_error_ratio=0.0, max_p99_ms=100.0,
                    max_p95_ratio=1.5, require_version=True, max_consecutive_failures=3)


def healthy(idle_ms: float = 10.0, live_ms: float = 10.0, count: int = 20) -> pd.DataFrame:
    """Both pools answering ok, the idle (green) one with release 2.0.0."""
    idle = make_pool("green", IDLE, [idle_ms + i / 10 for i in range(count)], version="2.0.0")
    live = make_pool("blue", LIVE, [live_ms + i / 10 for i in range(count)], version="1.0.0")
    return join(idle, live)


def judge(
    df: pd.DataFrame,
    gates: GatesConfig = GATES,
    *,
    expected_version: str | None = "2.0.0",
    lb_servers: Sequence[BackendServer] | None = None,
    expected_hosts: Sequence[str] | None = None,
) -> Verdict:
    return evaluate(df, gates, idle_pool="green", live_pool="blue",
                    expected_version=expected_version, lb_servers=lb_servers,
                    expected_hosts=expected_hosts)


def gate(verdict: Verdict, name: str) -> GateResult:
    return next(g for g in verdict.gates if g.gate == name)


def row(summary: pd.DataFrame, pool: str, host: str) -> pd.Series:
    chosen = summary[(summary["pool"] == pool) & (summary["host"] == host)]
    assert len(chosen) == 1
    return chosen.iloc[0]


# --- the sample contract -----------------------------------------------------------


def test_empty_samples_have_the_contract_dtypes() -> None:
    frame = empty_samples()
    assert list(frame.columns) == list(SAMPLE_COLUMNS)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == SAMPLE_COLUMNS
    assert validate_samples(frame).empty


def test_validation_names_missing_columns_and_wrong_dtypes() -> None:
    with pytest.raises(UsageError, match="missing column.*host, latency_ms"):
        validate_samples(empty_samples().drop(columns=["host", "latency_ms"]))
    bad = make_samples([1.0]).assign(status=["200"], timestamp=pd.Timestamp("2024-05-01"))
    with pytest.raises(UsageError) as caught:
        validate_samples(bad)
    assert "timestamp: expected tz-aware" in str(caught.value)
    assert "status: expected Int64" in str(caught.value)


def test_validation_refuses_unknown_error_kinds_and_targets() -> None:
    bad = make_samples([1.0, 2.0], errors=["", "timeout"]).assign(
        error=["", "boom"], target=["host", "proxy"])
    with pytest.raises(UsageError) as caught:
        validate_samples(bad)
    assert "['boom']" in str(caught.value) and "['proxy']" in str(caught.value)
    with pytest.raises(UsageError, match="boom"):
        summarise(bad)


def test_validation_returns_canonical_dtypes() -> None:
    loose = pd.DataFrame({
        "timestamp": pd.to_datetime(["2024-05-01T14:00:00+02:00"]),  # microseconds, +02:00
        "pool": ["green"], "host": ["h"], "target": ["host"],
        "status": [200.0], "ok": [True], "latency_ms": [3],
        "version": pd.Series([None], dtype="str"), "error": [""],
    })
    frame = validate_samples(loose)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == SAMPLE_COLUMNS
    assert frame["timestamp"][0] == pd.Timestamp("2024-05-01T12:00:00Z")
    assert frame["version"][0] is None


# --- summarise -----------------------------------------------------------------------


def test_percentiles_are_pandas_linear_interpolation() -> None:
    summary = summarise(make_samples(list(range(100, 0, -1)), host="h"))
    host = row(summary, "green", "h")
    assert host["p50_ms"] == pytest.approx(50.5, abs=1e-9)
    assert host["p90_ms"] == pytest.approx(90.1, abs=1e-9)
    assert host["p95_ms"] == pytest.approx(95.05, abs=1e-9)
    assert host["p99_ms"] == pytest.approx(99.01, abs=1e-9)
    assert (host["max_ms"], host["mean_ms"]) == (100.0, 50.5)
    reference = pd.Series(range(1, 101), dtype=float).quantile([0.5, 0.9, 0.95, 0.99])
    assert list(host[["p50_ms", "p90_ms", "p95_ms", "p99_ms"]]) == pytest.approx(
        list(reference), abs=1e-12)


def test_summary_has_a_row_per_host_a_row_per_pool_and_one_for_the_lb() -> None:
    df = join(make_pool("green", ["127.0.2.10", "127.0.2.2"], [1.0, 3.0]),
              make_pool("blue", ["127.0.1.1"], [5.0]),
              make_samples([7.0, 9.0], pool="blue", target="lb"))
    summary = summarise(df)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert list(zip(summary["pool"], summary["host"], summary["target"], strict=True)) == [
        ("blue", "127.0.1.1", "host"), ("blue", POOL_ROW, "host"),
        ("green", "127.0.2.2", "host"), ("green", "127.0.2.10", "host"),  # natural order
        ("green", POOL_ROW, "host"), ("blue", "lb", "lb"),
    ]
    green = row(summary, "green", POOL_ROW)
    assert (green["samples"], green["p50_ms"], green["max_ms"]) == (4, 2.0, 3.0)
    assert row(summary, "blue", "lb")["mean_ms"] == 8.0


def test_summary_counts_error_kinds_and_lists_versions() -> None:
    kinds = ["", "timeout", "refused", "refused", "reset", "bad_status", "wrong_version",
             "other", ""]
    summary = summarise(make_samples([10.0] * 9, host="h", errors=kinds, version="2.0.0",
                                     wrong_version="1.0.0"))
    host = row(summary, "green", "h")
    assert dict(host[["samples", "ok"]]) == {"samples": 9, "ok": 2}
    assert host["ok_ratio"] == pytest.approx(2 / 9)
    assert dict(host[[c for c in SUMMARY_COLUMNS if c.startswith("err_")]]) == {
        "err_timeout": 1, "err_refused": 2, "err_reset": 1, "err_bad_status": 1,
        "err_wrong_version": 1, "err_other": 1,
    }
    assert host["versions"] == "1.0.0, 2.0.0"


def test_latency_counts_only_samples_that_got_an_answer() -> None:
    df = make_samples([10.0, 20.0, 2000.0, 0.1], host="h",
                      errors=["", "bad_status", "timeout", "refused"])
    host = row(summarise(df), "green", "h")
    assert (host["max_ms"], host["p50_ms"], host["mean_ms"]) == (20.0, 15.0, 15.0)


def test_a_host_that_answered_nothing_has_no_latency_but_a_row() -> None:
    df = join(make_samples([1.0] * 5, host="dead", errors="refused"),
              make_samples([4.0] * 5, host="alive"))
    summary = summarise(df)
    dead = row(summary, "green", "dead")
    assert (dead["samples"], dead["ok"], dead["err_refused"], dead["versions"]) == (5, 0, 5, "")
    assert all(math.isnan(dead[c]) for c in ("p50_ms", "p99_ms", "max_ms", "mean_ms"))
    assert row(summary, "green", POOL_ROW)["p99_ms"] == 4.0


def test_summary_of_no_samples_is_an_empty_table_with_the_columns() -> None:
    summary = summarise(empty_samples())
    assert summary.empty and list(summary.columns) == list(SUMMARY_COLUMNS)


# --- compare -------------------------------------------------------------------------


def test_mann_whitney_of_a_tiny_example_matches_the_hand_count_and_scipy() -> None:
    result = compare(make_samples([1.0, 2.0, 3.0]), make_samples([4.0, 5.0, 6.0], pool="blue"))
    assert result.mann_whitney_u == 0.0  # no idle value beats any live value
    assert result.p_value_two_sided == stats.mannwhitneyu([1, 2, 3], [4, 5, 6]).pvalue
    assert result.p_value_idle_slower == stats.mannwhitneyu(
        [1, 2, 3], [4, 5, 6], alternative="greater").pvalue
    assert result.p_value_idle_slower == 1.0 and result.idle_slower is False
    slower = compare(make_samples([4.0, 5.0, 6.0]), make_samples([1.0, 2.0, 3.0]), alpha=0.1)
    assert slower.mann_whitney_u == 9.0 and slower.p_value_idle_slower == pytest.approx(0.05)
    assert slower.idle_slower is True


def test_mann_whitney_on_large_samples_matches_scipy_asymptotic() -> None:
    rng = np.random.default_rng(3)
    idle = rng.lognormal(2.6, 0.4, 7000).round(1)  # rounded: many ties
    live = rng.lognormal(2.55, 0.4, 6000).round(1)
    result = compare(make_samples(list(idle)), make_samples(list(live), pool="blue"))
    two = stats.mannwhitneyu(idle, live, method="asymptotic")
    greater = stats.mannwhitneyu(idle, live, alternative="greater", method="asymptotic")
    assert result.mann_whitney_u == two.statistic
    assert result.p_value_two_sided == pytest.approx(two.pvalue, rel=1e-9)
    assert result.p_value_idle_slower == pytest.approx(greater.pvalue, rel=1e-9)
    assert result.idle_slower == (greater.pvalue < 0.01)


def test_compare_ratios_and_error_rates() -> None:
    idle = make_samples([20.0] * 8 + [1.0, 1.0], errors=[""] * 8 + ["refused", "timeout"])
    live = make_samples([10.0] * 10, pool="blue")
    result = compare(idle, live)
    assert (result.p50_ratio, result.p95_ratio, result.p99_ratio) == (2.0, 2.0, 2.0)
    assert (result.error_rate_idle, result.error_rate_live) == (0.2, 0.0)
    assert result.error_rate_diff == pytest.approx(0.2)
    assert (result.idle_answered, result.live_answered) == (8, 10)


def test_compare_without_enough_answers_has_no_test_and_is_json_ready() -> None:
    result = compare(make_samples([3.0]), make_samples([1.0, 1.0], pool="blue", errors="refused"))
    assert math.isnan(result.p95_ratio)
    assert (result.mann_whitney_u, result.p_value_two_sided, result.idle_slower) == (
        None, None, False)
    data = result.to_dict()
    assert data["p95_ratio"] is None and data["error_rate_live"] == 1.0
    json.dumps(data, allow_nan=False)


# --- the gates, each able to pass and to fail ----------------------------------------


def test_healthy_pools_pass_every_gate() -> None:
    verdict = judge(healthy())
    assert verdict.overall == "pass"
    assert [g.verdict for g in verdict.gates] == ["pass"] * 9
    assert verdict.reasons() == []


def test_samples_gate_is_inconclusive_naming_hosts_with_too_few() -> None:
    df = join(make_pool("green", IDLE[:1], [10.0] * 20, version="2.0.0"),
              make_pool("green", ["127.0.2.9"], [10.0] * 4, version="2.0.0"))
    result = gate(judge(df), "samples")
    assert result.verdict == "inconclusive"
    assert "127.0.2.9 (4)" in result.reason and "127.0.2.1" not in result.reason
    assert gate(judge(healthy()), "samples").verdict == "pass"


def test_samples_gate_is_inconclusive_without_idle_samples_or_for_an_unseen_host() -> None:
    only_live = make_pool("blue", LIVE, [10.0] * 20)
    verdict = judge(only_live)
    assert verdict.overall == "inconclusive"
    assert "no host samples from the idle pool green" in gate(verdict, "samples").reason
    unseen = gate(judge(healthy(), expected_hosts=[*IDLE, "127.0.2.3"]), "samples")
    assert unseen.verdict == "inconclusive" and "127.0.2.3 (0)" in unseen.reason


def test_errors_gate_fails_naming_host_ratio_and_kinds() -> None:
    kinds = [""] * 16 + ["timeout", "timeout", "reset", ""]
    bad = make_samples([10.0] * 20, host="127.0.2.2", errors=kinds, version="2.0.0")
    df = join(make_pool("green", IDLE[:1], [10.0] * 20, version="2.0.0"), bad)
    result = gate(judge(df), "errors")
    assert result.verdict == "fail"
    assert "127.0.2.2 failed 3 of 20 probes (15.00%: timeout 2, reset 1)" in result.reason
    assert "127.0.2.1" not in result.reason
    relaxed = GATES.model_copy(update={"max_error_ratio": 0.15})
    assert gate(judge(df, relaxed), "errors").verdict == "pass"


def test_a_host_that_answered_nothing_fails_the_errors_gate() -> None:
    dead = make_samples([0.2] * 20, host="127.0.2.2", errors="refused")
    df = join(make_pool("green", IDLE[:1], [10.0] * 20, version="2.0.0"), dead,
              make_pool("blue", LIVE, [10.0] * 20))
    verdict = judge(df)
    assert verdict.overall == "fail"
    assert "127.0.2.2 answered none of 20 probes (100.00%: refused 20)" in gate(
        verdict, "errors").reason
    assert gate(verdict, "p99_latency").verdict == "pass"  # the live host still judged
    assert gate(verdict, "version").verdict == "inconclusive"


def test_p99_gate_fails_naming_the_slowest_host() -> None:
    slow = make_samples([10.0] * 18 + [400.0, 500.0], host="127.0.2.2", version="2.0.0")
    df = join(make_pool("green", IDLE[:1], [10.0] * 20, version="2.0.0"), slow)
    result = gate(judge(df), "p99_latency")
    assert result.verdict == "fail"
    # pool: 38 x 10, 400, 500 -> 400 + 0.61 * 100; host: 18 x 10, 400, 500 -> 400 + 0.81 * 100
    assert result.observed == "461.0 ms"
    assert "slowest host 127.0.2.2 p99 481.0 ms" in result.reason
    assert result.threshold == "<= 100 ms"
    assert gate(judge(healthy()), "p99_latency").verdict == "pass"


def test_p95_ratio_gate_fails_when_idle_is_much_slower_and_cites_mann_whitney() -> None:
    result = gate(judge(healthy(idle_ms=30.0, live_ms=10.0)), "p95_ratio")
    # p95 of each pool's 40 samples: v[37] + 0.05 * (v[38] - v[37])
    assert result.verdict == "fail" and result.observed == f"{31.805 / 11.805:.2f}x"
    assert "Mann-Whitney U=1600: idle is slower than live" in result.reason
    assert gate(judge(healthy(idle_ms=12.0, live_ms=10.0)), "p95_ratio").verdict == "pass"


def test_p95_ratio_gate_passes_when_there_is_no_live_pool_yet() -> None:
    first = make_pool("green", IDLE, [10.0] * 20, version="2.0.0")
    result = gate(judge(first), "p95_ratio")
    assert (result.verdict, result.reason) == (
        "pass", "no live samples to compare with (first deploy?)")


def test_latency_gates_wait_for_enough_answered_samples_rather_than_fail() -> None:
    few = join(make_pool("green", IDLE, [300.0, 400.0], version="2.0.0"),
               make_pool("blue", LIVE, [10.0] * 20))
    verdict = judge(few)
    assert gate(verdict, "p99_latency").verdict == "inconclusive"
    assert gate(verdict, "p95_ratio").verdict == "inconclusive"
    assert "only 4 answered samples from idle pool green" in gate(verdict, "p95_ratio").reason
    assert verdict.overall == "inconclusive"
    few_live = join(make_pool("green", IDLE, [10.0] * 20, version="2.0.0"),
                    make_pool("blue", LIVE[:1], [1.0] * 3))
    assert "from live pool blue" in gate(judge(few_live), "p95_ratio").reason


def test_version_gate_fails_naming_each_host_and_what_it_answered() -> None:
    kinds = [""] * 18 + ["wrong_version"] * 2
    old = make_samples([10.0] * 20, host="127.0.2.2", errors=kinds, version="2.0.0",
                       wrong_version="1.0.0")
    df = join(make_pool("green", IDLE[:1], [10.0] * 20, version="2.0.0"), old)
    result = gate(judge(df), "version")
    assert result.verdict == "fail"
    assert "127.0.2.2 answered 1.0.0, 2.0.0" in result.reason
    assert "127.0.2.1" not in result.reason
    assert gate(judge(healthy()), "version").verdict == "pass"


def test_version_gate_reads_a_missing_header_as_a_wrong_answer() -> None:
    headless = make_samples([10.0] * 20, host="127.0.2.1", version=None)
    result = gate(judge(headless), "version")
    assert result.verdict == "fail" and "(no version header)" in result.reason


def test_version_gate_passes_when_not_required_and_waits_without_an_expectation() -> None:
    loose = GATES.model_copy(update={"require_version": False})
    assert gate(judge(healthy(), loose), "version").reason == "not required"
    unknown = gate(judge(healthy(), expected_version=None), "version")
    assert unknown.verdict == "inconclusive"


def test_consecutive_failures_follow_time_not_row_order_per_host() -> None:
    stamps = [f"2024-05-01T12:00:{s:02d}Z" for s in range(10)]
    # 127.0.2.1 fails 3 in a row, then 2 at its end; 127.0.2.2 fails 2 at its start:
    # the runs of different hosts must not join up (2 + 2 would make 4)
    a_kinds = ["", "", "", "timeout", "reset", "timeout", "", "", "refused", "refused"]
    b_kinds = ["refused", "timeout", "", "", "", "", "", "", "", ""]
    df = join(make_samples([5.0] * 10, host="127.0.2.1", errors=a_kinds, timestamps=stamps,
                           version="2.0.0"),
              make_samples([5.0] * 10, host="127.0.2.2", errors=b_kinds, timestamps=stamps,
                           version="2.0.0"))
    shuffled = df.sample(frac=1.0, random_state=4).reset_index(drop=True)  # unsorted, mixed
    lenient = GATES.model_copy(update={"min_samples_per_host": 1, "max_error_ratio": 1.0})
    result = gate(judge(shuffled, lenient.model_copy(
        update={"max_consecutive_failures": 2})), "consecutive_failures")
    assert (result.verdict, result.observed) == ("fail", "3 (127.0.2.1)")
    assert result.reason == "idle host(s) failed repeatedly: 127.0.2.1 failed 3 in a row"
    assert gate(judge(shuffled, lenient), "consecutive_failures").verdict == "pass"


def test_lb_health_gate_fails_naming_unhealthy_idle_servers() -> None:
    servers = [
        BackendServer("green", "g1", "127.0.2.1", 8080, "UP", True),
        BackendServer("green", "g2", "127.0.2.2", 8080, "DOWN", False, "L4CON"),
        BackendServer("blue", "b1", "127.0.1.1", 8080, "DOWN", False),
    ]
    result = gate(judge(healthy(), lb_servers=servers), "lb_health")
    assert result.verdict == "fail" and result.observed == "1/2 healthy"
    assert "g2 (127.0.2.2:8080) is DOWN" in result.reason and "b1" not in result.reason
    assert gate(judge(healthy(), lb_servers=servers[:1]), "lb_health").verdict == "pass"
    assert gate(judge(healthy(), lb_servers=servers[2:]), "lb_health").verdict == "fail"
    unchecked = gate(judge(healthy()), "lb_health")
    assert (unchecked.verdict, unchecked.reason) == ("pass", "load balancer view not checked")


# --- the verdict ---------------------------------------------------------------------


def test_any_fail_outranks_inconclusive_which_outranks_pass() -> None:
    short = make_pool("green", IDLE, [10.0] * 5, version="2.0.0")  # too few: inconclusive
    assert judge(short).overall == "inconclusive"
    failing = join(short, make_samples([1.0] * 5, host="127.0.2.3", errors="refused"))
    verdict = judge(failing)
    assert verdict.overall == "fail"
    assert {g.verdict for g in verdict.gates} >= {"fail", "inconclusive"}
    assert judge(healthy()).overall == "pass"


def test_verdict_serialises_to_strict_json_and_tables() -> None:
    df = join(healthy(), make_samples([1.0] * 20, host="127.0.2.3", errors="refused"))
    verdict = judge(df)
    data = verdict.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["verdict"] == "fail"
    dead = next(r for r in data["summary"] if r["host"] == "127.0.2.3")
    assert dead["p99_ms"] is None and dead["samples"] == 20
    table = verdict.gate_table()
    assert list(table.columns) == ["gate", "verdict", "observed", "threshold", "reason"]
    assert list(table["gate"]) == ["samples", "errors", "p99_latency", "p95_ratio", "version",
                                   "release", "consecutive_failures", "lb_health", "lb_servers"]
    assert verdict.reasons()[0].startswith("errors: ")


def test_p95_ratio_gate_ignores_ratios_of_sub_millisecond_noise() -> None:
    noisy = gate(judge(healthy(idle_ms=4.0, live_ms=1.0)), "p95_ratio")  # 2.07x, 3 ms
    assert noisy.verdict == "pass" and "below which ratios are noise" in noisy.reason
    slow = gate(judge(healthy(idle_ms=20.0, live_ms=10.0)), "p95_ratio")
    assert slow.verdict == "fail" and "10.0 ms slower" in slow.reason
