"""A switch that fails fast and converges, under load through the sandbox's public address.

Each test reproduces one case of issue 10 on a real sandbox (two hosts per pool, real
HAProxy, and the OVH API emulator in front of it for ovh-iplb), while a load generator
sends requests through the public address.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bgkit import lock as locking
from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.errors import LoadBalancerError, LockHeld
from bgkit.lb import get_provider
from bgkit.switch import switch
from tests.conftest import REPO
from tests.integration.sandbox_support import (
    AfterSwitch,
    Load,
    break_pool,
    emulator_faults,
    rewrite_config,
    wait_for,
)

pytestmark = pytest.mark.slow


def cli_switch(config: Config, release: BuildResult) -> list[str]:
    return [sys.executable, "-m", "bgkit.cli", "switch", "--approve", "--config",
            str(config.path), "--artifact", str(release.artifact)]


def until(running: subprocess.Popen[str], check: Callable[[], bool], what: str) -> None:
    """Wait for ``check`` while the switch runs; if it ends first, fail with its output."""
    def seen() -> bool:
        if running.poll() is not None:
            out, err = running.communicate()
            raise AssertionError(f"the switch ended before {what}: {out}{err}")
        return check()

    wait_for(seen, timeout_s=60, what=what)


READY = {"haproxy": "ready", "ovh-iplb": "ready_ovh", "ovh-cloud-lb": "ready_cloud"}


@pytest.mark.parametrize("provider", list(READY))
def test_a_new_pool_failing_after_the_flip_is_switched_back_at_the_first_breach(
        provider: str, request: pytest.FixtureRequest) -> None:
    """Case 1: the new pool answers 500 a second after the flip, in a 10 s watch."""
    ready: Config = request.getfixturevalue(READY[provider])
    config = rewrite_config(ready.path, {"switch": {"watch_s": 10}}, name="fail-fast.toml")
    lb = AfterSwitch(get_provider(config), "green",
                     lambda: break_pool(config, "green", health_status=500), delay_s=1.0)
    with Load(config, path=config.service.health_path) as load:
        outcome = switch(config, lb=lb, expected_version="2.0.0", approve=True)
        back = time.monotonic()
        time.sleep(0.5)
    assert outcome.ended == "switched back", outcome.reason
    watch = outcome.watch
    planned = config.switch.watch_s * config.switch.watch_rate_per_s
    # Judged while sampling: it stopped at the breach, about a second into ten.
    assert watch is not None and watch.samples < planned / 3, watch.to_dict()
    assert watch.breach is not None
    assert outcome.revert is not None and outcome.revert.fault_to_back_s is not None
    assert get_provider(config).live_pool() == "blue"
    assert load.failed_after(back) == 0
    assert lb.fired_at is not None  # every failure came with the fault, none before it
    assert load.failed_after(0) == load.failed_after(lb.fired_at - 0.1)
    print(f"\n{provider}: {load.failed_after(0)} failed requests of {len(load.answers)}; "
          f"revert {outcome.revert.to_dict()}")


def test_a_rerun_after_a_kill_right_after_the_flip_finishes_the_watch_and_switches_back(
        ready: Config, releases: dict[str, BuildResult]) -> None:
    """Case 2: kill -9 after the flip, then the new pool fails: the re-run must not say
    "already live" on a failing pool."""
    command = cli_switch(ready, releases["2.0.0"])
    provider = get_provider(ready)
    with Load(ready) as load:
        running = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        until(running, lambda: provider.map_file.read_text() == "live green\n",  # type: ignore[attr-defined]
              "the switch to green")
        running.kill()  # mid-watch: traffic on green, the lease left with its intent
        running.communicate()
        break_pool(ready, "green", health_status=500)
        wait_for(lambda: not any(s.healthy for s in provider.backend_health()
                                 if s.pool == "green"), what="green DOWN in HAProxy")
        again = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                               timeout=180)
        back = time.monotonic()
        time.sleep(0.3)
    said = again.stdout + again.stderr
    assert again.returncode == 1, said
    assert "switch: switched back" in again.stdout, said
    assert "took over the deployment lock" in said and "never watched" in said
    assert provider.live_pool() == "blue"
    assert load.failed_after(back) == 0
    assert locking.read_lock(ready.lock_path) is None


def _staged(config: Config) -> bool:
    try:
        get_provider(config).live_pool()
    except LoadBalancerError as error:
        return "staged but not applied" in str(error)
    return False


def test_an_ovh_switch_killed_with_its_put_in_flight_is_undone_on_rerun(
        ready_ovh: Config, releases: dict[str, BuildResult]) -> None:
    """Case 4: the PUT staged green; the switch died before refreshing. The re-run takes
    over the lease, finds only that staged change, undoes it, then switches afresh."""
    emulator_faults(ready_ovh, {"slow_answer_s": 30, "slow_match": "PUT */http/frontend/*"})
    command = cli_switch(ready_ovh, releases["2.0.0"])
    with Load(ready_ovh) as load:
        running = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        until(running, lambda: _staged(ready_ovh), "green staged by the PUT")
        running.kill()
        running.communicate()
        emulator_faults(ready_ovh, {"slow_answer_s": 0})
        again = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                               timeout=180)
    said = again.stdout + again.stderr
    assert again.returncode == 0, said
    assert "staged green without applying it" in said and "undid it" in said
    assert "switch: switched" in again.stdout
    assert get_provider(ready_ovh).live_pool() == "green"
    assert load.failures == []


def test_an_ovh_refresh_slower_than_the_timeout_is_followed_then_watched(
        ready_ovh: Config) -> None:
    """Case 5: a refresh of 3 s with [switch].timeout_s = 1 is followed, then watched."""
    config = rewrite_config(ready_ovh.path, {"switch": {"timeout_s": 1}}, name="slow.toml")
    emulator_faults(config, {"refresh_delay_s": 3})
    with Load(config) as load:
        outcome = switch(config, lb=get_provider(config), expected_version="2.0.0",
                         approve=True)
    assert outcome.ended == "switched", outcome.reason
    assert "followed it until green was live" in outcome.converged
    assert outcome.watch is not None and outcome.watch.ok
    assert get_provider(config).live_pool() == "green"
    assert load.failures == []
    assert locking.read_lock(config.lock_path) is None


def test_a_deploy_during_a_watch_longer_than_the_ttl_is_refused(
        ready: Config, releases: dict[str, BuildResult]) -> None:
    """Case 7: ttl_s = 1 and a 4 s watch: the lease is renewed, so a deploy during the
    watch is refused and cannot restart the pool a switch-back would go to."""
    from bgkit.deploy import deploy

    config = rewrite_config(ready.path, {"lock": {"ttl_s": 1}, "switch": {"watch_s": 4}},
                            name="short-ttl.toml")
    ended: dict[str, object] = {}
    provider = get_provider(config)
    with Load(config) as load:
        switching = threading.Thread(target=lambda: ended.update(outcome=switch(
            config, lb=provider, expected_version="2.0.0", approve=True)))
        switching.start()
        wait_for(lambda: provider.live_pool() == "green", timeout_s=60, what="the flip")
        time.sleep(1.5)  # past the TTL: only the renewals keep the lease
        with pytest.raises(LockHeld, match="for 'switch'"):
            deploy(config, artifact=releases["3.0.0"].artifact)
        switching.join(timeout=60)
    outcome = ended["outcome"]
    assert getattr(outcome, "ended", None) == "switched", getattr(outcome, "reason", None)
    assert load.failures == []
    assert not list(Path(config.lock_path).parent.glob("bgkit.lock.stale-*"))
