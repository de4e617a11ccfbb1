"""Fixtures for browser tests: a ready sandbox, JupyterLab on loopback, headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from bgkit.artifact import BuildResult
from bgkit.config import Config
from tests.browser.lab_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Lab,
    is_loopback,
    start_jupyterlab,
    stop_jupyterlab,
)
from tests.integration.conftest import releases, sandbox  # noqa: F401 (fixtures used here)
from tests.integration.sandbox_support import make_ready

WAIT_MS = 120_000  # the longest any single browser wait may take


@pytest.fixture
def ready(sandbox: Config, releases: dict[str, BuildResult]) -> Config:  # noqa: F811
    """Blue live on 1.0.0, green idle on 2.0.0, both healthy."""
    return make_ready(sandbox, releases)


@pytest.fixture
def lab_root(tmp_path: Path) -> Path:
    """The folder JupyterLab serves (a test writes its notebooks here)."""
    root = tmp_path / "lab"
    root.mkdir()
    return root


@pytest.fixture
def jupyterlab(lab_root: Path, tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab serving lab_root on 127.0.0.1; shut down with its kernels afterwards."""
    lab = start_jupyterlab(lab_root, state_dir=tmp_path / "jupyter")
    try:
        yield lab
    finally:
        stop_jupyterlab(lab)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright; closed afterwards."""
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing and CI is set: `make apt` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS, timeout=WAIT_MS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def offsite_requests() -> list[str]:
    """Requests the page tried to send beyond 127.0.0.1 (each one refused)."""
    return []


@pytest.fixture
def page(browser: Browser, offsite_requests: list[str], tmp_path: Path) -> Iterator[Page]:
    """A fresh page that may only reach 127.0.0.1; screenshot of it kept at teardown."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})

    def guard(route: Route) -> None:
        if is_loopback(route.request.url):
            route.continue_()
        else:
            offsite_requests.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", guard)
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    try:
        yield opened
    finally:
        try:
            if not opened.is_closed():  # a test may close its tab on purpose
                opened.screenshot(path=tmp_path / "page-at-teardown.png")
        finally:
            context.close()
