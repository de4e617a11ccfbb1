"""Fixtures for integration tests: releases built once, fresh sandboxes per test, one
real S3 server (SeaweedFS) per session with a fresh bucket per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgkit.artifact import BuildResult, build_release
from bgkit.config import Config, load_config
from bgkit.sandbox import sandbox_down, sandbox_up, seaweed
from tests.conftest import EXAMPLE_DIR
from tests.integration.s3_support import AWS_VARIABLES, isolated_aws_env
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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[seaweed.S3Server]:
    """SeaweedFS on free loopback ports, started once per session, stopped by pid."""
    folder = tmp_path_factory.mktemp("seaweedfs")
    server = seaweed.start(folder)
    try:
        yield server
    finally:
        seaweed.stop_server(folder)


@pytest.fixture
def aws_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's AWS settings are only what bgkit.toml names: none of the user's
    variables, ~/.aws files or instance metadata."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in isolated_aws_env(tmp_path, {}).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_bucket(s3_server: seaweed.S3Server, aws_isolated: None) -> str:
    """A new, empty bucket of the session's S3 server."""
    bucket = f"t-{secrets.token_hex(6)}"
    seaweed.create_bucket(s3_server, bucket)
    return bucket
