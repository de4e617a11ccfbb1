"""--json on status, verify, deploy, switch, rollback and runs list: one JSON document on
stdout, of the documented shape, whatever the command prints to stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config
from tests.conftest import REPO
from tests.integration.conftest import releases, sandbox  # noqa: F401 (fixtures)
from tests.integration.sandbox_support import make_ready

pytestmark = pytest.mark.slow


@pytest.fixture
def ready(sandbox: Config, releases: dict[str, BuildResult]) -> Config:  # noqa: F811
    return make_ready(sandbox, releases)


def bgkit_json(config: Config, *args: str, code: int = 0) -> Any:
    done = subprocess.run([sys.executable, "-m", "bgkit.cli", *args, "--json", "--config",
                           str(config.path)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == code, done.stdout + done.stderr
    (line,) = done.stdout.splitlines()  # one document, nothing else on stdout
    return json.loads(line)


def test_every_json_output_has_its_documented_shape(
        ready: Config, releases: dict[str, BuildResult]) -> None:  # noqa: F811
    two, three = (str(releases[v].artifact) for v in ("2.0.0", "3.0.0"))
    status = bgkit_json(ready, "status")
    assert status["live_pool"] == "blue"
    assert {"pool", "live", "host", "release", "running", "health", "version",
            "lb"} <= set(status["hosts"][0])
    verified = bgkit_json(ready, "verify", "--artifact", two)
    assert (verified["verdict"]["verdict"], verified["exit_code"]) == ("pass", 0)
    assert verified["release"] == releases["2.0.0"].release
    switched = bgkit_json(ready, "switch", "--approve", "--artifact", two)
    assert (switched["outcome"], switched["exit_code"], switched["live_pool"]) == \
        ("switched", 0, "green")
    assert switched["release"] == releases["2.0.0"].release and switched["run_id"]
    back = bgkit_json(ready, "rollback", "--approve")
    assert (back["outcome"], back["live_pool"]) == ("rolled back", "blue")
    deployed = bgkit_json(ready, "deploy", "--artifact", three)
    assert deployed["deploy"]["release"] == releases["3.0.0"].release
    assert deployed["deploy"]["pool"] == "green" and len(deployed["hosts"]) == 2
    refused = bgkit_json(ready, "verify", "--artifact", two, code=1)
    assert refused["verdict"]["verdict"] == "fail" and refused["exit_code"] == 1
    listing = subprocess.run([sys.executable, "-m", "bgkit.cli", "runs", "list", "--json",
                              "--config", str(ready.path)], capture_output=True, text=True,
                             cwd=REPO, timeout=120)
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [row["step"] for row in rows] == ["04_switch", "05_rollback", "02_deploy_green"]
    assert {"time", "step", "run_id", "outcome", "operator", "release"} <= set(rows[0])
