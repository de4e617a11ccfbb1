"""Hooks on the sandbox through the CLI: a failing pre_deploy hook leaves the idle pool as
it was and its secret out of the archive; the example pre_switch hook (an integration check
aimed at the idle pool) gates a real switch."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config
from tests.conftest import REPO
from tests.integration.conftest import releases, sandbox  # noqa: F401 (fixtures)
from tests.integration.sandbox_support import make_ready, rewrite_config

pytestmark = pytest.mark.slow

SECRET = "vault-issued-6f1c2d"  # what a careless migration prints


def bgkit(config: Config, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "bgkit.cli", *args, "--config",
                           str(config.path)], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, **(env or {})})


def versions(config: Config, pool: str) -> set[str]:
    seen = set()
    for host in config.pools.get(pool).hosts:
        url = f"http://{host.address}:{config.service.port}/version"
        with urllib.request.urlopen(url, timeout=5) as answer:
            seen.add(answer.headers["X-App-Version"])
    return seen


def archived(config: Config) -> list[str]:
    return [path.read_text() for path in sorted(config.runs_dir.rglob("*.ipynb"))]


def test_a_failing_pre_deploy_hook_changes_nothing_and_its_secret_stays_out(
        sandbox: Config, releases: dict[str, BuildResult]) -> None:  # noqa: F811
    ready = make_ready(sandbox, releases)
    migrate = ("import os; print('migrating with', os.environ['MIGRATION_DB_PASSWORD']); "
               "print('ERROR: relation orders is locked'); raise SystemExit(4)")
    config = rewrite_config(ready.path, {"hooks": {"pre_deploy": [sys.executable, "-c",
                                                                  migrate]}},
                            name="hooked.toml")
    before = versions(config, "green")
    done = bgkit(config, "deploy", "--artifact", str(releases["3.0.0"].artifact), "--json",
                 env={"MIGRATION_DB_PASSWORD": SECRET})
    assert done.returncode == 1, done.stdout + done.stderr
    assert versions(config, "green") == before == {"2.0.0"}
    report = json.loads(done.stdout)
    (hook,) = report["deploy"]["hooks"]
    assert (hook["name"], hook["exit_code"]) == ("pre_deploy", 4)
    assert "relation orders is locked" in hook["output_tail"]
    assert "migrating with ***" in hook["output_tail"]
    assert SECRET not in done.stdout + done.stderr
    (run,) = archived(config)
    assert "relation orders is locked" in run and SECRET not in run


def test_a_deploy_its_preflight_refuses_never_runs_the_pre_deploy_hook(
        sandbox: Config, releases: dict[str, BuildResult], tmp_path: Path) -> None:  # noqa: F811
    """A migration runs only for a deploy every host can take: a preflight refusal (here
    too little free disk) comes first."""
    ready = make_ready(sandbox, releases)
    marker = tmp_path / "migrated"
    config = rewrite_config(ready.path, {
        "deploy": {"min_free_mb": 2**31 - 1},  # about 2 PiB
        "hooks": {"pre_deploy": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]}},
        name="hooked-full.toml")
    done = bgkit(config, "deploy", "--artifact", str(releases["3.0.0"].artifact))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MiB free" in done.stderr and not marker.exists()
    assert versions(config, "green") == {"2.0.0"}


def test_the_example_pre_switch_hook_tests_the_idle_pool_before_traffic_moves(
        sandbox: Config, releases: dict[str, BuildResult]) -> None:  # noqa: F811
    ready = make_ready(sandbox, releases)
    example = REPO / "examples" / "hello-c" / "hooks" / "test_idle_pool.py"
    config = rewrite_config(ready.path, {"hooks": {"pre_switch": [sys.executable,
                                                                  str(example)]}},
                            name="hooked.toml")
    wrong = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                           timeout=60, env={"BGKIT_VERSION": "9.9.9", "BGKIT_HOST_URLS": " ".join(
                               f"http://{host.address}:{config.service.port}"
                               for host in config.pools.green.hosts)})
    assert wrong.returncode == 1 and wrong.stdout.count("FAIL") == 6, wrong.stdout
    done = bgkit(config, "switch", "--approve", "--artifact", str(releases["2.0.0"].artifact),
                 "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert (outcome["outcome"], outcome["live_pool"]) == ("switched", "green")
    (pre,) = [hook for hook in outcome["hooks"] if hook["name"] == "pre_switch"]
    assert pre["ok"] and "0 failure(s); expected version 2.0.0" in pre["output_tail"]
    assert pre["output_tail"].count("ok   http://127.") == 6  # 2 hosts x 3 paths
    assert any("0 failure(s)" in run for run in archived(config))
