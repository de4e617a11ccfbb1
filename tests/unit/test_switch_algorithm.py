"""The switch algorithm against the shipped fakes: fail fast, converge, never guess."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgkit import lock as locking
from bgkit import switch as switching
from bgkit.config import Config
from bgkit.errors import LockHeld
from bgkit.switch import rollback, switch
from bgkit.testing import FakeFleet


@pytest.fixture
def fleet() -> Iterator[FakeFleet]:
    with FakeFleet(blue="1.0.0", green="2.0.0") as running:
        yield running


@pytest.fixture
def config(fleet: FakeFleet, tmp_path: Path) -> Config:
    return fleet.config(tmp_path, switch={"watch_s": 2.0})


def go(config: Config, fleet: FakeFleet, version: str = "2.0.0") -> Any:
    return switch(config, lb=fleet.lb, expected_version=version, approve=True,
                  ledger=fleet.ledger)


def left_lease(config: Config, intent: dict[str, Any]) -> None:
    """A lease left by a switch killed on another machine (expired, never renewed)."""
    now = time.time()
    info = locking.LeaseInfo(
        owner="alice@laptop", message="switch", host="laptop", pid=99, acquired_at=now - 60,
        ttl_s=5, token="a" * 16, expires_at=now - 1, intent=intent,
        machine=locking.Machine("laptop", "boot-a", "pid:[9]", 7), revision="1" * 16)
    config.lock_path.write_text(json.dumps(info.to_json()))


def test_a_healthy_switch_moves_traffic_and_watches_the_whole_window(
        config: Config, fleet: FakeFleet) -> None:
    outcome = go(config, fleet)
    assert outcome.ended == "switched", outcome.reason
    assert outcome.live_pool == "green" and fleet.lb.applied == "green"
    assert outcome.watch is not None and outcome.watch.ok and outcome.watch.breach is None
    assert not config.lock_path.exists()


def test_a_new_pool_failing_after_the_flip_is_switched_back_at_the_first_failure(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.faults.on_switch = lambda pool: pool == "green" and fleet.behave(
        "green", status=503)
    outcome = go(config, fleet)
    assert outcome.ended == "switched back", outcome.reason
    assert fleet.lb.applied == "blue" and outcome.live_pool == "blue"
    watch = outcome.watch
    assert watch is not None and watch.breach is not None
    assert watch.samples < watch.planned / 4  # stopped long before the window's end
    record = outcome.to_dict()
    assert record["revert"]["fault_to_back_s"] is not None
    assert record["revert"]["first_failure_at"] <= record["revert"]["applied_at"]
    assert record["intent"] is None and not config.lock_path.exists()


def test_an_interrupted_watch_switches_back_and_re_raises(
        config: Config, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(switching, "watch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        go(config, fleet)
    assert fleet.lb.applied == "blue"
    assert fleet.lb.calls.count("switch blue") == 1


def test_a_switch_back_that_fails_needs_attention_and_says_where_traffic_is(
        config: Config, fleet: FakeFleet) -> None:
    def break_green(pool: str) -> None:
        if pool == "green":
            fleet.behave("green", status=500)
            fleet.lb.faults.refuse_switches = 1

    fleet.lb.faults.on_switch = break_green
    outcome = go(config, fleet)
    assert outcome.ended == "needs attention", outcome.reason
    assert "switching back to blue failed" in outcome.reason
    assert outcome.live_pool == "green"


def test_a_lease_lost_during_the_watch_stops_bgkit_before_it_switches_back(
        config: Config, fleet: FakeFleet) -> None:
    def steal() -> None:  # mid-watch, as by `bgkit lock release --force` and a deploy
        locking.force_release(config.lock_path)
        locking.acquire(config.lock_path, message="someone's deploy", ttl_s=60,
                        owner="ci:job-9")
        fleet.behave("green", status=500)

    fleet.lb.faults.on_switch = lambda pool: pool == "green" and threading.Timer(
        0.3, steal).start()
    outcome = go(config, fleet)
    assert outcome.ended == "needs attention"
    assert "not switching back" in outcome.reason and "ci:job-9" in outcome.reason
    assert fleet.lb.calls.count("switch blue") == 0 and fleet.lb.applied == "green"


def test_a_change_slower_than_the_timeout_is_followed_then_watched(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.faults.slow_switches = 1
    outcome = go(config, fleet)
    assert outcome.ended == "switched", outcome.reason
    assert "followed it until green was live" in outcome.converged
    assert outcome.watch is not None and outcome.watch.ok


def test_a_change_that_never_settles_is_unknown_and_the_lease_is_kept(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.faults.slow_switches = 1
    fleet.lb.faults.apply_outcome = "never"
    outcome = go(config, fleet)
    assert outcome.ended == "needs attention", outcome.reason
    assert outcome.live_pool == "unknown" and "unknown" in outcome.reason
    kept = locking.read_lock(config.lock_path)
    assert kept is not None and kept.intent is not None and kept.intent["to_pool"] == "green"
    with pytest.raises(LockHeld, match="middle of a switch from blue to green"):
        locking.acquire(config.lock_path, message="deploy", ttl_s=60)
    # Later the apply ends: the next switch converges, watching what went live.
    assert fleet.lb.applying is not None
    fleet.lb.applying.outcome = "done"
    again = go(config, fleet)
    assert again.ended == "already live", again.reason
    assert again.takeover is not None and "left it" in again.takeover["reason"]
    assert "never watched" in again.converged and again.watch is not None
    assert not config.lock_path.exists()


def test_a_staged_change_that_was_never_applied_is_undone(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.faults.stage_only = 1
    outcome = go(config, fleet)
    assert outcome.ended == "switch failed", outcome.reason
    assert "undid the staged change" in outcome.reason
    assert "discard_staged blue" in fleet.lb.calls
    assert outcome.live_pool == "blue" and fleet.lb.staged == "blue"


def test_a_rerun_after_a_kill_mid_watch_watches_and_switches_back(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.applied = fleet.lb.staged = "green"  # the killed run had flipped...
    fleet.behave("green", status=503)  # ...and then green started failing
    left_lease(config, {"action": "switch", "from_pool": "blue", "to_pool": "green",
                        "version": "2.0.0", "phase": "watching"})
    outcome = go(config, fleet)
    assert outcome.ended == "switched back", outcome.reason
    assert fleet.lb.applied == "blue"
    assert outcome.takeover is not None and outcome.takeover["owner"] == "alice@laptop"
    assert "went live unwatched" in outcome.converged


def test_a_rerun_after_a_kill_mid_watch_with_a_healthy_pool_ends_already_live(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.applied = fleet.lb.staged = "green"
    left_lease(config, {"action": "switch", "from_pool": "blue", "to_pool": "green",
                        "version": "2.0.0", "phase": "watching"})
    outcome = go(config, fleet)
    assert outcome.ended == "already live", outcome.reason
    assert outcome.watch is not None and outcome.watch.ok
    assert outcome.to_dict()["takeover"]["intent"]["phase"] == "watching"


def test_a_rerun_undoes_a_change_the_killed_run_only_staged_then_switches(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.staged = "green"  # staged by the killed run, never applied
    left_lease(config, {"action": "switch", "from_pool": "blue", "to_pool": "green",
                        "version": "2.0.0", "phase": "switching"})
    outcome = go(config, fleet)
    assert "undid it" in outcome.converged
    assert fleet.lb.calls.index("discard_staged blue") < fleet.lb.calls.index("switch green")
    assert outcome.ended == "switched", outcome.reason


def test_a_rerun_finishes_a_switch_back_the_killed_run_had_started(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.applied = fleet.lb.staged = "green"
    left_lease(config, {"action": "switch", "from_pool": "blue", "to_pool": "green",
                        "version": "2.0.0", "phase": "switching back",
                        "reason": "the post-switch watch failed: 3 requests failed"})
    outcome = go(config, fleet)
    assert outcome.ended == "switched back" and fleet.lb.applied == "blue"
    assert "finished that switch-back" in outcome.converged


def test_already_live_is_a_verdict_on_a_fresh_watch(config: Config, fleet: FakeFleet) -> None:
    fleet.lb.applied = fleet.lb.staged = "green"
    fleet.behave("blue", version="1.0.0")
    fleet.behave("green", status=500)
    outcome = go(config, fleet)
    assert outcome.ended == "switched back", outcome.reason
    assert "serves 2.0.0 but fails" in outcome.reason and fleet.lb.applied == "blue"


def test_already_live_and_failing_with_no_healthy_pool_to_go_back_to_needs_attention(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.applied = fleet.lb.staged = "green"
    fleet.behave("green", status=500)
    fleet.behave("blue", status=500)
    outcome = go(config, fleet)
    assert outcome.ended == "needs attention" and outcome.live_pool == "green"
    assert "not healthy enough to switch back" in outcome.reason
    assert not config.lock_path.exists()  # the state is known: nothing to converge


def test_an_unreadable_load_balancer_after_a_failed_change_is_unknown_never_a_guess(
        config: Config, fleet: FakeFleet) -> None:
    def fail_then_blind(pool: str) -> None:
        fleet.lb.faults.unreadable = 100

    fleet.lb.faults.stage_only = 1
    fleet.lb.faults.on_switch = fail_then_blind
    fleet.lb.faults.unreadable = 0
    original = fleet.lb.switch

    def switch_then_blind(pool: Any, *, timeout_s: float) -> Any:
        try:
            return original(pool, timeout_s=timeout_s)
        finally:
            fleet.lb.faults.unreadable = 100

    fleet.lb.switch = switch_then_blind  # type: ignore[method-assign]
    outcome = go(config, fleet)
    assert outcome.ended == "needs attention" and outcome.live_pool == "unknown"
    assert "cannot be read" in outcome.reason


def test_a_rollback_killed_after_its_flip_is_not_rolled_back_twice(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.applied = fleet.lb.staged = "blue"
    left_lease(config, {"action": "rollback", "from_pool": "green", "to_pool": "blue",
                        "version": "1.0.0", "phase": "watching"})
    outcome = rollback(config, lb=fleet.lb, approve=True, ledger=fleet.ledger)
    assert outcome.ended == "rolled back", outcome.reason
    assert fleet.lb.applied == "blue" and "switch green" not in fleet.lb.calls


# --- what went live, and rollback only to that -------------------------------------------


def test_a_switch_records_what_went_live_and_when_traffic_left(
        config: Config, fleet: FakeFleet) -> None:
    outcome = go(config, fleet)
    assert outcome.ended == "switched" and outcome.release == "fake-2.0.0-0000000"
    green, blue = fleet.ledger.last_live["green"], fleet.ledger.last_live["blue"]
    assert green.release == "fake-2.0.0-0000000" and green.live
    assert blue.release == "fake-1.0.0-0000000" and not blue.live
    recorded = outcome.to_dict()["recorded"]
    assert recorded["went_live"]["pool"] == "green"
    assert recorded["went_live"]["release"] == "fake-2.0.0-0000000"
    assert recorded["left_live"] == {"pool": "blue", "at": blue.left_at}


def test_rollback_goes_back_to_the_release_that_was_live_and_names_it(
        config: Config, fleet: FakeFleet) -> None:
    assert go(config, fleet).ended == "switched"
    back = rollback(config, lb=fleet.lb, approve=True, ledger=fleet.ledger)
    assert back.ended == "rolled back", back.reason
    assert back.release == "fake-1.0.0-0000000" and fleet.lb.applied == "blue"
    assert back.to_dict()["release"] == "fake-1.0.0-0000000"
    assert fleet.ledger.last_live["blue"].live and not fleet.ledger.last_live["green"].live


def test_rollback_refuses_a_release_deployed_on_the_previous_pool_since_and_names_the_fix(
        config: Config, fleet: FakeFleet) -> None:
    assert go(config, fleet).ended == "switched"
    fleet.behave("blue", version="3.0.0")  # deployed on blue after it left live
    back = rollback(config, lb=fleet.lb, approve=True, ledger=fleet.ledger)
    assert back.ended == "refused" and back.exit_code == 1 and fleet.lb.applied == "green"
    assert back.reason.startswith("refusing to roll back to the blue pool: blue now serves "
                                  "3.0.0, which never went live")
    assert "redeploy 1.0.0 (kept on the hosts) with `bgkit deploy --release " \
        "fake-1.0.0-0000000` — no upload needed" in back.reason
    fleet.behave("blue", version="1.0.0", build="dirty1")  # the same version, rebuilt
    again = rollback(config, lb=fleet.lb, approve=True, ledger=fleet.ledger)
    assert again.ended == "refused" and "serves fake-1.0.0-dirty1" in again.reason


def test_a_switch_back_records_that_traffic_left_the_failing_pool_not_that_it_went_live(
        config: Config, fleet: FakeFleet) -> None:
    fleet.lb.faults.on_switch = lambda pool: pool == "green" and fleet.behave(
        "green", status=503)
    outcome = go(config, fleet)
    assert outcome.ended == "switched back"
    green = fleet.ledger.last_live["green"]
    assert green.release == "" and not green.live  # it left, never went live
    assert fleet.ledger.last_live["blue"].live
    fleet.behave("green", status=200)
    back = rollback(config, lb=fleet.lb, approve=True, ledger=fleet.ledger)
    assert back.ended == "refused" and "no record" in back.reason


def test_another_build_of_the_version_fails_the_release_gate_and_nothing_moves(
        config: Config, fleet: FakeFleet) -> None:
    outcome = switch(config, lb=fleet.lb, expected_version="2.0.0", approve=True,
                     release="fake-2.0.0-1a2b3c4", ledger=fleet.ledger)
    assert outcome.ended == "refused" and fleet.lb.applied == "blue"
    assert "fake-2.0.0-0000000 (another build of 2.0.0)" in outcome.reason
    fleet.behave("green", build="1a2b3c4")
    went = switch(config, lb=fleet.lb, expected_version="2.0.0", approve=True,
                  release="fake-2.0.0-1a2b3c4", ledger=fleet.ledger)
    assert went.ended == "switched", went.reason


def test_already_live_means_the_release_itself_is_live_not_its_version(
        config: Config, fleet: FakeFleet) -> None:
    fleet.behave("blue", version="2.0.0", build="old")  # live: another build of 2.0.0
    outcome = switch(config, lb=fleet.lb, expected_version="2.0.0", approve=True,
                     release="fake-2.0.0-0000000", ledger=fleet.ledger)
    assert outcome.ended == "switched" and fleet.lb.applied == "green", outcome.reason
    again = switch(config, lb=fleet.lb, expected_version="2.0.0", approve=True,
                   release="fake-2.0.0-0000000", ledger=fleet.ledger)
    assert again.ended == "already live", again.reason
