"""Real systemd hosts: systemd-nspawn containers (``sandbox up --manager systemd``), each
set up by the script ``bgkit host setup`` prints, deployed to by a non-root deploy user
(umask 077) holding exactly the documented sudo rights. One sandbox for the module."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config, load_config
from bgkit.deploy import deploy
from bgkit.errors import DeployError
from bgkit.host_setup import host_setups
from bgkit.lb import get_provider
from bgkit.loadgen import LoadGenerator
from bgkit.sandbox import sandbox_down, sandbox_up
from bgkit.sandbox.state import Layout, fleet_hosts
from bgkit.sandbox.systemd_hosts import inside
from bgkit.switch import rollback, switch
from tests.integration.sandbox_support import (
    flip,
    rewrite_config,
    sandbox_ports,
    ssh_run,
    wait_lb_healthy,
)
from tests.integration.test_plain_c import PLAIN_DIR, plain_releases  # noqa: F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("systemd-nspawn") is None,
                       reason="systemd hosts need root and systemd-nspawn (make deps)"),
]


@pytest.fixture(scope="module")
def systemd_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    state = tmp_path_factory.mktemp("systemd") / "sbx"
    info = sandbox_up(state, hosts=1, source=PLAIN_DIR, manager="systemd", **sandbox_ports())
    try:
        yield load_config(info.config_file)
    finally:
        sandbox_down(state)
        assert not list((state / "run").glob("nspawn-*.pid"))


def state_of(config: Config) -> Path:
    return config.path.parent


def host(config: Config, pool: str):  # type: ignore[no-untyped-def]
    return next(h for h in fleet_hosts(Layout.at(state_of(config)), 1) if h.pool == pool)


def as_deploy(config: Config, pool: str, command: str) -> str:
    entry = config.pools.get(pool).hosts[0]  # type: ignore[arg-type]
    return ssh_run(entry.address, entry.port, "deploy", state_of(config),
                   f"{command}; echo rc=$?")


def test_the_deploy_user_has_umask_077_and_exactly_the_documented_sudo_rights(
        systemd_sandbox: Config) -> None:
    assert as_deploy(systemd_sandbox, "blue", "umask").startswith("0077")
    listed = as_deploy(systemd_sandbox, "blue", "sudo -n -l")
    assert "(root) NOPASSWD: /usr/bin/systemctl restart plain-c.service, /usr/bin/systemctl " \
        "stop plain-c.service, /usr/bin/systemctl is-active --quiet plain-c.service, " \
        "/usr/bin/journalctl -u plain-c.service -n 20 --no-pager" in " ".join(listed.split())
    for refused in ("sudo -n /usr/bin/systemctl start bgkit-sshd.service",
                    "sudo -n /usr/bin/systemctl start plain-c.service",
                    "sudo -n /usr/bin/systemctl daemon-reload", "sudo -n /bin/sh -c true"):
        assert as_deploy(systemd_sandbox, "blue", f"{refused} 2>/dev/null").strip() == "rc=1"


def test_the_pipeline_runs_on_systemd_hosts_under_load_with_no_failed_request(
        systemd_sandbox: Config, plain_releases: dict[str, BuildResult]) -> None:  # noqa: F811
    config, lb = systemd_sandbox, get_provider(systemd_sandbox)
    assert deploy(config, artifact=plain_releases["1.0.0"].artifact).ok
    wait_lb_healthy(config, "green")
    flip(config, "green")  # recorded on the hosts, as a switch records it
    with LoadGenerator(f"{config.lb.public_url}/", version_header="X-Bgkit-Pool",
                       max_seconds=240) as load:
        second = deploy(config, artifact=plain_releases["2.0.0"].artifact)
        assert second.pool == "blue" and all(h.restarted for h in second.hosts)
        wait_lb_healthy(config, "blue")
        went = switch(config, lb=lb, expected_version="2.0.0", approve=True)
        assert went.ended == "switched", went.reason
        back = rollback(config, lb=lb, approve=True)
        assert back.ended == "rolled back", back.reason
    assert load.report.failed == 0, load.report.errors
    assert set(load.report.versions) == {"blue", "green"}
    running = inside(Layout.at(state_of(config)), host(config, "blue"),
                     "systemctl show -p User -p ActiveState plain-c.service; "
                     "ps -o user= -C plain-c")
    assert "User=plain" in running and "ActiveState=active" in running
    assert running.strip().endswith("plain")


def test_a_service_that_fails_to_start_shows_its_journal(
        systemd_sandbox: Config, plain_releases: dict[str, BuildResult],  # noqa: F811
        tmp_path: Path) -> None:
    broken = tmp_path / "broken.conf.j2"
    broken.write_text("header = no colon here\n")
    config = rewrite_config(systemd_sandbox.path, {"service": {"files": [
        {"template": str(broken), "path": "plain-c.conf", "mode": "0640"}]}}, name="broken.toml")
    live = get_provider(config).live_pool()
    with pytest.raises(DeployError) as caught:
        deploy(config, artifact=plain_releases["1.0.0"].artifact)
    message = str(caught.value)
    assert "service log:" in message and "bad header line" in message
    assert get_provider(config).live_pool() == live


def reinstall_unit(config: Config, pool: str) -> None:
    """What an administrator does after changing [service.systemd]: the setup again."""
    (setup,) = host_setups(config, pool=pool)  # type: ignore[arg-type]
    inside(Layout.at(state_of(config)), host(config, pool), setup.script)


@pytest.mark.parametrize(("breakage", "changes", "expected"), [
    ("true", {"service": {"systemd": {"read_write_paths": ["/var/lib/plain-c-missing"]}}},
     "/var/lib/plain-c-missing does not exist on the host"),
    ("chmod 0755 /srv/plain-c/shared", {},
     "/srv/plain-c/shared is not writable by the service user plain"),
    ("chmod 0700 /srv/plain-c", {},
     "/srv/plain-c is not searchable by the service user plain"),
])
def test_preflight_refuses_a_host_the_service_could_not_run_on_and_says_why(
        systemd_sandbox: Config, plain_releases: dict[str, BuildResult],  # noqa: F811
        breakage: str, changes: dict[str, object], expected: str) -> None:
    config = rewrite_config(systemd_sandbox.path, {"service": {"systemd": {"user": "plain"}},
                                                   **changes}, name="changed.toml")
    pool = get_provider(config).live_pool()
    idle = "blue" if pool == "green" else "green"
    layout, target = Layout.at(state_of(config)), host(config, idle)
    reinstall_unit(config, idle)
    inside(layout, target, breakage)
    try:
        with pytest.raises(DeployError, match="failed at preflight") as caught:
            deploy(config, artifact=plain_releases["2.0.0"].artifact)
        assert expected in str(caught.value)
    finally:
        inside(layout, target, "chmod 0755 /srv/plain-c; chmod 2775 /srv/plain-c/shared")
        reinstall_unit(systemd_sandbox, idle)


def test_a_drifted_or_missing_unit_is_refused_at_preflight_with_the_fix(
        systemd_sandbox: Config, plain_releases: dict[str, BuildResult]) -> None:  # noqa: F811
    config = systemd_sandbox
    idle = "blue" if get_provider(config).live_pool() == "green" else "green"
    layout, target = Layout.at(state_of(config)), host(config, idle)
    unit = "/etc/systemd/system/plain-c.service"
    inside(layout, target, f"sed -i 's/^User=plain$/User=attacker/' {unit}")
    try:
        with pytest.raises(DeployError, match="failed at preflight") as caught:
            deploy(config, artifact=plain_releases["1.0.0"].artifact)
        assert "the host has 'User=attacker', bgkit.toml renders 'User=plain'" in \
            str(caught.value)
        inside(layout, target, f"rm -f {unit}")
        with pytest.raises(DeployError, match=f"the systemd unit {unit} is not installed"):
            deploy(config, artifact=plain_releases["1.0.0"].artifact)
    finally:
        reinstall_unit(config, idle)
