"""bgkit deploy and bgkit status from the command line, against a real sandbox."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.lb import get_provider
from bgkit.status import fleet_status
from tests.conftest import REPO
from tests.integration.sandbox_support import set_fault

pytestmark = pytest.mark.slow


def bgkit(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bgkit.cli", *args, "--config", str(config.path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_deploy_and_status_from_the_command_line(sandbox: Config,
                                                 releases: dict[str, BuildResult]) -> None:
    release = releases["1.0.0"]
    done = bgkit(sandbox, "deploy", "--artifact", str(release.artifact))
    assert done.returncode == 0, done.stderr
    assert f"{release.release} on the green pool (live: blue)" in done.stdout
    assert "upload" in done.stderr and "wait healthy" in done.stderr  # per-host progress
    shown = bgkit(sandbox, "status")
    assert shown.returncode == 0, shown.stderr
    assert "live pool: blue" in shown.stdout
    assert shown.stdout.count(release.release) == 2


def test_deploying_to_the_live_pool_exits_2_and_a_failed_host_exits_1_with_its_row(
        sandbox: Config, releases: dict[str, BuildResult]) -> None:
    refused = bgkit(sandbox, "deploy", "--artifact", str(releases["1.0.0"].artifact),
                    "--pool", "blue")
    assert refused.returncode == 2
    assert "refusing to deploy to the blue pool: it is live" in refused.stderr
    green = [Path(h.deploy_root) for h in sandbox.pools.green.hosts]
    set_fault(green[0], fail_at_startup=True)
    failed = bgkit(sandbox, "deploy", "--artifact", str(releases["1.0.0"].artifact))
    assert failed.returncode == 1
    assert "per-host result" in failed.stdout and "127.0.2.1" in failed.stdout
    assert "failed at activate on 1 of 2" in failed.stderr


def test_status_reports_each_host_as_the_load_balancer_and_the_host_see_it(
        sandbox: Config, releases: dict[str, BuildResult]) -> None:
    from bgkit.deploy import deploy

    deploy(sandbox, artifact=releases["2.0.0"].artifact)
    lb = get_provider(sandbox)
    table = fleet_status(sandbox, lb=lb).table().set_index(["pool", "host"])
    green = table.loc["green"]
    assert set(green["release"]) == {releases["2.0.0"].release}
    assert set(green["version"]) == {"2.0.0"}
    assert set(green["health"]) == {"ok"} and all(green["running"])
    blue = table.loc["blue"]
    assert set(blue["release"]) == {"-"} and not any(blue["running"])
    assert set(blue["health"]) == {"connection refused"}
    assert bool(table["live"].loc["blue"].all())
