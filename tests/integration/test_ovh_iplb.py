"""The ovh-iplb provider through python-ovh, the OVH API emulator and the sandbox's HAProxy."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bgkit.cli.sandbox import sandbox_group
from bgkit.config import load_config
from bgkit.errors import LoadBalancerError
from bgkit.lb import get_provider
from bgkit.lb.ovh_iplb import OvhIplbProvider
from bgkit.sandbox import SandboxInfo, sandbox_down, sandbox_status, sandbox_up
from tests.integration.sandbox_support import (
    StartService,
    build_hello_c,
    public_version,
    running,
    sandbox_ports,
    services,
    wait_for,
)

pytestmark = pytest.mark.slow

QUERY_ID = re.compile(r"\(OVH query id EMU\.ext-1\.[0-9a-f]+\.\d+\.\d+\)")


@pytest.fixture(autouse=True)
def no_stray_ovh_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the sandbox's ovh.conf may provide keys; loopback never goes through a proxy."""
    for name in [name for name in os.environ if name.startswith("OVH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def hello_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample service's binary, built once for this module."""
    return build_hello_c(tmp_path_factory.mktemp("hello-c-build"))


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxInfo]:
    state_dir = tmp_path / "sbx"
    try:
        yield sandbox_up(state_dir, lb="ovh-iplb", **sandbox_ports())
    finally:
        sandbox_down(state_dir)


@pytest.fixture
def provider(sandbox: SandboxInfo) -> OvhIplbProvider:
    built = get_provider(load_config(sandbox.config_file))
    assert isinstance(built, OvhIplbProvider)
    built.poll_interval_s = 0.05
    return built


@pytest.fixture
def start_service(hello_c: Path, sandbox: SandboxInfo) -> Iterator[StartService]:
    """Run hello-c on a sandbox host's address and app port, reporting ``version``."""
    with services(hello_c, sandbox) as start:
        yield start


def control(info: SandboxInfo, method: str, path: str, body: Any = None) -> Any:
    """The emulator's own control endpoint (outside the OVH API)."""
    assert info.ovh_api is not None
    request = urllib.request.Request(info.ovh_api.removesuffix("/1.0") + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as answer:
        return json.loads(answer.read())



def live_map(info: SandboxInfo) -> str:
    return (info.state_dir / "haproxy" / "live.map").read_text()


def test_a_switch_returns_once_applied_and_haproxy_then_routes_to_green(
        sandbox: SandboxInfo, provider: OvhIplbProvider, start_service: StartService) -> None:
    start_service(sandbox.hosts[0], "1.0.0-blue")
    start_service(sandbox.hosts[2], "2.0.0-green")
    wait_for(lambda: {"blue-1", "green-1"} <= {s.name for s in provider.backend_health()
                                               if s.healthy}, what="blue-1 and green-1 UP")
    assert provider.live_pool() == "blue"
    assert {public_version(sandbox) for _ in range(4)} == {"1.0.0-blue"}
    result = provider.switch("green", timeout_s=10)
    assert (result.previous, result.live) == ("blue", "green")
    assert 0.5 <= result.applied_s < 5  # the sandbox's refresh task takes 0.5 s
    assert live_map(sandbox) == "live green\n"
    assert {public_version(sandbox) for _ in range(4)} == {"2.0.0-green"}
    assert provider.live_pool() == "green"
    assert provider.switch("blue", timeout_s=10).live == "blue"
    assert public_version(sandbox) == "1.0.0-blue"


def test_backend_health_is_haproxys_own_checks_seen_through_the_api(
        sandbox: SandboxInfo, provider: OvhIplbProvider, start_service: StartService) -> None:
    start_service(sandbox.hosts[3], "2.0.0")
    servers = wait_for(lambda: (lambda found: found if found[3].healthy else None)(
        provider.backend_health()), what="green-2 UP through the API")
    assert [(s.pool, s.name, s.address, s.port) for s in servers] == [
        ("blue", "blue-1", "127.0.1.1", sandbox.options.app_port),
        ("blue", "blue-2", "127.0.1.2", sandbox.options.app_port),
        ("green", "green-1", "127.0.2.1", sandbox.options.app_port),
        ("green", "green-2", "127.0.2.2", sandbox.options.app_port)]
    assert (servers[3].status, servers[3].detail.startswith("L7OK 200")) == ("UP", True)
    assert (servers[0].status, servers[0].healthy) == ("DOWN", False)
    assert "Connection refused" in servers[0].detail


def test_a_500_mid_switch_keeps_the_query_id_and_leaves_the_lb_on_blue(
        sandbox: SandboxInfo, provider: OvhIplbProvider) -> None:
    control(sandbox, "POST", "/_emulator/faults", {"error_next": 1,
                                                    "error_match": "POST */refresh"})
    with pytest.raises(LoadBalancerError) as raised:
        provider.switch("green", timeout_s=10)
    message = str(raised.value)
    assert QUERY_ID.search(message) and "HTTP 500: Internal server error" in message
    assert message.endswith("nothing is pending, blue serves traffic")
    assert provider.live_pool() == "blue"
    assert live_map(sandbox) == "live blue\n"


def test_a_refresh_task_in_error_is_a_load_balancer_error_and_nothing_moves(
        sandbox: SandboxInfo, provider: OvhIplbProvider) -> None:
    control(sandbox, "POST", "/_emulator/faults", {"task_outcome": "error"})
    with pytest.raises(LoadBalancerError, match=r"refresh task \d+ ended in 'error'"):
        provider.switch("green", timeout_s=10)
    assert provider.live_pool() == "blue" and live_map(sandbox) == "live blue\n"


def test_a_stuck_refresh_task_is_an_error_past_the_deadline(
        sandbox: SandboxInfo, provider: OvhIplbProvider) -> None:
    control(sandbox, "POST", "/_emulator/faults", {"task_outcome": "doing"})
    with pytest.raises(LoadBalancerError, match=r"did not finish in 1.5 s: refresh task \d+ is "
                                                r"still 'doing'"):
        provider.switch("green", timeout_s=1.5)
    assert live_map(sandbox) == "live blue\n"
    with pytest.raises(LoadBalancerError, match="staged but not applied"):
        provider.live_pool()  # green is staged, not applied: bgkit will not guess


def test_status_lists_the_emulator_and_down_stops_it(sandbox: SandboxInfo) -> None:
    state = next(p for p in sandbox_status(sandbox.state_dir).processes
                 if p.role == "ovh-emulator")
    assert state.alive and state.pid is not None
    stopped = sandbox_down(sandbox.state_dir)
    assert "ovh-emulator" in [p.role for p in stopped]
    assert not running(state.pid)
    assert not (sandbox.state_dir / "run" / "ovh-emulator.pid").exists()
    with pytest.raises(LoadBalancerError, match="cannot reach the OVHcloud API at "
                                                r"http://127.0.0.1:\d+/1.0 .*Connection refused"):
        get_provider(load_config(sandbox.config_file)).live_pool()


def test_a_second_up_changes_nothing_and_a_restart_follows_haproxys_live_pool(
        sandbox: SandboxInfo, provider: OvhIplbProvider) -> None:
    ports = {"app_port": sandbox.options.app_port, "public_port": sandbox.options.public_port,
             "ssh_port": sandbox.options.ssh_port}
    provider.switch("green", timeout_s=10)
    files = {p: p.stat().st_mtime_ns for p in sandbox.state_dir.rglob("*") if p.is_file()
             and p.parent.name not in ("log", "run")}
    again = sandbox_up(sandbox.state_dir, lb="ovh-iplb", **ports)
    assert again.started == () and again.ovh_api == sandbox.ovh_api
    changed = [p.name for p, mtime in files.items() if p.stat().st_mtime_ns != mtime]
    assert changed == ["emulator.json"]  # its seed now starts on green, as HAProxy does
    sandbox_down(sandbox.state_dir)
    restarted = sandbox_up(sandbox.state_dir, lb="ovh-iplb", **ports)
    assert "ovh-emulator" in restarted.started
    assert get_provider(load_config(restarted.config_file)).live_pool() == "green"


def test_the_cli_brings_up_an_ovh_iplb_fleet_whose_config_switches(tmp_path: Path) -> None:
    state_dir = tmp_path / "sbx"
    ports = sandbox_ports()
    args = ["--app-port", str(ports["app_port"]), "--public-port", str(ports["public_port"]),
            "--ssh-port", str(ports["ssh_port"]), "--lb", "ovh-iplb"]
    try:
        up = CliRunner().invoke(sandbox_group, ["up", "--dir", str(state_dir), *args])
        assert up.exit_code == 0, up.output
        assert re.search(r"OVH API emulator at http://127.0.0.1:\d+/1.0", up.output)
        status = CliRunner().invoke(sandbox_group, ["status", "--dir", str(state_dir),
                                                    "--json"])
        assert [(p["role"], p["alive"]) for p in json.loads(status.output)["processes"]] == [
            ("sshd-1", True), ("haproxy", True), ("ovh-emulator", True)]
        config = load_config(state_dir / "bgkit.toml")
        assert config.lb.provider == "ovh-iplb"
        assert get_provider(config).switch("green", timeout_s=10).live == "green"
    finally:
        down = CliRunner().invoke(sandbox_group, ["down", "--dir", str(state_dir)])
    assert down.exit_code == 0 and "stopped ovh-emulator" in down.output
