"""bgkit verify against a real sandbox whose C services misbehave on purpose."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bgkit.artifact import BuildResult
from bgkit.commands import service
from bgkit.config import Config
from bgkit.deploy import deploy
from bgkit.lb import get_provider
from bgkit.runbook import archive
from bgkit.verify import VerifyResult, verify
from tests.conftest import REPO
from tests.integration.sandbox_support import rewrite_config, set_fault, wait_lb_healthy

pytestmark = pytest.mark.slow


@pytest.fixture
def two_releases(sandbox: Config, releases: dict[str, BuildResult]) -> Config:
    """Green live on 1.0.0; blue idle on 2.0.0 and healthy in the load balancer."""
    deploy(sandbox, artifact=releases["1.0.0"].artifact)
    wait_lb_healthy(sandbox, "green")
    get_provider(sandbox).switch("green", timeout_s=10)
    deploy(sandbox, artifact=releases["2.0.0"].artifact)
    wait_lb_healthy(sandbox, "blue")
    return sandbox


def blue_roots(config: Config) -> list[Path]:
    return [Path(h.deploy_root) for h in config.pools.blue.hosts]


def reload_faults(root: Path, **faults: object) -> None:
    """Set the service's fault knobs and make it re-read them (SIGHUP)."""
    set_fault(root, **faults)
    os.kill(int((root / "shared/run/service.pid").read_text()), signal.SIGHUP)


def run_verify(config: Config, samples: int = 60) -> VerifyResult:
    return verify(config, lb=get_provider(config), expected_version="2.0.0",
                  samples_per_host=samples, rate_per_s=400)


def gate(result: VerifyResult, name: str) -> tuple[str, str]:
    table = result.verdict.gate_table().set_index("gate")
    return str(table.loc[name, "verdict"]), str(table.loc[name, "reason"])


def test_a_healthy_idle_pool_passes(two_releases: Config) -> None:
    result = run_verify(two_releases)
    assert result.verdict.overall == "pass", result.verdict.reasons()
    assert (result.idle_pool, result.live_pool) == ("blue", "green")
    hosts = result.samples[result.samples["target"] == "host"]
    assert set(hosts.loc[hosts["pool"] == "blue", "version"]) == {"2.0.0"}
    assert set(hosts.loc[hosts["pool"] == "green", "version"]) == {"1.0.0"}
    assert (result.samples["target"] == "lb").sum() == 60


def test_added_latency_fails_the_latency_gates(two_releases: Config) -> None:
    config = rewrite_config(two_releases.path, {"gates": {"max_p99_ms": 40}}, name="tight.toml")
    for root in blue_roots(config):
        reload_faults(root, latency_ms=50)
    result = run_verify(config, samples=50)
    assert result.verdict.overall == "fail"
    assert gate(result, "p99_latency")[0] == "fail"
    assert gate(result, "p95_ratio")[0] == "fail"
    assert result.comparison.idle_slower
    assert gate(result, "errors")[0] == "pass"


def test_five_percent_of_health_answers_500_fails_on_errors(two_releases: Config) -> None:
    reload_faults(blue_roots(two_releases)[0], health_fail_percent=5)
    result = run_verify(two_releases, samples=100)
    verdict, reason = gate(result, "errors")
    assert result.verdict.overall == "fail" and verdict == "fail"
    assert "127.0.1.1" in reason and "bad_status" in reason
    assert "127.0.1.2" not in reason


def test_one_host_on_the_wrong_version_fails_naming_it(two_releases: Config) -> None:
    root = blue_roots(two_releases)[1]
    ini = root / "shared" / "config.ini"
    ini.write_text(ini.read_text().replace("[server]\n", "[server]\nversion = 2.0.1\n"))
    commands = service.service_commands(two_releases, root=str(root))
    subprocess.run(["sh", "-c", commands.restart], check=True)
    result = run_verify(two_releases)
    verdict, reason = gate(result, "version")
    assert result.verdict.overall == "fail" and verdict == "fail"
    assert "127.0.1.2" in reason and "2.0.1" in reason


def test_too_few_samples_is_inconclusive_never_pass(two_releases: Config) -> None:
    result = run_verify(two_releases, samples=10)
    assert result.verdict.overall == "inconclusive"
    assert gate(result, "samples")[0] == "inconclusive"
    assert result.exit_code == 3


def test_one_host_down_fails_naming_the_host(two_releases: Config) -> None:
    root = blue_roots(two_releases)[0]
    commands = service.service_commands(two_releases, root=str(root))
    subprocess.run(["sh", "-c", commands.stop], check=True)
    result = run_verify(two_releases)
    assert result.verdict.overall == "fail"
    verdict, reason = gate(result, "errors")
    assert verdict == "fail" and "127.0.1.1" in reason and "refused" in reason
    hosts = result.samples[(result.samples["host"] == "127.0.1.1")]
    assert set(hosts["error"]) == {"refused"}


def bgkit(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bgkit.cli", *args, "--config", str(config.path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_cli_exit_codes_and_the_notebook_agree_with_bgkit_verify(
        two_releases: Config, releases: dict[str, BuildResult]) -> None:
    release = str(releases["2.0.0"].artifact)
    passed = bgkit(two_releases, "verify", "--artifact", release, "--samples", "60")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "verdict: pass" in passed.stdout
    few = bgkit(two_releases, "verify", "--artifact", release, "--samples", "5")
    assert few.returncode == 3 and "verdict: inconclusive" in few.stdout

    reload_faults(blue_roots(two_releases)[0], health_status=503)
    failed = bgkit(two_releases, "verify", "--artifact", release, "--samples", "60")
    assert failed.returncode == 1 and "verdict: fail" in failed.stdout
    run = bgkit(two_releases, "run", "03_verify", "-p", "artifact", release,
                "-p", "samples_per_host", "60")
    assert run.returncode == 1, run.stdout + run.stderr
    path = Path(run.stderr.split("record: ")[1].split()[0])
    details = archive.show_run(path)
    assert details.outcome == "failed"
    recorded = details.records["verify"]["value"]
    assert recorded["verdict"]["verdict"] == "fail"
    gates = {row["gate"]: row["verdict"] for row in details.records["gates"]["value"]}
    assert gates["errors"] == "fail"
    assert json.dumps(recorded)
