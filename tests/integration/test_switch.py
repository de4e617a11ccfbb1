"""Switch and rollback on the real sandbox: zero failed requests, and every fault safe."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bgkit import lock as locking
from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.errors import LockHeld
from bgkit.lb import get_provider
from bgkit.runbook import archive
from bgkit.switch import rollback, switch
from tests.conftest import REPO
from tests.integration.sandbox_support import (
    AfterSwitch,
    Load,
    break_pool,
    emulator_faults,
    rewrite_config,
    set_fault,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("provider", ["haproxy", "ovh-iplb"])
def test_switch_then_rollback_under_load_fails_no_request(
        provider: str, request: pytest.FixtureRequest) -> None:
    ready: Config = request.getfixturevalue("ready" if provider == "haproxy" else "ready_ovh")
    assert ready.lb.provider == provider
    lb = get_provider(ready)
    with Load(ready) as load:
        time.sleep(0.5)
        outcome = switch(ready, lb=lb, expected_version="2.0.0", approve=True)
        applied = time.monotonic()  # the switch returned: applied and watched
        time.sleep(0.5)
        rolling = time.monotonic()
        back = rollback(ready, lb=lb, approve=True)
        rolled = time.monotonic()
        time.sleep(0.5)
    assert outcome.ended == "switched", outcome.reason
    assert back.ended == "rolled back", back.reason
    assert load.failures == []
    assert len(load.answers) > 200
    # After each change was applied, every new request met the new pool: between the
    # switch and the rollback, only the new release answered (and some did).
    between = Counter(v for at, _, v in load.answers if applied < at < rolling)
    assert between and set(between) == {"2.0.0"}
    assert set(load.versions_after(rolled + 0.01)) == {"1.0.0"}
    assert lb.live_pool() == "blue"
    assert outcome.watch is not None and outcome.watch.ok and outcome.applied_s is not None


def test_a_failing_gate_refuses_the_switch_and_nothing_moves(ready: Config) -> None:
    set_fault(Path(ready.pools.green.hosts[0].deploy_root), health_status=503)
    pid = int((Path(ready.pools.green.hosts[0].deploy_root) / "shared/run/service.pid")
              .read_text())
    os.kill(pid, signal.SIGHUP)
    outcome = switch(ready, lb=get_provider(ready), expected_version="2.0.0", approve=True)
    assert outcome.ended == "refused" and outcome.exit_code == 1
    assert "127.0.2.1" in outcome.reason
    assert get_provider(ready).live_pool() == "blue"


def test_without_approval_the_outcome_is_not_approved(ready: Config) -> None:
    outcome = switch(ready, lb=get_provider(ready), expected_version="2.0.0", approve=False)
    assert outcome.ended == "not approved"
    assert get_provider(ready).live_pool() == "blue"


def test_a_failing_watch_switches_back_automatically_and_says_why(ready: Config) -> None:
    # 800 ms answers: slow enough for a p99 gate that a loaded test machine never
    # reaches before the switch, fast enough for HAProxy's 1 s checks to keep them UP.
    config = rewrite_config(ready.path, {"gates": {"max_p99_ms": 600}}, name="watch.toml")
    lb = AfterSwitch(get_provider(config), "green",
                     lambda: break_pool(config, "green", latency_ms=800))
    with Load(config) as load:
        outcome = switch(config, lb=lb, expected_version="2.0.0", approve=True)
    assert outcome.ended == "switched back", outcome.reason
    assert "post-switch watch failed" in outcome.reason and "p99" in outcome.reason
    assert outcome.live_pool == "blue" and get_provider(config).live_pool() == "blue"
    assert outcome.switch_back_applied_s is not None
    assert load.failures == []


def test_a_second_concurrent_switch_is_refused_by_the_lock(ready: Config) -> None:
    holder = locking.acquire(ready.lock_path, message="someone else's deploy", ttl_s=60,
                             owner="ci:pipeline-42")
    try:
        with pytest.raises(LockHeld, match="ci:pipeline-42"):
            switch(ready, lb=get_provider(ready), expected_version="2.0.0", approve=True)
    finally:
        locking.release(holder)
    assert get_provider(ready).live_pool() == "blue"


def test_a_switch_killed_mid_way_converges_when_run_again(
        ready: Config, releases: dict[str, BuildResult]) -> None:
    command = [sys.executable, "-m", "bgkit.cli", "switch", "--approve", "--config",
               str(ready.path), "--artifact", str(releases["2.0.0"].artifact)]
    running = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lb = get_provider(ready)
    deadline = time.monotonic() + 60
    while lb.live_pool() != "green" and time.monotonic() < deadline:
        time.sleep(0.02)
    running.kill()  # mid-watch: the load balancer has switched, the lock is still held
    running.wait()
    assert lb.live_pool() == "green"
    assert locking.read_lock(ready.lock_path) is not None
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already live" in again.stdout
    assert lb.live_pool() == "green"


@pytest.mark.parametrize(("faults", "words"), [
    ({"error_next": 1, "error_match": "POST */refresh"}, "HTTP 500"),
    ({"task_outcome": "error"}, "ended in 'error'"),
], ids=["api-500-mid-switch", "task-ends-in-error"])
def test_ovh_faults_mid_switch_leave_traffic_on_the_live_pool(
        ready_ovh: Config, faults: dict[str, object], words: str) -> None:
    emulator_faults(ready_ovh, faults)
    lb = get_provider(ready_ovh)
    with Load(ready_ovh) as load:
        outcome = switch(ready_ovh, lb=lb, expected_version="2.0.0", approve=True)
    assert outcome.ended == "switch failed", outcome.reason
    assert words in outcome.reason and "traffic is on blue" in outcome.reason
    assert lb.live_pool() == "blue"
    assert load.failures == []
    assert set(load.versions_after(0)) == {"1.0.0"}


def test_an_ovh_task_stuck_past_the_grace_is_unknown_and_keeps_the_lock(
        ready_ovh: Config, releases: dict[str, BuildResult]) -> None:
    from bgkit.deploy import deploy

    config = rewrite_config(ready_ovh.path, {"switch": {"timeout_s": 1, "apply_grace_s": 2}},
                            name="stuck.toml")
    emulator_faults(config, {"task_outcome": "doing"})
    with Load(config) as load:
        outcome = switch(config, lb=get_provider(config), expected_version="2.0.0",
                         approve=True)
    assert outcome.ended == "needs attention", outcome.reason
    assert outcome.live_pool == "unknown" and "task" in outcome.lb_state
    kept = locking.read_lock(config.lock_path)  # kept until the state is known
    assert kept is not None and kept.intent is not None and kept.intent["to_pool"] == "green"
    with pytest.raises(LockHeld, match="middle of a switch from blue to green"):
        deploy(config, artifact=releases["3.0.0"].artifact)
    assert load.failures == []
    assert set(load.versions_after(0)) == {"1.0.0"}


def run_step_cli(config: Config, step: str, *params: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bgkit.cli", "run", step, "--config",
                           str(config.path), *params], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_the_switch_notebook_under_papermill_needs_approve_and_records_the_watch(
        ready: Config, releases: dict[str, BuildResult]) -> None:
    from bgkit.runbook import archive

    release = ["-p", "artifact", str(releases["2.0.0"].artifact)]
    unapproved = run_step_cli(ready, "04_switch", *release)
    assert unapproved.returncode == 1
    assert "not approved: the gates passed; approve=True (-p approve true) was not given" in \
        unapproved.stderr
    assert get_provider(ready).live_pool() == "blue"

    approved = run_step_cli(ready, "04_switch", *release, "-p", "approve", "True")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert get_provider(ready).live_pool() == "green"
    path = Path(approved.stdout.split("record: ")[1].split()[0])
    records = archive.show_run(path).records
    assert records["switch"]["value"]["outcome"] == "switched"
    assert records["switch"]["value"]["applied_s"] is not None
    assert records["watch"]["value"]["ok"] is True
    assert records["watch"]["value"]["wrong_version"] == 0

    back = run_step_cli(ready, "05_rollback", "-p", "approve", "True")
    assert back.returncode == 0, back.stdout + back.stderr
    assert get_provider(ready).live_pool() == "blue"


def test_the_approval_button_is_disabled_unless_the_verdict_passed_and_switches_on_click(
        ready: Config, releases: dict[str, BuildResult]) -> None:
    from bgkit.runbook.steps import decide_step, switch_preview

    lb = get_provider(ready)
    preview = switch_preview(ready, lb=lb, artifact=str(releases["2.0.0"].artifact))
    assert preview.ok
    failing = dataclasses.replace(preview, version="")
    blocked = decide_step(ready, lb=lb, preview=failing, approve=False, interactive=True)
    assert blocked.state == "disabled" and "not pass" in blocked.status
    blocked.click()
    assert blocked.ignored_clicks == 1 and lb.live_pool() == "blue"
    button = decide_step(ready, lb=lb, preview=preview, approve=False, interactive=True)
    assert button.state == "ready" and lb.live_pool() == "blue"
    assert button.label == f"Switch to green, {releases['2.0.0'].release}"
    button.click()
    assert lb.live_pool() == "green"
    assert button.state == "done" and button.label == "switched"
    (action,) = ready.runs_dir.glob("*/*/*04_switch*.ipynb")
    assert archive.show_run(action).metadata["front_door"] == "jupyterlab"
    assert action.stem.rsplit("_", 1)[-1] in button.status
