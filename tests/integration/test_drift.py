"""Drift refuses before the switch: the load balancer's servers must be bgkit.toml's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.deploy import deploy
from bgkit.errors import DeployError
from bgkit.lb import get_provider
from bgkit.switch import switch
from bgkit.verify import verify
from tests.conftest import REPO
from tests.integration.sandbox_support import Load, add_server

pytestmark = pytest.mark.slow


def test_an_unlisted_server_in_the_idle_pool_refuses_verify_switch_and_deploy(
        ready: Config, releases: dict[str, BuildResult]) -> None:
    # green's backend gets a third server: blue-1's address, serving the old release.
    unlisted = ready.pools.blue.hosts[0].address
    add_server(ready, "green", "green-9", unlisted)
    lb = get_provider(ready)
    evidence = verify(ready, lb=lb, expected_version="2.0.0", samples_per_host=60,
                      rate_per_s=400)
    assert evidence.verdict.overall == "fail"
    reasons = "; ".join(evidence.verdict.reasons())
    assert f"green-9 ({unlisted}:{ready.service.port})" in reasons and "bgkit.toml" in reasons
    with Load(ready) as load:
        outcome = switch(ready, lb=lb, expected_version="2.0.0", approve=True,
                         release=releases["2.0.0"].release)
    assert outcome.ended == "refused" and outcome.exit_code == 1, outcome.reason
    assert "green-9" in outcome.reason
    assert lb.live_pool() == "blue"
    assert set(load.versions_after(0)) == {"1.0.0"}  # nobody got a mix
    done = subprocess.run([sys.executable, "-m", "bgkit.cli", "switch", "--approve",
                           "--artifact", str(releases["2.0.0"].artifact), "--config",
                           str(ready.path)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == 1 and "green-9" in done.stdout, done.stdout + done.stderr
    with pytest.raises(DeployError, match="green-9"):
        deploy(ready, artifact=releases["3.0.0"].artifact)
    for host in ready.pools.green.hosts:  # refused before any host was touched
        assert not (Path(host.deploy_root) / "releases" / releases["3.0.0"].release).exists()
        assert not any((Path(host.deploy_root) / ".incoming").iterdir())
