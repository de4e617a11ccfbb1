"""Operators in JupyterLab (Chromium): buttons act once, every click is archived, deploy
progress shows per host, and the archived report opens on its headline.

Screenshots of the key states are written beside each test's temporary files (their paths
are printed, so ``pytest -rP`` lists them).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.lb import get_provider
from bgkit.runbook import archive
from bgkit.switch import switch
from tests.browser.conftest import WAIT_MS
from tests.browser.lab_support import (
    Lab,
    chromium_missing_outside_ci,
    copy_with_parameters,
    run_all_cells,
)
from tests.conftest import REPO
from tests.integration.sandbox_support import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_missing_outside_ci(),
                       reason="/usr/bin/chromium is missing (apt-get install chromium); "
                              "under CI this test runs and fails instead"),
]


def shoot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=path, full_page=False)
    print(f"screenshot: {path}")


def archived(config: Config, step: str) -> list[Path]:
    return sorted(config.runs_dir.glob(f"*/*/*_{step}_*.ipynb"))


def open_notebook(page: Page, lab: Lab, root: Path, name: str, **parameters: str) -> None:
    copy_with_parameters(REPO / "notebooks" / name, root / name, **parameters)
    page.goto(lab.notebook_url(name))
    run_all_cells(page)


def test_a_double_click_switches_once_a_later_click_does_nothing_and_the_report_leads_with_it(
        ready: Config, releases: dict[str, BuildResult], jupyterlab: Lab, lab_root: Path,
        page: Page, tmp_path: Path, offsite_requests: list[str]) -> None:
    lb = get_provider(ready)
    release = releases["2.0.0"]
    open_notebook(page, jupyterlab, lab_root, "04_switch.ipynb", config_path=str(ready.path),
                  artifact=str(release.artifact))
    headline = page.get_by_text("green idle 2.0.0 vs blue live 1.0.0: 9/9 gates pass")
    expect(headline).to_be_visible(timeout=WAIT_MS)
    button = page.locator("button.bgkit-decision-button")
    expect(button).to_have_text(f"Switch to green, {release.release}", timeout=WAIT_MS)
    expect(button).to_be_enabled(timeout=WAIT_MS)
    button.scroll_into_view_if_needed()
    shoot(page, tmp_path, "1-before-the-decision")

    button.dblclick()
    expect(button).to_be_disabled(timeout=2_000)
    expect(page.locator(".bgkit-decision-status")).to_contain_text("s left", timeout=WAIT_MS)
    shoot(page, tmp_path, "2-watching-with-a-countdown")
    expect(button).to_have_text("switched", timeout=WAIT_MS)
    assert lb.live_pool() == "green"
    (run,) = archived(ready, "04_switch")
    run_id = run.stem.rsplit("_", 1)[-1]
    outcome = page.get_by_text("switch: switched")
    expect(outcome).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text(f"archived as run {run_id}", exact=False).first).to_be_visible()
    expect(page.get_by_text("watch your service's own metrics")).to_be_visible()
    outcome.scroll_into_view_if_needed()
    shoot(page, tmp_path, "3-switched-once")

    button.click(force=True)  # after completion: nothing may happen
    time.sleep(3)
    assert len(archived(ready, "04_switch")) == 1 and lb.live_pool() == "green"
    details = archive.show_run(run)
    assert details.metadata["front_door"] == "jupyterlab" and details.outcome == "succeeded"
    assert details.records["watch"]["value"]["ok"] is True

    report = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "bgkit.cli", "runs", "html", run_id,
                           "--config", str(ready.path), "-o", str(report), "--no-input"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    page.set_content(report.read_text())
    viewport = page.viewport_size
    assert viewport is not None
    for text in ("jupyterlab", "switch from blue to green", release.release,
                 "gates 9/9 pass", "succeeded"):
        found = page.get_by_text(text, exact=False).first
        expect(found).to_be_visible()
        box = found.bounding_box()
        assert box is not None and box["y"] + box["height"] <= viewport["height"], \
            f"{text!r} is not on the report's first screen"
    shoot(page, tmp_path, "4-report-first-screen")
    assert offsite_requests == []


def test_a_rollback_confirmed_then_the_tab_closed_still_completes_and_is_archived(
        ready: Config, releases: dict[str, BuildResult], jupyterlab: Lab, lab_root: Path,
        page: Page, tmp_path: Path) -> None:
    lb = get_provider(ready)
    assert switch(ready, lb=lb, expected_version="2.0.0", approve=True).exit_code == 0
    open_notebook(page, jupyterlab, lab_root, "05_rollback.ipynb",
                  config_path=str(ready.path))
    button = page.locator("button.bgkit-decision-button")
    expect(button).to_have_text(f"Roll back to blue, {releases['1.0.0'].release}",
                                 timeout=WAIT_MS)  # the last-live release, by id
    expect(button).to_be_enabled(timeout=WAIT_MS)
    button.click()
    page.close()  # the operator closes the tab right after confirming
    run = wait_for(lambda: archived(ready, "05_rollback"), timeout_s=180,
                   what="the rollback's archived run")[0]
    assert lb.live_pool() == "blue"
    details = archive.show_run(run)
    assert details.metadata["front_door"] == "jupyterlab"
    assert details.outcome == "succeeded"
    assert details.records["switch"]["value"]["to_pool"] == "blue"


def test_deploy_progress_shows_a_row_per_host_and_the_deploy_is_archived(
        ready: Config, releases: dict[str, BuildResult], jupyterlab: Lab, lab_root: Path,
        page: Page, tmp_path: Path) -> None:
    release = releases["3.0.0"]
    ready.dist_dir.mkdir(parents=True, exist_ok=True)
    for path in release.artifact.parent.glob(f"{release.release}.*"):
        shutil.copy2(path, ready.dist_dir / path.name)
    open_notebook(page, jupyterlab, lab_root, "02_deploy_green.ipynb",
                  config_path=str(ready.path))
    button = page.locator("button.bgkit-decision-button")
    expect(button).to_have_text("Deploy to green (idle)", timeout=WAIT_MS)
    page.locator(".widget-dropdown select").select_option(label=f"{release.release}.tar.gz")
    button.click()
    table = page.locator(".widget-html", has_text="deploy to green: one row per host")
    for host in ready.pools.green.hosts:
        expect(table.locator("tr", has_text=host.address)).to_be_visible(timeout=WAIT_MS)
    shoot(page, tmp_path, "1-deploy-progress")
    expect(button).to_have_text("deployed", timeout=WAIT_MS)
    for host in ready.pools.green.hosts:
        expect(table.locator("tr", has_text=host.address)).to_contain_text("done")
    table.scroll_into_view_if_needed()
    shoot(page, tmp_path, "2-deployed")
    (run,) = archived(ready, "02_deploy_green")
    details = archive.show_run(run)
    assert details.outcome == "succeeded" and details.metadata["front_door"] == "jupyterlab"
    assert details.records["deploy"]["value"]["release"] == release.release
