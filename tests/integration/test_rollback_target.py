"""Rollback goes back to the release that pool served when it was live, and only to that."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.deploy import deploy
from bgkit.lb import get_provider
from bgkit.runbook import archive
from bgkit.switch import rollback, switch
from tests.conftest import REPO

pytestmark = pytest.mark.slow

BGKIT = [sys.executable, "-m", "bgkit.cli"]


def test_rollback_refuses_a_pool_redeployed_since_it_was_live_then_goes_back_to_its_release(
        ready: Config, releases: dict[str, BuildResult]) -> None:
    def bgkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*BGKIT, *args, "--config", str(ready.path)],
                              capture_output=True, text=True, cwd=REPO, timeout=300)

    lb = get_provider(ready)
    went = switch(ready, lb=lb, expected_version="2.0.0", approve=True,
                  release=releases["2.0.0"].release)
    assert went.ended == "switched", went.reason
    # A new release lands on blue, the previous pool: it never went through a gated switch.
    deploy(ready, artifact=releases["3.0.0"].artifact)
    back = rollback(ready, lb=lb, approve=True)
    assert back.ended == "refused" and back.exit_code == 1, back.reason
    assert lb.live_pool() == "green"
    kept = releases["1.0.0"].release
    assert "blue now serves 3.0.0" in back.reason and "never went live" in back.reason
    assert f"bgkit deploy --release {kept}" in back.reason and "no upload" in back.reason

    refused = bgkit("rollback", "--approve")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert lb.live_pool() == "green"
    # The release blue served live is kept on its hosts; dist/ here does not hold it.
    redeployed = bgkit("deploy", "--release", kept)
    assert redeployed.returncode == 0, redeployed.stdout + redeployed.stderr
    assert "kept on the hosts" in redeployed.stdout
    rolled = bgkit("rollback", "--approve")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert f"release: {kept}" in rolled.stdout
    assert lb.live_pool() == "blue"
    (run,) = [path for path in ready.runs_dir.glob("*/*/*05_rollback*.ipynb")
              if archive.show_run(path).outcome == "succeeded"]
    assert archive.show_run(run).records["switch"]["value"]["release"] == kept

    status = bgkit("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "last live" in status.stdout
    assert kept in status.stdout and releases["2.0.0"].release in status.stdout
