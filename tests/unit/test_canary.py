"""Canary holds on the fake fleet: the share measured at the public address, per pool;
a failing canary pool breaches at once; a split that never happened fails the step."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bgkit.canary import CanaryJudge, hold
from bgkit.config import Config, GatesConfig
from bgkit.testing import FakeFleet
from bgkit.watch import WatchJudge

VERSIONS = {"blue": "1.0.0", "green": "2.0.0"}


@pytest.fixture
def fleet() -> Iterator[FakeFleet]:
    with FakeFleet(blue="1.0.0", green="2.0.0") as running:
        yield running


def config_of(fleet: FakeFleet, tmp_path: Path) -> Config:
    return fleet.config(tmp_path, switch={"watch_rate_per_s": 400})


def test_the_measured_share_follows_the_split_and_each_pool_is_summarised(
        fleet: FakeFleet, tmp_path: Path) -> None:
    fleet.lb.split("green", 20, timeout_s=1)
    result, samples = hold(config_of(fleet, tmp_path), lb=fleet.lb, canary="green",
                           live="blue", percent=20, hold_s=3, versions=VERSIONS)
    assert result.ok, result.reasons
    assert result.samples > 300 and result.unattributed == 0
    assert result.share is not None and abs(result.share - 20) < 6, result.share
    summary = result.summary.set_index("pool")
    assert set(summary.index) == {"blue", "green"}
    assert summary.loc["green", "failed"] == 0
    assert int(summary["answers"].sum()) == result.samples == len(samples)


def test_a_failing_canary_pool_breaches_at_its_first_failure(
        fleet: FakeFleet, tmp_path: Path) -> None:
    fleet.lb.split("green", 30, timeout_s=1)
    fleet.behave("green", status=503)
    fleet.lb.healthy = lambda pool: True  # its health checks have not noticed yet
    result, _ = hold(config_of(fleet, tmp_path), lb=fleet.lb, canary="green", live="blue",
                     percent=30, hold_s=5, versions=VERSIONS)
    assert not result.ok and result.breach is not None
    assert result.duration_s < 4  # stopped at the breach, long before the hold's end
    assert result.errors == 1 and result.live_failed == 0 and "failed" in result.breach
    fleet.lb.healthy = lambda pool: fleet.pools[pool].status == 200
    checked, _ = hold(config_of(fleet, tmp_path), lb=fleet.lb, canary="green", live="blue",
                      percent=30, hold_s=5, versions=VERSIONS)
    assert not checked.ok and checked.breach is not None and "green" in checked.breach


def test_a_split_the_load_balancer_ignored_fails_the_step(
        fleet: FakeFleet, tmp_path: Path) -> None:
    result, _ = hold(config_of(fleet, tmp_path), lb=fleet.lb, canary="green", live="blue",
                     percent=10, hold_s=1, versions=VERSIONS)  # no split was made
    assert not result.ok and result.to_canary == 0 and result.to_live > 50
    assert "no request reached the green pool during the canary" in result.reasons[0]


def judge(**versions: str | None) -> CanaryJudge:
    return CanaryJudge(WatchJudge(GatesConfig(), "2.0.0", "green", 100), "green", "blue",
                       {"blue": "app-blue", "green": "app-green"},
                       {"blue": versions.get("blue", "1.0.0"),
                        "green": versions.get("green", "2.0.0")}, 10)


def row(*, ok: bool = True, served_by: str | None = None, version: str | None = None,
        error: str = "") -> dict[str, object]:
    return {"timestamp": datetime.now(UTC), "ok": ok, "status": 200 if ok else None,
            "latency_ms": 1.0, "error": error, "served_by": served_by, "version": version}


def test_answers_are_told_apart_by_header_then_by_version() -> None:
    told = judge()
    assert told.pool_of(row(served_by="app-green", version="1.0.0")) == "green"
    assert told.pool_of(row(version="1.0.0")) == "blue"
    assert told.pool_of(row(version="9.9.9")) is None
    same = judge(blue="2.0.0")  # the same version on both: only the header tells
    assert same.pool_of(row(version="2.0.0")) is None


def test_a_canary_answer_of_another_release_and_an_unattributed_failure_breach() -> None:
    wrong = judge()
    assert wrong.add(row(served_by="app-green", version="1.9.9")) is not None
    assert "another release" in (wrong.judge.breach or "")
    refused = judge()
    assert refused.add(row(served_by="app-blue", version="1.0.0", ok=False,
                           error="http_500")) is None  # the live pool's: counted only
    assert refused.add(row(ok=False, error="connect")) is not None
    assert refused.counts == {"canary": 0, "live": 1, "unknown": 1, "live_failed": 1}
