"""bgkit release end to end on the sandbox, and the canary scan: no secret in runs/."""

from __future__ import annotations

import configparser
import shutil
from pathlib import Path

import pytest

from bgkit.config import Config
from bgkit.lb import get_provider
from bgkit.pipeline import PIPELINE_STEPS, release
from bgkit.runbook import archive
from bgkit.runbook.html import write_report
from bgkit.runbook.runner import run_step
from tests.conftest import EXAMPLE_DIR
from tests.integration.sandbox_support import rewrite_config, set_fault
from tests.integration.test_run_archive import write_notebook

pytestmark = pytest.mark.slow

CANARIES = {"DB_PASSWORD": "canary-db-7f3a9c", "OVH_APPLICATION_SECRET": "canary-ovh-as-51e2",
            "OVH_CONSUMER_KEY": "canary-ovh-ck-88b0", "DEPLOY_TOKEN": "canary-token-0d4e"}


@pytest.fixture
def canaries(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    return CANARIES


def fast(config: Config) -> Config:
    return rewrite_config(config.path, {"switch": {"samples_per_host": 60, "watch_s": 2},
                                        "gates": {"min_samples_per_host": 30}},
                          name="pipeline.toml")


def leaked(root: Path, secrets: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            hits += [f"{path}: {secret}" for secret in secrets if secret in text]
    return hits


def ovh_conf_secrets(config: Config) -> list[str]:
    """The OVH keys the sandbox wrote to its ovh.conf (empty for HAProxy)."""
    settings = config.lb.ovh_iplb or config.lb.ovh_cloud_lb
    if settings is None or settings.config_file is None:
        return []
    parser = configparser.ConfigParser()
    parser.read(config.resolve(settings.config_file))
    return [parser[s][k] for s in parser.sections() for k in parser[s]
            if k in ("application_key", "application_secret", "consumer_key")]


SANDBOXES = {"haproxy": "sandbox", "ovh-iplb": "ovh_sandbox", "ovh-cloud-lb": "cloud_sandbox"}


@pytest.mark.parametrize("provider", list(SANDBOXES))
def test_release_runs_every_step_under_one_pipeline_id_and_leaks_no_secret(
        provider: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # OVH_* canaries would replace the emulator's real keys, so the OVH run uses the
    # keys in the sandbox's ovh.conf as its canaries, plus the other variables.
    for name, value in CANARIES.items():
        if provider == "haproxy" or not name.startswith("OVH_"):
            monkeypatch.setenv(name, value)
    sandbox: Config = request.getfixturevalue(SANDBOXES[provider])
    config = fast(sandbox)
    result = release(config, approve=True, progress=False)
    assert result.ok, result.failed
    assert [run.step for run in result.runs] == list(PIPELINE_STEPS)
    ids = {archive.show_run(run.path).metadata["pipeline_id"] for run in result.runs}
    assert ids == {result.pipeline_id}
    assert get_provider(config).live_pool() == "green"
    reports = tmp_path / "reports"
    for run in result.runs:
        write_report(run.path, reports / f"{run.path.stem}.html")
        write_report(run.path, reports / f"{run.path.stem}-no-input.html", no_input=True)
    key_lines = [line for line in config.identity_file.read_text().splitlines()  # type: ignore[union-attr]
                 if line and not line.startswith("-----")]
    secrets = [*CANARIES.values(), *key_lines, *ovh_conf_secrets(config)]
    assert len(secrets) > len(CANARIES)
    assert leaked(config.runs_dir, secrets) == []
    assert leaked(reports, secrets) == []
    assert len(list(reports.glob("*.html"))) == 8


def test_a_failing_verify_stops_before_the_switch_with_the_live_pool_serving(
        sandbox: Config) -> None:
    config = fast(sandbox)
    assert release(config, approve=True, progress=False).ok
    for host in config.pools.blue.hosts:
        set_fault(Path(host.deploy_root), latency_ms=80)
    config = rewrite_config(config.path, {"gates": {"max_p99_ms": 50}}, name="slow.toml")
    second = release(config, approve=True, version="1.2.0", progress=False)
    assert second.failed is not None and "03_verify" in str(second.failed)
    assert [run.step for run in second.runs] == ["01_build", "02_deploy_green"]
    assert get_provider(config).live_pool() == "green"


def test_a_failing_build_stops_the_pipeline_before_any_host(sandbox: Config,
                                                             tmp_path: Path) -> None:
    source = tmp_path / "broken"
    shutil.copytree(EXAMPLE_DIR, source)
    (source / "src" / "app.c").write_text("this is not C;\n")
    config = rewrite_config(fast(sandbox).path, {"app": {"source_dir": str(source)}},
                            name="broken.toml")
    result = release(config, approve=True, progress=False)
    assert result.failed is not None and "01_build" in str(result.failed)
    assert result.runs == []
    assert all(not (Path(h.deploy_root) / "current").exists()
               for pool in ("blue", "green") for h in config.pools.get(pool).hosts)


def test_a_failing_deploy_stops_the_pipeline_with_the_live_pool_serving(
        sandbox: Config) -> None:
    config = fast(sandbox)
    first = release(config, approve=True, progress=False)
    assert first.ok and get_provider(config).live_pool() == "green"
    for host in config.pools.blue.hosts:
        set_fault(Path(host.deploy_root), health_status=503)
    config = rewrite_config(config.path, {"deploy": {"health_timeout_s": 2}}, name="short.toml")
    second = release(config, approve=True, version="1.1.0", progress=False)
    assert second.failed is not None and "02_deploy_green" in str(second.failed)
    assert [run.step for run in second.runs] == ["01_build"]
    assert get_provider(config).live_pool() == "green"
    table = archive.list_runs(config.runs_dir)
    assert list(table.loc[table["step"] == "02_deploy_green", "outcome"]) == [
        "succeeded", "failed"]


def test_a_secret_printed_by_a_cell_is_scrubbed_from_the_archive(
        sandbox: Config, canaries: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "notebooks"
    write_notebook(folder, "10_leaky", "import os\nprint('pw:', os.environ['DB_PASSWORD'])",
                   "from bgkit.runbook.record import record_outcome\nrecord_outcome('succeeded')")
    result = run_step("leaky", config=sandbox, notebooks_dir=folder, progress=False)
    text = result.path.read_text()
    assert canaries["DB_PASSWORD"] not in text
    assert "pw: ***" in text
    assert archive.show_run(result.path).metadata["secrets_scrubbed"] >= 1
