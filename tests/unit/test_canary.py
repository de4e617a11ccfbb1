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


# --- the canary inside the switch algorithm ----------------------------------------------

def canary_config(fleet: FakeFleet, tmp_path: Path, **switch: object) -> Config:
    return fleet.config(tmp_path, switch={"watch_rate_per_s": 400, "canary_hold_s": 0.6,
                                          **switch})


def test_a_switch_holds_each_canary_step_then_moves_everything(
        fleet: FakeFleet, tmp_path: Path) -> None:
    from bgkit.switch import switch

    config = canary_config(fleet, tmp_path)
    outcome = switch(config, lb=fleet.lb,
                     ledger=fleet.ledger, expected_version="2.0.0", approve=True,
                     canary=[10, 40])
    assert outcome.ended == "switched", outcome.reason
    splits = [call for call in fleet.lb.calls if call.startswith(("split", "switch"))]
    assert splits == ["split green 10", "split green 40", "switch green", "split green 0"]
    steps = outcome.to_dict()["canary"]
    assert [step["percent"] for step in steps] == [10, 40]
    assert all(step["ok"] and step["errors"] == 0 for step in steps)
    assert abs(steps[1]["share"] - 40) < 12 and fleet.lb.canary == 0


def test_the_configured_steps_are_the_default_and_an_empty_list_means_none(
        fleet: FakeFleet, tmp_path: Path) -> None:
    from bgkit.switch import switch

    config = canary_config(fleet, tmp_path, canary=[{"percent": 20, "hold_s": 0.5}])
    went = switch(config, lb=fleet.lb, ledger=fleet.ledger, expected_version="2.0.0", approve=True)
    assert [step["percent"] for step in went.to_dict()["canary"]] == [20]
    assert went.to_dict()["canary"][0]["hold_s"] == 0.5
    fleet.lb.calls.clear()
    back = switch(config, lb=fleet.lb,
                  ledger=fleet.ledger, expected_version="1.0.0", approve=True, canary=[])
    assert back.ended == "switched", back.reason
    assert not [call for call in fleet.lb.calls if call.startswith("split")]


def test_a_canary_pool_failing_during_a_step_ends_the_split_and_changes_nothing_else(
        fleet: FakeFleet, tmp_path: Path) -> None:
    from bgkit.switch import switch

    real_split = fleet.lb.split

    def split_then_fail(pool: str, percent: int, *, timeout_s: float) -> None:
        real_split(pool, percent, timeout_s=timeout_s)  # type: ignore[arg-type]
        if percent == 40:
            fleet.behave("green", status=500)

    fleet.lb.split = split_then_fail  # type: ignore[method-assign]
    config = canary_config(fleet, tmp_path)
    outcome = switch(config, lb=fleet.lb,
                     ledger=fleet.ledger, expected_version="2.0.0", approve=True,
                     canary=[10, 40])
    assert outcome.ended == "canary failed" and outcome.exit_code == 1
    assert "the canary of 40% to green failed" in outcome.reason
    assert "all traffic is on blue again" in outcome.reason
    assert fleet.lb.applied == "blue" and fleet.lb.canary == 0
    assert "switch green" not in fleet.lb.calls
    steps = outcome.to_dict()["canary"]
    assert [step["ok"] for step in steps] == [True, False]
    assert not config.lock_path.exists()


def test_a_provider_that_cannot_split_refuses_the_canary_before_the_hook_and_the_lock(
        fleet: FakeFleet, tmp_path: Path) -> None:
    """Checked before anything runs: a pre_switch hook (a migration) never ran for a
    canary the load balancer can never do, and the refusal is a usage error (exit 2)."""
    import sys

    from bgkit.config import HooksConfig
    from bgkit.errors import UsageError
    from bgkit.switch import switch

    marker = tmp_path / "migrated"
    config = canary_config(fleet, tmp_path).model_copy(update={
        "hooks": HooksConfig.model_validate({"pre_switch": [
            sys.executable, "-c", f"open({str(marker)!r}, 'w').write('v7')"]})})
    fleet.lb.cannot_split = "ovh-iplb cannot send a share of the traffic to the idle pool"
    with pytest.raises(UsageError, match=r"a canary was asked for \(5%.*ovh-iplb cannot"):
        switch(config, lb=fleet.lb, ledger=fleet.ledger, expected_version="2.0.0",
               approve=True, canary=[5])
    assert not marker.exists() and fleet.lb.applied == "blue"
    assert not any(call.startswith("split") for call in fleet.lb.calls)
    assert not config.lock_path.exists()
    plain = switch(config, lb=fleet.lb, ledger=fleet.ledger, expected_version="2.0.0",
                   approve=True, canary=[])
    assert plain.ended == "switched" and marker.exists()


def test_a_provider_refusing_a_split_it_said_it_could_do_ends_the_run_refused(
        fleet: FakeFleet, tmp_path: Path) -> None:
    from bgkit.errors import SplitUnsupported
    from bgkit.switch import switch

    def cannot(pool: str, percent: int, *, timeout_s: float) -> None:
        if percent:
            raise SplitUnsupported("fake cannot split after all")

    fleet.lb.split = cannot  # type: ignore[method-assign]
    outcome = switch(canary_config(fleet, tmp_path), lb=fleet.lb, ledger=fleet.ledger,
                     expected_version="2.0.0", approve=True, canary=[5])
    assert outcome.ended == "refused" and fleet.lb.applied == "blue"
    assert "a canary was asked for, but fake cannot split after all" in outcome.reason
    assert "all traffic is on blue again" in outcome.reason


def test_a_load_balancer_unreadable_after_the_canary_ends_the_split(
        fleet: FakeFleet, tmp_path: Path) -> None:
    """Refused right before the full switch (move's last read): the split the canary
    made is ended too, and the refusal does not claim that nothing was changed."""
    from bgkit.errors import LoadBalancerError
    from bgkit.switch import switch

    real = fleet.lb.live_pool

    def live_pool() -> str:
        if fleet.lb.canary == 40:
            raise LoadBalancerError("fake: read timed out")
        return real()

    fleet.lb.live_pool = live_pool  # type: ignore[method-assign,assignment]
    config = canary_config(fleet, tmp_path)
    outcome = switch(config, lb=fleet.lb, ledger=fleet.ledger, expected_version="2.0.0",
                     approve=True, canary=[10, 40])
    assert outcome.ended == "refused", outcome.reason
    assert fleet.lb.canary == 0 and fleet.lb.applied == "blue"
    assert "nothing was changed" not in outcome.reason
    assert "the canary was ended" in outcome.reason
    assert not config.lock_path.exists()


def test_a_lease_lost_before_the_full_switch_ends_the_split(
        fleet: FakeFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit import lock as locking
    from bgkit.errors import LeaseLost
    from bgkit.switch import switch

    real = locking.Lease.record_intent

    def record_intent(self: locking.Lease, intent: dict[str, object] | None) -> None:
        if intent and intent.get("phase") == "switching":
            raise LeaseLost("fake: taken over")
        real(self, intent)

    monkeypatch.setattr(locking.Lease, "record_intent", record_intent)
    outcome = switch(canary_config(fleet, tmp_path), lb=fleet.lb, ledger=fleet.ledger,
                     expected_version="2.0.0", approve=True, canary=[10, 40])
    assert outcome.ended == "refused" and "fake: taken over" in outcome.reason
    assert fleet.lb.canary == 0 and fleet.lb.applied == "blue"


def test_a_lease_lost_between_canary_steps_is_an_outcome_not_an_exception(
        fleet: FakeFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit import lock as locking
    from bgkit.errors import LeaseLost
    from bgkit.switch import switch

    real = locking.Lease.record_intent
    lost = {"yes": False}

    def record_intent(self: locking.Lease, intent: dict[str, object] | None) -> None:
        if lost["yes"] or (intent and intent.get("percent") == 40):
            lost["yes"] = True
            raise LeaseLost("fake: taken over")
        real(self, intent)

    monkeypatch.setattr(locking.Lease, "record_intent", record_intent)
    outcome = switch(canary_config(fleet, tmp_path), lb=fleet.lb, ledger=fleet.ledger,
                     expected_version="2.0.0", approve=True, canary=[10, 40])
    assert outcome.ended == "canary failed" and "fake: taken over" in outcome.reason
    assert fleet.lb.canary == 0 and fleet.lb.applied == "blue"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_inside_the_providers_split_ends_the_split(
        fleet: FakeFleet, tmp_path: Path, interrupt: type[BaseException]) -> None:
    from bgkit.switch import switch

    real = fleet.lb.split

    def split(pool: str, percent: int, *, timeout_s: float) -> None:
        real(pool, percent, timeout_s=timeout_s)
        if percent == 40:
            raise interrupt  # Ctrl-C / SIGTERM while the provider reads the split back

    fleet.lb.split = split  # type: ignore[method-assign]
    config = canary_config(fleet, tmp_path)
    with pytest.raises(interrupt):
        switch(config, lb=fleet.lb, ledger=fleet.ledger, expected_version="2.0.0",
               approve=True, canary=[10, 40])
    assert fleet.lb.canary == 0 and fleet.lb.applied == "blue"


@pytest.mark.parametrize("where", ["the next step's progress line", "the next step's lease write",
                                   "a held step's progress line"])
def test_an_interrupt_between_canary_steps_ends_the_split(
        fleet: FakeFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    from bgkit import lock as locking
    from bgkit.switch import switch

    def on_step(text: str) -> None:
        if (where == "the next step's progress line" and text.startswith("canary: 40%")) or \
                (where == "a held step's progress line" and text.startswith("canary 10%")):
            raise KeyboardInterrupt

    real = locking.Lease.record_intent

    def record_intent(self: locking.Lease, intent: dict[str, object] | None) -> None:
        if where == "the next step's lease write" and intent and intent.get("percent") == 40:
            raise KeyboardInterrupt
        real(self, intent)

    monkeypatch.setattr(locking.Lease, "record_intent", record_intent)
    with pytest.raises(KeyboardInterrupt):
        switch(canary_config(fleet, tmp_path), lb=fleet.lb, ledger=fleet.ledger,
               expected_version="2.0.0", approve=True, canary=[10, 40], on_step=on_step)
    assert fleet.lb.canary == 0 and fleet.lb.applied == "blue"


@pytest.mark.parametrize("action", ["switch", "rollback"])
def test_a_split_no_lease_speaks_for_is_ended_before_anything_else(
        fleet: FakeFleet, tmp_path: Path, action: str) -> None:
    """A split left by a run that ended without ending it (no intent in any lease):
    every switch and rollback starts by ending it, and says so."""
    from bgkit.switch import rollback, switch

    config = canary_config(fleet, tmp_path)
    if action == "rollback":
        assert switch(config, lb=fleet.lb, ledger=fleet.ledger, expected_version="2.0.0",
                      approve=True, canary=[]).ended == "switched"
        fleet.lb.split("blue", 40, timeout_s=1)
        outcome = rollback(config, lb=fleet.lb, ledger=fleet.ledger, approve=False)
    else:
        fleet.lb.split("green", 40, timeout_s=1)
        outcome = switch(config, lb=fleet.lb, ledger=fleet.ledger, expected_version="2.0.0",
                         approve=False, canary=[])
    assert fleet.lb.canary == 0
    assert "was left in place by a run that did not end it; bgkit ended it" in \
        outcome.converged
    assert outcome.ended == "not approved", outcome.reason


def test_a_rerun_after_a_kill_mid_canary_ends_the_split_first(
        fleet: FakeFleet, tmp_path: Path) -> None:
    from bgkit.switch import switch
    from tests.unit.test_switch_algorithm import left_lease

    config = canary_config(fleet, tmp_path)
    fleet.lb.split("green", 25, timeout_s=1)  # the killed run's canary, still in place
    left_lease(config, {"action": "switch", "from_pool": "blue", "to_pool": "green",
                        "version": "2.0.0", "phase": "canary", "percent": 25})
    outcome = switch(config, lb=fleet.lb,
                     ledger=fleet.ledger, expected_version="2.0.0", approve=False)
    assert "left a canary of 25% of requests to green; bgkit ended it" in outcome.converged
    assert fleet.lb.canary == 0 and outcome.ended == "not approved"
