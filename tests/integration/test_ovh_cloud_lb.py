"""The ovh-cloud-lb provider through python-ovh, the OVH API emulator (as a Public Cloud
Load Balancer) and the sandbox's HAProxy: the provider alone, then the whole pipeline and
every fault case under continuous load through the public address."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bgkit.artifact import BuildResult
from bgkit.cli.sandbox import sandbox_group
from bgkit.config import Config, load_config
from bgkit.errors import LoadBalancerError
from bgkit.lb import get_provider
from bgkit.lb.ovh_cloud_lb import OvhCloudLbProvider
from bgkit.pipeline import release
from bgkit.runbook import archive
from bgkit.sandbox import SandboxInfo, sandbox_down, sandbox_up
from bgkit.switch import rollback, switch
from tests.conftest import REPO
from tests.integration.sandbox_support import (
    Load,
    StartService,
    build_hello_c,
    emulator_faults,
    public_version,
    rewrite_config,
    sandbox_ports,
    services,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_stray_ovh_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the sandbox's ovh.conf may provide keys; loopback never goes through a proxy."""
    import os

    for name in [name for name in os.environ if name.startswith("OVH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# --- the provider alone, with hello-c started by hand -------------------------------------

@pytest.fixture(scope="module")
def hello_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hello_c(tmp_path_factory.mktemp("hello-c-build"))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[SandboxInfo]:
    state_dir = tmp_path / "sbx"
    try:
        yield sandbox_up(state_dir, lb="ovh-cloud-lb", **sandbox_ports())
    finally:
        sandbox_down(state_dir)


@pytest.fixture
def provider(fleet: SandboxInfo) -> OvhCloudLbProvider:
    built = get_provider(load_config(fleet.config_file))
    assert isinstance(built, OvhCloudLbProvider)
    built.poll_interval_s = 0.05
    return built


@pytest.fixture
def start_service(hello_c: Path, fleet: SandboxInfo) -> Iterator[StartService]:
    with services(hello_c, fleet) as start:
        yield start


def live_map(info: SandboxInfo) -> str:
    return (info.state_dir / "haproxy" / "live.map").read_text()


def test_a_switch_returns_once_provisioned_and_haproxy_then_routes_to_green(
        fleet: SandboxInfo, provider: OvhCloudLbProvider, start_service: StartService) -> None:
    start_service(fleet.hosts[0], "1.0.0-blue")
    start_service(fleet.hosts[2], "2.0.0-green")
    wait_for(lambda: {"blue-1", "green-1"} <= {s.name for s in provider.backend_health()
                                               if s.healthy}, what="blue-1 and green-1 online")
    assert provider.live_pool() == "blue"
    assert {public_version(fleet) for _ in range(4)} == {"1.0.0-blue"}
    result = provider.switch("green", timeout_s=10)
    assert (result.previous, result.live) == ("blue", "green")
    assert result.applied_s >= 0.5  # the sandbox provisions for 0.5 s
    assert live_map(fleet) == "live green\n"
    assert {public_version(fleet) for _ in range(4)} == {"2.0.0-green"}
    assert provider.switch("blue", timeout_s=10).live == "blue"
    assert public_version(fleet) == "1.0.0-blue"


def test_backend_health_is_haproxys_checks_seen_as_operating_status(
        fleet: SandboxInfo, provider: OvhCloudLbProvider, start_service: StartService) -> None:
    start_service(fleet.hosts[3], "2.0.0")
    servers = wait_for(lambda: (lambda found: found if found[3].healthy else None)(
        provider.backend_health()), what="green-2 online through the API")
    port = fleet.options.app_port
    assert [(s.pool, s.name, s.address, s.port, s.status) for s in servers] == [
        ("blue", "blue-1", "127.0.1.1", port, "error"),
        ("blue", "blue-2", "127.0.1.2", port, "error"),
        ("green", "green-1", "127.0.2.1", port, "error"),
        ("green", "green-2", "127.0.2.2", port, "online")]


def test_a_provisioning_error_leaves_haproxy_on_blue_and_the_listener_back_on_it(
        fleet: SandboxInfo, provider: OvhCloudLbProvider) -> None:
    config = load_config(fleet.config_file)
    emulator_faults(config, {"provisioning_error_next": 1})
    with pytest.raises(LoadBalancerError, match=r"its provisioning ended in error .*: blue "
                                                r"serves traffic"):
        provider.switch("green", timeout_s=10)
    assert provider.live_pool() == "blue" and live_map(fleet) == "live blue\n"


def test_a_second_up_changes_nothing_and_a_restart_follows_haproxys_live_pool(
        fleet: SandboxInfo, provider: OvhCloudLbProvider) -> None:
    ports = {"app_port": fleet.options.app_port, "public_port": fleet.options.public_port,
             "ssh_port": fleet.options.ssh_port}
    provider.switch("green", timeout_s=10)
    files = {p: p.stat().st_mtime_ns for p in fleet.state_dir.rglob("*") if p.is_file()
             and p.parent.name not in ("log", "run")}
    again = sandbox_up(fleet.state_dir, lb="ovh-cloud-lb", **ports)
    assert again.started == () and again.ovh_api == fleet.ovh_api
    changed = [p.name for p, mtime in files.items() if p.stat().st_mtime_ns != mtime]
    assert changed == ["emulator.json"]  # its seed now starts on green, as HAProxy does
    sandbox_down(fleet.state_dir)
    restarted = sandbox_up(fleet.state_dir, lb="ovh-cloud-lb", **ports)
    assert "ovh-emulator" in restarted.started
    assert get_provider(load_config(restarted.config_file)).live_pool() == "green"


def test_the_cli_brings_up_an_ovh_cloud_lb_fleet_whose_config_switches(
        tmp_path: Path) -> None:
    state_dir = tmp_path / "sbx"
    ports = sandbox_ports()
    args = ["--app-port", str(ports["app_port"]), "--public-port", str(ports["public_port"]),
            "--ssh-port", str(ports["ssh_port"]), "--lb", "ovh-cloud-lb"]
    try:
        up = CliRunner().invoke(sandbox_group, ["up", "--dir", str(state_dir), *args])
        assert up.exit_code == 0, up.output
        assert re.search(r"OVH API emulator at http://127.0.0.1:\d+/1.0", up.output)
        status = CliRunner().invoke(sandbox_group, ["status", "--dir", str(state_dir),
                                                    "--json"])
        assert [(p["role"], p["alive"]) for p in json.loads(status.output)["processes"]] == [
            ("sshd-1", True), ("haproxy", True), ("ovh-emulator", True)]
        config = load_config(state_dir / "bgkit.toml")
        assert config.lb.provider == "ovh-cloud-lb"
        assert get_provider(config).switch("green", timeout_s=10).live == "green"
    finally:
        down = CliRunner().invoke(sandbox_group, ["down", "--dir", str(state_dir)])
    assert down.exit_code == 0 and "stopped ovh-emulator" in down.output


# --- the pipeline under continuous load -------------------------------------------------

def fast(config: Config, name: str = "cloud.toml", **switch_changes: Any) -> Config:
    return rewrite_config(config.path, {
        "switch": {"samples_per_host": 60, "watch_s": 2, **switch_changes},
        "gates": {"min_samples_per_host": 30, "max_p99_ms": 1500, "min_p95_delta_ms": 100}},
        name=name)


def test_release_switch_and_rollback_under_load_fail_no_request(
        cloud_sandbox: Config) -> None:
    config = fast(cloud_sandbox)
    first = release(config, approve=True, version="1.0.0", progress=False)
    assert first.ok, first.failed
    lb = get_provider(config)
    assert lb.live_pool() == "green"
    with Load(config) as load:
        time.sleep(0.5)
        second = release(config, approve=True, version="2.0.0", progress=False)
        assert second.ok, second.failed
        assert lb.live_pool() == "blue"
        back = rollback(config, lb=lb, approve=True)
        assert back.ended == "rolled back", back.reason
        assert lb.live_pool() == "green"
        again = switch(config, lb=lb, expected_version="2.0.0", approve=True)
        assert again.ended == "switched", again.reason
        time.sleep(0.5)
    assert load.failures == []
    assert len(load.answers) > 200
    assert {version for _, _, version in load.answers} == {"1.0.0", "2.0.0"}
    assert lb.live_pool() == "blue"


def cli(config: Config, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bgkit.cli", *args, "--config",
                           str(config.path)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def last_switch_record(config: Config) -> dict[str, Any]:
    """The switch outcome the archive holds for the last switch or rollback."""
    runs = archive.list_runs(config.runs_dir)
    path = runs[runs["step"].isin(["04_switch", "05_rollback"])].iloc[-1]["path"]
    records = archive.show_run(Path(path)).records
    return dict(records["switch"]["value"])


def assert_live_and_healthy(config: Config, pool: str) -> None:
    lb = get_provider(config)
    assert lb.live_pool() == pool
    servers = [s for s in lb.backend_health() if s.pool == pool]
    assert servers and all(s.healthy for s in servers), servers


@pytest.mark.parametrize(("faults", "outcome", "live", "said"), [
    ({"error_next": 1, "error_match": "PUT */listener/*"}, "switch failed", "blue",
     ["HTTP 500: Internal server error", "OVH query id", "nothing was changed, blue still "
      "serves traffic", "traffic is on blue"]),
    ({"provisioning_error_next": 1}, "switch failed", "blue",
     ["its provisioning ended in error", "bgkit set the listener back to pool",
      "blue serves traffic", "traffic is on blue"]),
    ({"delay_s": 0.3}, "switched", "green", ["traffic moved from blue to green"]),
], ids=["500-on-put", "provisioning-error", "slow-api"])
def test_each_fault_ends_on_a_healthy_pool_with_the_reason_recorded_and_no_failed_request(
        ready_cloud: Config, releases: dict[str, BuildResult], faults: dict[str, object],
        outcome: str, live: str, said: list[str]) -> None:
    config = fast(ready_cloud, name="fault.toml")
    emulator_faults(config, faults)
    with Load(config) as load:
        done = cli(config, "switch", "--approve", "--artifact",
                   str(releases["2.0.0"].artifact))
        time.sleep(0.3)
    assert done.returncode == (0 if outcome == "switched" else 1), done.stdout + done.stderr
    record = last_switch_record(config)
    assert record["outcome"] == outcome, record
    for fragment in said:
        assert fragment in record["reason"], record["reason"]
    assert_live_and_healthy(config, live)
    assert load.failures == []


def test_a_provisioning_slower_than_the_timeout_is_followed_then_watched(
        ready_cloud: Config) -> None:
    config = fast(ready_cloud, name="slow.toml", timeout_s=1)
    emulator_faults(config, {"provisioning_delay_s": 3})
    with Load(config) as load:
        done = switch(config, lb=get_provider(config), expected_version="2.0.0",
                      approve=True)
    assert done.ended == "switched", done.reason
    assert "followed it until green was live" in done.converged
    assert done.watch is not None and done.watch.ok
    assert_live_and_healthy(config, "green")
    assert load.failures == []


def provisioning(config: Config) -> bool:
    return bool(get_provider(config).state().applying)


@pytest.mark.parametrize(("faults", "said"), [
    ({"provisioning_delay_s": 4}, ["went live but was never watched", "the watch passed"]),
    ({"provisioning_delay_s": 4, "provisioning_error_next": 1},
     ["staged green without applying it", "bgkit undid it"]),
], ids=["killed-while-provisioning", "killed-then-provisioning-error"])
def test_a_runner_killed_mid_switch_converges_when_run_again(
        ready_cloud: Config, releases: dict[str, BuildResult], faults: dict[str, object],
        said: list[str]) -> None:
    """kill -9 while the listener is being provisioned towards green; the re-run takes over
    the lease, follows the provisioning and watches green (or, when the provisioning ended
    in error, puts blue back and switches afresh)."""
    config = fast(ready_cloud, name="killed.toml")
    emulator_faults(config, faults)
    command = [sys.executable, "-m", "bgkit.cli", "switch", "--approve", "--config",
               str(config.path), "--artifact", str(releases["2.0.0"].artifact)]
    with Load(config) as load:
        running = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        wait_for(lambda: running.poll() is None and provisioning(config), timeout_s=60,
                 what="the listener being provisioned towards green")
        running.kill()
        running.communicate()
        emulator_faults(config, {"provisioning_delay_s": 0.5})
        again = cli(config, "switch", "--approve", "--artifact",
                    str(releases["2.0.0"].artifact))
        time.sleep(0.3)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert "took over the deployment lock" in output
    record = last_switch_record(config)
    for fragment in said:
        assert fragment in record["converged"], record
    assert record["outcome"] in ("switched", "already live"), record
    assert_live_and_healthy(config, "green")
    assert load.failures == []
