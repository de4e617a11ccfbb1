"""One lock and one archive for several machines, through a real S3 store and a real fleet.

Each "machine" is a bgkit process with its own hostname (a UTS namespace), HOME (so its
own local copy of the archive) and working directory; they share only the bucket (and,
for the file backend, the lock file, as a shared file system would).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from bgkit import lock as locking
from bgkit.artifact import BuildResult
from bgkit.config import Config, load_config
from bgkit.errors import LockHeld
from bgkit.lb import get_provider
from bgkit.sandbox import sandbox_down, sandbox_up, seaweed
from tests.integration.s3_support import (
    Workstation,
    admin,
    needs_machines,
    shared_tables,
    with_tables,
)
from tests.integration.sandbox_support import rewrite_config, sandbox_ports, wait_for

pytestmark = pytest.mark.slow


def on_s3(ready: Config, server: seaweed.S3Server, bucket: str, *, name: str,
          **changes: dict[str, object]) -> Config:
    """The ready fleet's bgkit.toml with its lock and archive in ``bucket``."""
    config = with_tables(ready.path, shared_tables(server, bucket), name=name)
    return rewrite_config(config.path, changes, name=name) if changes else config


def switch_args(config: Config, releases: dict[str, BuildResult]) -> tuple[str, ...]:
    return ("switch", "--approve", "--config", str(config.path),
            "--artifact", str(releases["2.0.0"].artifact))


@pytest.mark.parametrize("backend", ["s3", "file"])
def test_two_machines_racing_a_switch_one_acts_the_other_is_told_who_holds_the_lock(
        backend: str, ready: Config, releases: dict[str, BuildResult],
        s3_server: seaweed.S3Server, s3_bucket: str, tmp_path: Path) -> None:
    needs_machines()
    config = on_s3(ready, s3_server, s3_bucket, name="race.toml") if backend == "s3" \
        else ready
    machines = [Workstation(tmp_path, "machine-a"), Workstation(tmp_path, "machine-b")]
    running = [machine.start(*switch_args(config, releases)) for machine in machines]
    ended = [(*process.communicate(timeout=240), process.returncode) for process in running]
    codes = [code for _, _, code in ended]
    assert sorted(codes) == [0, 1], ended
    winner = machines[codes.index(0)]
    out, err, _ = ended[codes.index(1)]
    assert "held by" in err and f"on {winner.name})" in err, out + err
    assert "switch: switched" in ended[codes.index(0)][0]
    assert get_provider(ready).live_pool() == "green"
    assert locking.read_lock(locking.store_for(config)) is None


def test_a_watch_longer_than_the_ttl_keeps_its_lease_and_a_second_switch_is_refused(
        ready: Config, releases: dict[str, BuildResult], s3_server: seaweed.S3Server,
        s3_bucket: str, tmp_path: Path) -> None:
    needs_machines()
    # A watch of ten TTLs: the second switch (a new process, seconds to start on a busy
    # machine) certainly comes while it runs.
    config = on_s3(ready, s3_server, s3_bucket, name="long-watch.toml",
                   lock={"ttl_s": 2}, switch={"watch_s": 20})
    store = locking.store_for(config)
    first, second = Workstation(tmp_path, "machine-a"), Workstation(tmp_path, "machine-b")
    holder = first.start(*switch_args(config, releases))

    def watching() -> locking.LeaseInfo | None:
        info = locking.read_lock(store)
        return info if info and (info.intent or {}).get("phase") == "watching" else None

    began = wait_for(watching, timeout_s=120, what="the switch to watch")
    time.sleep(3.5)  # past the TTL: only renewals keep it
    during = locking.read_lock(store)
    assert during is not None and during.token == began.token
    assert during.expires_at > began.expires_at and during.stale() is None
    refused = second.run(*switch_args(config, releases), timeout_s=120)
    assert holder.poll() is None, "the holder is still watching"
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "held by" in refused.stderr and "on machine-a)" in refused.stderr
    out, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, out + err
    assert "switch: switched" in out
    assert get_provider(ready).live_pool() == "green"


def phase_of(store: locking.LeaseStore) -> str | None:
    """The phase the lease's intent names now (None: no lease, or no intent)."""
    info = locking.read_lock(store)
    return (info.intent or {}).get("phase") if info is not None else None


def test_after_kill_9_of_the_holder_its_lease_expires_and_the_next_switch_takes_over(
        ready: Config, releases: dict[str, BuildResult], s3_server: seaweed.S3Server,
        s3_bucket: str, tmp_path: Path) -> None:
    needs_machines()
    config = on_s3(ready, s3_server, s3_bucket, name="killed.toml",
                   lock={"ttl_s": 4}, switch={"watch_s": 6})
    store = locking.store_for(config)
    first, second = Workstation(tmp_path, "machine-a"), Workstation(tmp_path, "machine-b")
    holder = first.start(*switch_args(config, releases))
    lb = get_provider(ready)
    wait_for(lambda: lb.live_pool() == "green", timeout_s=120, what="the switch")
    wait_for(lambda: phase_of(store) == "watching", timeout_s=30, what="the holder's watch")
    holder.kill()  # SIGKILL, mid-watch: nothing releases the lease
    holder.communicate()
    with pytest.raises(LockHeld, match="on machine-a"):  # not judged by a pid: still valid
        locking.acquire(store, message="too early", ttl_s=4)
    left = locking.read_lock(store)
    assert left is not None and (left.intent or {}).get("phase") == "watching"
    wait_for(lambda: (info := locking.read_lock(store)) and info.stale(), timeout_s=10,
             what="the lease to expire")
    done = second.run(*switch_args(config, releases), timeout_s=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "took over the deployment lock" in done.stderr and "machine-a" in done.stderr
    assert "expired" in done.stderr
    assert get_provider(ready).live_pool() == "green"
    assert locking.read_lock(store) is None


@pytest.mark.parametrize("how", ["deleted", "overwritten"])
def test_a_holder_whose_lease_was_taken_away_does_not_flip_the_load_balancer(
        how: str, ready: Config, releases: dict[str, BuildResult],
        s3_server: seaweed.S3Server, s3_bucket: str, tmp_path: Path) -> None:
    needs_machines()
    # Sampling long enough (about 8 s) to take the lease away before the switch.
    config = on_s3(ready, s3_server, s3_bucket, name="taken.toml",
                   switch={"samples_per_host": 80, "sample_rate_per_s": 50})
    store = locking.store_for(config)
    holder = Workstation(tmp_path, "machine-a").start(*switch_args(config, releases))
    held = wait_for(lambda: locking.read_lock(store), timeout_s=60, what="the lock")
    client = admin(s3_server)
    key = "locks/app.lock"
    if how == "deleted":
        client.delete_object(Bucket=s3_bucket, Key=key)
    else:
        forged = {**held.to_json(), "owner": "root@machine-c", "host": "machine-c",
                  "token": "c" * 16, "revision": "", "expires_at": time.time() + 300}
        client.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(forged).encode())
    out, err = holder.communicate(timeout=180)
    assert holder.returncode == 1, out + err
    assert "no longer ours" in out + err and "nothing was changed" in out + err
    assert get_provider(ready).live_pool() == "blue"


def test_sandbox_shared_s3_gives_two_working_directories_one_lock_and_one_archive(
        tmp_path: Path, aws_isolated: None) -> None:
    needs_machines()
    state = tmp_path / "sbx"
    info = sandbox_up(state, hosts=1, shared="s3", **sandbox_ports(hosts=1))
    try:
        assert info.s3_endpoint is not None
        config = load_config(info.config_file)
        assert config.lock_url == f"s3://bgkit-sandbox/locks/{config.app.name}.lock"
        assert config.runs_url == "s3://bgkit-sandbox/runs"
        store = locking.store_for(config)
        ops, ci = Workstation(tmp_path, "laptop"), Workstation(tmp_path, "ci-runner")
        first = ops.start("release", "--approve", "--version", "1.0.0",
                          "--config", str(info.config_file))
        holder = wait_for(lambda: locking.read_lock(store), timeout_s=240,
                          what="the first release to take the lock")
        assert holder.host == "laptop"
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, out + err
        second = ci.run("release", "--approve", "--version", "2.0.0",
                        "--config", str(info.config_file), timeout_s=600)
        assert second.returncode == 0, second.stdout + second.stderr
        reviewer = Workstation(tmp_path, "reviewer")
        listed = reviewer.run("runs", "list", "--config", str(info.config_file))
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("succeeded") == 8
        assert "root@laptop" in listed.stdout and "root@ci-runner" in listed.stdout
        verified = reviewer.run("runs", "verify", "--config", str(info.config_file))
        assert "in order; 8 indexed run(s), 8 notebook(s)" in verified.stdout, \
            verified.stdout + verified.stderr
        assert "retained 1 day(s)" in verified.stdout
        switch_run = next(found.group(1) for line in listed.stdout.splitlines()
                          if "root@ci-runner" in line and
                          (found := re.search(r"04_switch\W+([0-9a-f]{12})", line)))
        shown = reviewer.run("runs", "show", switch_run, "--config", str(info.config_file))
        assert "outcome       succeeded" in shown.stdout, shown.stdout + shown.stderr
        page = reviewer.run("runs", "html", switch_run, "--config", str(info.config_file),
                            "--output", str(tmp_path / "switch.html"))
        assert page.returncode == 0 and (tmp_path / "switch.html").stat().st_size > 0
        assert reviewer.run("lock", "status", "--config",
                            str(info.config_file)).stdout.startswith("free: nobody holds")
    finally:
        stopped = sandbox_down(state)
        assert "seaweedfs (S3)" in {process.role for process in stopped}


def test_the_lock_commands_read_and_release_an_s3_lease(
        ready: Config, s3_server: seaweed.S3Server, s3_bucket: str, tmp_path: Path) -> None:
    config = on_s3(ready, s3_server, s3_bucket, name="commands.toml")
    store = locking.store_for(config)
    held = locking.acquire(store, message="deploy 9.9.9", ttl_s=60, owner="ci:job-1")
    ops = Workstation(tmp_path, "ops")
    base = [*ops.argv()[6:]]  # python -m bgkit.cli, without a hostname of its own
    status = subprocess.run([*base, "lock", "status", "--config", str(config.path)],
                            env=ops.env, capture_output=True, text=True, check=False)
    assert f"s3://{s3_bucket}/locks/app.lock: held by ci:job-1" in status.stdout
    refused = subprocess.run([*base, "lock", "release", "--config", str(config.path)],
                             env=ops.env, capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "--force" in refused.stderr
    forced = subprocess.run([*base, "lock", "release", "--force", "--config",
                             str(config.path)], env=ops.env, capture_output=True, text=True,
                            check=False)
    assert forced.returncode == 0 and "released the lock" in forced.stdout
    assert locking.read_lock(store) is None
    held.release()
