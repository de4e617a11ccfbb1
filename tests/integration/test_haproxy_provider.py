"""The HAProxy provider against the sandbox's real HAProxy and real hello-c services."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgkit.config import load_config
from bgkit.errors import LoadBalancerError
from bgkit.lb import get_provider
from bgkit.lb.haproxy import HaproxyProvider
from bgkit.sandbox import SandboxInfo, reload_haproxy, sandbox_down, sandbox_up
from tests.integration.sandbox_support import (
    Load,
    StartService,
    build_hello_c,
    free_ports,
    public_version,
    sandbox_ports,
    services,
    wait_for,
)
from tests.thread_support import raised_in_another_thread

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def hello_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample service's binary, built once for this module."""
    return build_hello_c(tmp_path_factory.mktemp("hello-c-build"))


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxInfo]:
    state_dir = tmp_path / "sbx"
    try:
        yield sandbox_up(state_dir, **sandbox_ports())
    finally:
        sandbox_down(state_dir)


@pytest.fixture
def provider(sandbox: SandboxInfo) -> HaproxyProvider:
    built = get_provider(load_config(sandbox.config_file))
    assert isinstance(built, HaproxyProvider)
    return built


@pytest.fixture
def start_service(hello_c: Path, sandbox: SandboxInfo) -> Iterator[StartService]:
    """Run hello-c on a sandbox host's address and app port, reporting ``version``."""
    with services(hello_c, sandbox) as start:
        yield start


def healthy(provider: HaproxyProvider) -> set[str]:
    return {server.name for server in provider.backend_health() if server.healthy}



def test_switch_to_green_and_back_is_applied_and_followed_by_the_map_file(
        provider: HaproxyProvider) -> None:
    assert provider.live_pool() == "blue"
    to_green = provider.switch("green", timeout_s=5)
    assert (to_green.previous, to_green.live) == ("blue", "green")
    assert 0 < to_green.applied_s < 5
    assert provider.live_pool() == "green"
    assert provider.map_file.read_text() == "live green\n"
    to_blue = provider.switch("blue", timeout_s=5)
    assert (to_blue.previous, to_blue.live) == ("green", "blue")
    assert provider.map_file.read_text() == "live blue\n"


def test_a_reload_keeps_the_switch(sandbox: SandboxInfo, provider: HaproxyProvider) -> None:
    old_pid = next(p.pid for p in sandbox.processes if p.role == "haproxy")
    provider.switch("green", timeout_s=5)
    new_pid = reload_haproxy(sandbox.state_dir)
    assert new_pid != old_pid
    assert provider.live_pool() == "green"


def test_every_server_is_down_while_no_service_runs(provider: HaproxyProvider) -> None:
    servers = wait_for(lambda: [s for s in provider.backend_health() if s.status == "DOWN"]
                       if all(s.status == "DOWN" for s in provider.backend_health()) else None,
                       what="every server DOWN")
    assert [(s.pool, s.name) for s in servers] == [
        ("blue", "blue-1"), ("blue", "blue-2"), ("green", "green-1"), ("green", "green-2")]
    assert not any(s.healthy for s in servers)
    assert servers[2].address == "127.0.2.1"
    assert "Connection refused" in servers[2].detail


def test_a_server_turns_up_once_hello_c_listens_on_its_address(
        sandbox: SandboxInfo, provider: HaproxyProvider, start_service: StartService) -> None:
    start_service(sandbox.hosts[3], "2.0.0")
    wait_for(lambda: healthy(provider) == {"green-2"}, what="green-2 UP alone")
    green_2 = next(s for s in provider.backend_health() if s.name == "green-2")
    assert green_2.status == "UP"
    assert (green_2.address, green_2.port) == ("127.0.2.2", sandbox.options.app_port)
    assert green_2.detail.startswith("L7OK")


def test_public_requests_reach_the_live_pool(
        sandbox: SandboxInfo, provider: HaproxyProvider, start_service: StartService) -> None:
    start_service(sandbox.hosts[0], "1.0.0-blue")
    start_service(sandbox.hosts[2], "2.0.0-green")
    wait_for(lambda: {"blue-1", "green-1"} <= healthy(provider), what="blue-1 and green-1 UP")
    assert {public_version(sandbox) for _ in range(4)} == {"1.0.0-blue"}
    provider.switch("green", timeout_s=5)
    assert {public_version(sandbox) for _ in range(4)} == {"2.0.0-green"}
    provider.switch("blue", timeout_s=5)
    assert public_version(sandbox) == "1.0.0-blue"


def test_a_canary_split_sends_its_share_and_survives_a_reload(
        sandbox: SandboxInfo, provider: HaproxyProvider, start_service: StartService) -> None:
    start_service(sandbox.hosts[0], "1.0.0-blue")
    start_service(sandbox.hosts[2], "2.0.0-green")
    wait_for(lambda: {"blue-1", "green-1"} <= healthy(provider), what="blue-1 and green-1 UP")
    provider.split("green", 30, timeout_s=5)
    state = provider.state()
    assert (state.live, state.canary, state.canary_pool) == ("blue", 30, "green")
    assert "30% of requests to green (canary)" in state.describe()
    assert provider.map_file.read_text() == "live blue\nidle green\ncanary 30\n"
    answers = [public_version(sandbox) for _ in range(600)]
    share = 100 * answers.count("2.0.0-green") / len(answers)
    assert answers.count(None) == 0 and 22 < share < 38, share  # 30 +- 4 sigma
    reload_haproxy(sandbox.state_dir)
    assert provider.state().canary == 30
    provider.split("green", 0, timeout_s=5)
    assert provider.state().canary == 0 and provider.live_pool() == "blue"
    assert {public_version(sandbox) for _ in range(50)} == {"1.0.0-blue"}
    assert provider.map_file.read_text() == "live blue\nidle green\ncanary 0\n"


def test_a_stopped_haproxy_is_a_load_balancer_error_saying_what_to_check(
        sandbox: SandboxInfo, provider: HaproxyProvider) -> None:
    sandbox_down(sandbox.state_dir)
    with pytest.raises(LoadBalancerError, match="is HAProxy running"):
        provider.live_pool()
    with pytest.raises(LoadBalancerError, match="is HAProxy running"):
        provider.switch("green", timeout_s=1)
    assert provider.map_file.read_text() == "live blue\n"


def test_a_tcp_runtime_api_that_nothing_listens_on_is_a_load_balancer_error(
        sandbox: SandboxInfo) -> None:
    config = load_config(sandbox.config_file)
    assert config.lb.haproxy is not None
    (port,) = free_ports(1)
    settings = config.lb.haproxy.model_copy(update={"runtime_api": f"127.0.0.1:{port}"})
    with pytest.raises(LoadBalancerError, match=f"127.0.0.1:{port}.*Connection refused"):
        HaproxyProvider(settings).backend_health()


def test_a_long_state_dir_gets_a_tcp_runtime_api_that_switches_and_reloads(
        tmp_path: Path) -> None:
    state_dir = tmp_path / ("deep-" + "d" * 90)
    try:
        info = sandbox_up(state_dir, **sandbox_ports())
        assert info.runtime_api.startswith("ipv4@127.0.0.1:")
        provider = get_provider(load_config(info.config_file))
        assert provider.switch("green", timeout_s=5).live == "green"
        reload_haproxy(state_dir)
        assert provider.live_pool() == "green"
    finally:
        sandbox_down(state_dir)


def _switch_and_die_before_the_map_file(config_file: str) -> None:
    """In a child: switch to green, and be killed at the rename of the map file."""
    provider = get_provider(load_config(Path(config_file)))

    def killed(*_: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    Path.replace = killed  # type: ignore[method-assign,assignment]
    provider.switch("green", timeout_s=5)


def test_a_crash_between_set_map_and_the_map_file_is_repaired_on_the_next_read(
        sandbox: SandboxInfo, provider: HaproxyProvider, start_service: StartService) -> None:
    """Issue 10, case 3: runtime on green, map file on blue, after a kill -9."""
    start_service(sandbox.hosts[0], "1.0.0-blue")
    start_service(sandbox.hosts[2], "2.0.0-green")
    wait_for(lambda: {"blue-1", "green-1"} <= healthy(provider), what="blue-1 and green-1 UP")
    config = load_config(sandbox.config_file)
    with Load(config) as load:
        child = multiprocessing.get_context("fork").Process(
            target=_switch_and_die_before_the_map_file, args=(str(sandbox.config_file),))
        child.start()
        child.join(timeout=30)
        assert child.exitcode == -signal.SIGKILL
        runtime = provider.api.run(f"show map {provider.map_file}")
        assert runtime.split()[1:3] == ["live", "green"]  # the crash left them apart
        assert provider.map_file.read_text() == "live blue\n"
        assert provider.live_pool() == "blue"  # the read repaired towards the map file
        assert "live blue" in provider.api.run(f"show map {provider.map_file}")
        assert sorted(p.name for p in provider.map_file.parent.iterdir()
                      if p.name.startswith(f".{provider.map_file.name}")) == [
            f".{provider.map_file.name}.bgkit-guard"]  # no temporary file survived
        reload_haproxy(sandbox.state_dir)
        assert provider.live_pool() == "blue"
        assert public_version(sandbox) == "1.0.0-blue"
    assert load.failures == []


def test_a_guard_left_held_by_an_interrupt_does_not_lock_its_own_cleanup_out(
        provider: HaproxyProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM landing as a ``with self._guarded()`` leaves keeps that descriptor (and its
    flock) alive in the traceback; the cleanup in the same thread, ending the canary split,
    still goes through, while another thread is still kept out."""
    from bgkit.lb import haproxy

    monkeypatch.setattr(haproxy, "GUARD_TIMEOUT_S", 0.5)
    left = provider._guarded()
    left.__enter__()  # never left: the interrupt came before its exit ran
    try:
        provider.split("green", 10, timeout_s=5)
        provider.split("green", 0, timeout_s=5)
        assert provider.state().canary == 0
        outside = raised_in_another_thread(provider._guarded)
        assert isinstance(outside, LoadBalancerError) and "is locked" in str(outside)
    finally:
        left.__exit__(None, None, None)
    with provider._guarded():  # released once the last holder left
        pass
