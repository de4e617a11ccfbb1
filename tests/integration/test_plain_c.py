"""The plain-c example: a CMake C server that knows nothing of bgkit (GNUInstallDirs, no
version header, no tests, binds the address on its command line, exits at once on
SIGTERM) goes live and back under load with nothing but its bgkit.toml."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bgkit.artifact import BuildResult, build_release
from bgkit.config import Config, load_config
from bgkit.deploy import deploy
from bgkit.lb import get_provider
from bgkit.loadgen import LoadGenerator
from bgkit.sandbox import sandbox_down, sandbox_up
from bgkit.switch import rollback, switch
from tests.conftest import REPO
from tests.integration.sandbox_support import flip, sandbox_ports, wait_lb_healthy

pytestmark = pytest.mark.slow

PLAIN_DIR = REPO / "examples" / "plain-c"


@pytest.fixture(scope="module")
def plain_releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    """plain-c built from its own bgkit.toml (only dist_dir moved), in two versions."""
    base = tmp_path_factory.mktemp("plain-releases")
    text = (PLAIN_DIR / "bgkit.toml").read_text()
    text = text.replace('source_dir = "."', f'source_dir = "{PLAIN_DIR}"')
    text = text.replace('dist_dir = "../../dist-plain-c"', f'dist_dir = "{base}/dist"')
    text = text.replace('template = "deploy/', f'template = "{PLAIN_DIR}/deploy/')
    (base / "bgkit.toml").write_text(text)
    config = load_config(base / "bgkit.toml")
    return {version: build_release(config, version=version) for version in ("1.0.0", "2.0.0")}


@pytest.fixture
def plain_sandbox(tmp_path: Path) -> Iterator[Config]:
    state = tmp_path / "sbx-plain"
    info = sandbox_up(state, hosts=2, source=PLAIN_DIR, **sandbox_ports())
    try:
        yield load_config(info.config_file)
    finally:
        sandbox_down(state)


def test_the_release_holds_what_its_bgkit_toml_asks_for(
        plain_releases: dict[str, BuildResult]) -> None:
    manifest = plain_releases["1.0.0"].manifest
    paths = {entry["path"] for entry in manifest["files"]}
    assert "usr/bin/plain-c" in paths and "share/www/index.html" in paths
    assert not any(path.startswith("usr/share/doc") for path in paths)  # component "server"
    assert manifest["name"] == "plain-c" and manifest["arch"] == "x86_64"


def test_plain_c_goes_live_and_back_under_load_with_no_failed_request(
        plain_sandbox: Config, plain_releases: dict[str, BuildResult]) -> None:
    config, lb = plain_sandbox, get_provider(plain_sandbox)
    first = deploy(config, artifact=plain_releases["1.0.0"].artifact)
    assert first.pool == "green" and first.ok
    wait_lb_healthy(config, "green")
    flip(config, "green")  # recorded on the hosts, as a switch records it
    url = f"{config.lb.public_url}/"
    with LoadGenerator(url, version_header="X-Bgkit-Pool", max_seconds=240) as load:
        second = deploy(config, artifact=plain_releases["2.0.0"].artifact)
        assert second.pool == "blue" and all(h.restarted for h in second.hosts)
        wait_lb_healthy(config, "blue")
        went = switch(config, lb=lb, expected_version="2.0.0", approve=True)
        assert went.ended == "switched", went.reason
        assert went.watch is not None and "X-Bgkit-Pool" in went.watch.signal
        assert went.evidence is not None
        assert "read over SSH" in went.evidence.version_signal
        back = rollback(config, lb=lb, approve=True)
        assert back.ended == "rolled back", back.reason
    assert load.report.failed == 0, load.report.errors
    assert load.report.sent > 100
    assert set(load.report.versions) == {"blue", "green"}
    assert lb.live_pool() == "green"


def test_host_files_are_rendered_per_host_published_once_and_recorded(
        plain_sandbox: Config, plain_releases: dict[str, BuildResult]) -> None:
    result = deploy(plain_sandbox, artifact=plain_releases["1.0.0"].artifact)
    host = plain_sandbox.pools.green.hosts[0]
    conf = Path(host.deploy_root) / "shared" / "plain-c.conf"
    assert conf.stat().st_mode & 0o777 == 0o640
    assert f"X-Release: {result.release}" in conf.read_text()
    served = httpx.get(f"http://{host.address}:{plain_sandbox.service.port}/", timeout=5)
    assert served.headers["X-Served-By"] == "green-1"
    files = result.files_table()
    assert list(files["changed"]) == [True, True]
    assert files["sha256"].str.len().tolist() == [64, 64]

    again = deploy(plain_sandbox, artifact=plain_releases["1.0.0"].artifact)
    assert [h.restarted for h in again.hosts] == [False, False]
    assert list(again.files_table()["changed"]) == [False, False]
    assert list(again.files_table()["sha256"]) == list(files["sha256"])
