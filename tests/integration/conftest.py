"""Fixtures for integration tests: releases built once, fresh sandboxes per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgkit.artifact import BuildResult, build_release
from bgkit.config import Config, load_config
from bgkit.sandbox import sandbox_down, sandbox_up
from tests.conftest import EXAMPLE_DIR
from tests.integration.sandbox_support import make_ready, sandbox_ports

VERSIONS = ("1.0.0", "2.0.0", "3.0.0", "4.0.0")


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    """The sample service built once per test session in several versions."""
    base = tmp_path_factory.mktemp("releases")
    text = (EXAMPLE_DIR / "bgkit.toml").read_text()
    text = text.replace('source_dir = "."', f'source_dir = "{EXAMPLE_DIR}"')
    text = text.replace('dist_dir = "../../dist"', f'dist_dir = "{base}/dist"')
    (base / "bgkit.toml").write_text(text)
    config = load_config(base / "bgkit.toml")
    return {version: build_release(config, version=version) for version in VERSIONS}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Config]:
    """A fresh two-hosts-per-pool sandbox on free loopback ports; its config."""
    state = tmp_path / "sbx"
    info = sandbox_up(state, hosts=2, **sandbox_ports())
    try:
        yield load_config(info.config_file)
    finally:
        sandbox_down(state)


@pytest.fixture
def ovh_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Config]:
    """The same fleet with the OVH API emulator in front of HAProxy (provider ovh-iplb)."""
    for name in [name for name in os.environ if name.startswith("OVH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state = tmp_path / "sbx-ovh"
    info = sandbox_up(state, hosts=2, lb="ovh-iplb", **sandbox_ports())
    try:
        yield load_config(info.config_file)
    finally:
        sandbox_down(state)


@pytest.fixture
def cloud_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Config]:
    """The same fleet with the OVH API emulator in front of HAProxy as a Public Cloud
    Load Balancer (provider ovh-cloud-lb)."""
    for name in [name for name in os.environ if name.startswith("OVH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state = tmp_path / "sbx-cloud"
    info = sandbox_up(state, hosts=2, lb="ovh-cloud-lb", **sandbox_ports())
    try:
        yield load_config(info.config_file)
    finally:
        sandbox_down(state)


@pytest.fixture
def ready(sandbox: Config, releases: dict[str, BuildResult]) -> Config:
    """HAProxy sandbox: blue live on 1.0.0, green idle on 2.0.0, both healthy."""
    return make_ready(sandbox, releases)


@pytest.fixture
def ready_ovh(ovh_sandbox: Config, releases: dict[str, BuildResult]) -> Config:
    """The same through the OVH API emulator."""
    return make_ready(ovh_sandbox, releases)


@pytest.fixture
def ready_cloud(cloud_sandbox: Config, releases: dict[str, BuildResult]) -> Config:
    """The same through the emulator as a Public Cloud Load Balancer."""
    return make_ready(cloud_sandbox, releases)
