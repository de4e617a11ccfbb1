"""The release, not the label: another build of the same version is not the release."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bgkit.artifact import BuildResult, build_release
from bgkit.config import Config, load_config
from bgkit.lb import get_provider
from bgkit.switch import switch
from bgkit.verify import verify
from tests.conftest import EXAMPLE_DIR, REPO
from tests.integration.sandbox_support import Load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """hello-c 2.0.0 rebuilt from a changed copy of its source: same version, other build."""
    base = tmp_path_factory.mktemp("rebuilt")
    source = base / "hello-c"
    shutil.copytree(EXAMPLE_DIR, source, ignore=shutil.ignore_patterns("build*"))
    app = source / "src" / "app.c"
    app.write_text(app.read_text() + "\n/* a local change, never committed */\n")
    text = (source / "bgkit.toml").read_text()
    (source / "bgkit.toml").write_text(
        text.replace('dist_dir = "../../dist"', f'dist_dir = "{base}/dist"'))
    return build_release(load_config(source / "bgkit.toml"), version="2.0.0")


def test_a_pool_serving_another_build_of_the_same_version_fails_the_gate_and_never_goes_live(
        ready: Config, releases: dict[str, BuildResult], rebuilt: BuildResult) -> None:
    deployed = releases["2.0.0"].release  # what green serves
    assert rebuilt.release != deployed and rebuilt.manifest["version"] == "2.0.0"
    lb = get_provider(ready)
    evidence = verify(ready, lb=lb, expected_version="2.0.0", samples_per_host=60,
                      rate_per_s=400, release=rebuilt.release)
    assert evidence.verdict.overall == "fail"
    reasons = "; ".join(evidence.verdict.reasons())
    assert deployed in reasons and rebuilt.release in reasons and "another build" in reasons
    with Load(ready) as load:
        outcome = switch(ready, lb=lb, expected_version="2.0.0", approve=True,
                         release=rebuilt.release)
    assert outcome.ended == "refused" and outcome.exit_code == 1, outcome.reason
    assert "another build" in outcome.reason
    assert lb.live_pool() == "blue" and set(load.versions_after(0)) == {"1.0.0"}
    cli = subprocess.run([sys.executable, "-m", "bgkit.cli", "verify", "--samples", "60",
                          "--artifact", str(rebuilt.artifact), "--config", str(ready.path)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert cli.returncode == 1 and "another build" in cli.stdout, cli.stdout + cli.stderr
    # The release that was verified passes, of course.
    good = verify(ready, lb=lb, expected_version="2.0.0", samples_per_host=60,
                  rate_per_s=400, release=deployed)
    assert good.verdict.overall == "pass", good.verdict.reasons()

