"""manager = "systemd" against real sandbox hosts: a deploy reads the installed unit and
refuses a host whose unit is missing or differs, before anything on it changes.

The sandbox has no systemd (real systemd hosts are issue 13), so the installed unit is
read from a temporary ``[service.systemd].unit_dir`` and the restart itself fails.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bgkit.artifact import BuildResult
from bgkit.cli import main
from bgkit.commands import service
from bgkit.config import Config
from bgkit.deploy import deploy
from bgkit.errors import DeployError
from tests.integration.sandbox_support import rewrite_config

pytestmark = pytest.mark.slow


def systemd_config(sandbox: Config, unit_dir: Path, *, hosts: int = 2) -> Config:
    green = [h.model_dump() for h in sandbox.pools.green.hosts][:hosts]
    return rewrite_config(sandbox.path, {
        "service": {"manager": "systemd", "systemd": {"user": "root",
                                                      "unit_dir": str(unit_dir)}},
        "pools": {"green": {"hosts": green}}}, name="systemd.toml")


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() and not p.is_symlink() else "-"
            for p in sorted(folder.rglob("*")) if "/log/" not in p.as_posix()}


def test_a_missing_or_drifted_unit_is_refused_at_preflight_with_the_fix(
        sandbox: Config, releases: dict[str, BuildResult], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    config = systemd_config(sandbox, unit_dir)
    hosts = Path(sandbox.pools.green.hosts[0].deploy_root).parent
    before = tree(hosts)
    capsys.readouterr()
    code = main(["deploy", "--config", str(config.path), "--release",
                 str(releases["1.0.0"].artifact)])
    message = capsys.readouterr().err.replace("\n", " ")
    assert code == 1
    assert "failed at preflight on 2 of 2" in message
    assert f"the systemd unit {unit_dir}/hello-c.service is not installed" in message
    assert (f"bgkit host setup --config {config.path} --pool green --host 127.0.2.1 > "
            "setup.sh, then runs setup.sh as root on that host") in message
    assert tree(hosts) == before

    root = sandbox.pools.green.hosts[0].deploy_root
    rendered = service.render_unit(config, root=root)
    (unit_dir / "hello-c.service").write_text(rendered.replace("User=root",
                                                               "User=attacker"))
    with pytest.raises(DeployError, match="differs from the one bgkit.toml renders at line "
                       "8: the host has 'User=attacker', bgkit.toml renders 'User=root'"):
        deploy(config, release=releases["1.0.0"].artifact)
    assert tree(hosts) == before


def test_a_host_whose_unit_matches_passes_preflight_and_is_only_restarted(
        sandbox: Config, releases: dict[str, BuildResult], tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    config = systemd_config(sandbox, unit_dir, hosts=1)
    root = config.pools.green.hosts[0].deploy_root
    installed = unit_dir / "hello-c.service"
    installed.write_text(service.render_unit(config, root=root))
    with pytest.raises(DeployError, match="failed at activate") as caught:
        deploy(config, release=releases["1.0.0"].artifact)
    assert "restart failed" in str(caught.value)  # no systemd here: issue 13
    assert installed.read_text() == service.render_unit(config, root=root)
    assert sorted(p.name for p in unit_dir.iterdir()) == ["hello-c.service"]
    assert not list(Path(root, "shared").glob("*.service"))
