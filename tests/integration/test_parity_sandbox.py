"""Parity on real sandbox hosts (over SSH): both pools read and compared; a release that
needs a newer glibc than the hosts have is refused at preflight, nothing uploaded."""

from __future__ import annotations

import dataclasses

import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.errors import DeployError
from tests.integration.conftest import releases, sandbox  # noqa: F401 (fixtures)
from tests.integration.sandbox_support import make_ready

pytestmark = pytest.mark.slow


def test_sandbox_pools_are_read_over_ssh_and_compare_identical(
        sandbox: Config, releases: dict[str, BuildResult]) -> None:  # noqa: F811
    from bgkit.parity import collect

    report = collect(sandbox)
    table = report.table
    assert len(table) == len(sandbox.pools.blue.hosts) + len(sandbox.pools.green.hosts)
    assert table["error"].isna().all(), report.unread
    assert (table["cpus"] >= 1).all() and table["libc"].str.startswith("glibc ").all()
    assert report.differences == () and report.gate().verdict == "pass"


def test_a_release_needing_a_newer_glibc_is_refused_before_any_upload(
        sandbox: Config, releases: dict[str, BuildResult]) -> None:  # noqa: F811
    from bgkit.deploy import deploy
    from bgkit.release_check import artifact_for

    ready = make_ready(sandbox, releases)
    checked = artifact_for(ready, releases["3.0.0"].artifact)
    assert checked.glibc is not None  # recorded at build
    future = dataclasses.replace(checked, manifest={**checked.manifest, "glibc": "9.99"})
    with pytest.raises(DeployError) as failed:
        deploy(ready, release=future)
    message = str(failed.value)
    assert "failed at preflight" in message and "needs glibc 9.99 or newer" in message
    assert all(not host.uploaded and not host.moved for host in failed.value.results)


def test_verify_reads_parity_over_ssh_and_the_03_verify_notebook_shows_it(
        sandbox: Config, releases: dict[str, BuildResult]) -> None:  # noqa: F811
    from bgkit.lb import get_provider
    from bgkit.runbook.runner import run_step
    from bgkit.verify import verify

    ready = make_ready(sandbox, releases)
    result = verify(ready, lb=get_provider(ready), expected_version="2.0.0", parity=True)
    assert result.parity is not None and result.parity.differences == ()
    assert [g.gate for g in result.verdict.gates][-1] == "parity"
    assert result.to_dict()["parity"]["verdict"] == "pass"
    run = run_step("03_verify", config=ready,
                   parameters={"artifact": str(releases["2.0.0"].artifact)})
    text = run.path.read_text()
    assert "The pools&#x27; hosts match" in text or "The pools' hosts match" in text
    assert '"parity"' in text
