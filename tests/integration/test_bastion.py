"""ProxyJump fleets: with ``sandbox up --bastion`` the hosts accept bgkit's deploy key only
from the bastion's address, and OpenSSH's config (with an Include) says ProxyJump; so
deploy, status and verify work only because bgkit honours that config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config, load_config
from bgkit.deploy import deploy
from bgkit.lb import get_provider
from bgkit.sandbox import sandbox_down, sandbox_up
from bgkit.sandbox.bastion import BASTION_ADDRESS
from bgkit.status import fleet_status
from bgkit.verify import verify
from tests.integration.sandbox_support import sandbox_ports, wait_lb_healthy

pytestmark = pytest.mark.slow


@pytest.fixture
def bastion_sandbox(tmp_path: Path) -> Iterator[Config]:
    state = tmp_path / "sbx-bastion"
    info = sandbox_up(state, hosts=2, bastion=True, **sandbox_ports())
    try:
        yield load_config(info.config_file)
    finally:
        sandbox_down(state)


def direct_login(config: Config) -> None:
    host = config.pools.blue.hosts[0]
    client = paramiko.SSHClient()
    client.load_host_keys(str(config.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(host.address, port=host.port or 22, username=host.user,
                       key_filename=str(config.identity_file), look_for_keys=False,
                       allow_agent=False, timeout=5)
    finally:
        client.close()


def test_deploy_status_and_verify_go_through_the_bastion(
        bastion_sandbox: Config, releases: dict[str, BuildResult]) -> None:
    config = bastion_sandbox
    assert config.ssh_config_file is not None
    assert "Include" in config.ssh_config_file.read_text()
    with pytest.raises(paramiko.AuthenticationException):
        direct_login(config)  # the deploy key is refused unless it comes from the bastion

    result = deploy(config, artifact=releases["1.0.0"].artifact)
    assert result.ok and result.pool == "green"
    wait_lb_healthy(config, "green")
    lb = get_provider(config)
    status = fleet_status(config, lb=lb)
    assert {h.release for h in status.hosts if h.host.pool == "green"} == {result.release}
    verdict = verify(config, lb=lb, expected_version="1.0.0", samples_per_host=60)
    assert verdict.verdict.overall == "pass", verdict.verdict.reasons()

    log_dir = config.path.parent / "log"
    hosts_log = (log_dir / "sshd-1.log").read_text()
    assert f"Accepted publickey for {config.pools.blue.hosts[0].user} from " \
        f"{BASTION_ADDRESS}" in hosts_log
    assert "Accepted publickey" in (log_dir / "sshd-bastion.log").read_text()
