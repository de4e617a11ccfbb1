"""The switch runbook as an operator uses it: JupyterLab in Chromium, one click, real traffic."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.lb import get_provider
from tests.browser.conftest import WAIT_MS
from tests.browser.lab_support import Lab, chromium_missing_outside_ci, copy_with_parameters
from tests.conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_missing_outside_ci(),
                       reason="/usr/bin/chromium is missing (apt-get install chromium); "
                              "under CI this test runs and fails instead"),
]

NOTEBOOK = "04_switch.ipynb"


@pytest.fixture
def switch_notebook(ready: Config, releases: dict[str, BuildResult], lab_root: Path) -> Path:
    """04_switch pointed at the ready sandbox and the 2.0.0 artifact, in lab_root."""
    target = lab_root / NOTEBOOK
    copy_with_parameters(REPO / "notebooks" / NOTEBOOK, target, config_path=str(ready.path),
                         release=str(releases["2.0.0"].artifact))
    return target


def run_all_cells(page: Page) -> None:
    """Run → Run All Cells, once the notebook's kernel has started and is idle (before
    that, JupyterLab would ask for a kernel instead of running anything)."""
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=WAIT_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator("#jp-mainmenu-run li[data-command='runmenu:run-all']").click()


def test_clicking_approve_in_jupyterlab_moves_traffic_to_the_new_release(
        ready: Config, switch_notebook: Path, jupyterlab: Lab, page: Page,
        offsite_requests: list[str], tmp_path: Path) -> None:
    lb = get_provider(ready)
    page.goto(jupyterlab.notebook_url(switch_notebook.name))
    run_all_cells(page)

    button = page.locator("button.widget-button")
    expect(button).to_have_text("Approve the switch", timeout=WAIT_MS)
    verdict = page.get_by_text(re.compile(r"^verdict: "))  # shown before the button
    assert verdict.inner_text() == "verdict: pass", verdict.locator("xpath=../..").inner_text()
    expect(button).to_be_enabled(timeout=WAIT_MS)
    assert lb.live_pool() == "blue"

    button.click()
    expect(button).to_have_text("switched", timeout=WAIT_MS)
    expect(button).to_be_disabled(timeout=WAIT_MS)
    outcome = page.get_by_text("switch: switched")
    expect(outcome).to_be_visible(timeout=WAIT_MS)
    outcome.scroll_into_view_if_needed(timeout=WAIT_MS)
    page.screenshot(path=tmp_path / "jupyterlab-switch.png")

    assert lb.live_pool() == "green"
    answer = httpx.get(f"{ready.lb.public_url}/", timeout=5, trust_env=False)
    assert answer.status_code == 200
    assert answer.headers["X-App-Version"] == "2.0.0"
    assert offsite_requests == []
