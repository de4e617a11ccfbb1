"""Shared fixtures: the repository's paths and bgkit.toml files written for a test."""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

REPO = Path(__file__).resolve().parents[1]

# Every port a test's sandbox, emulator, object store or JupyterLab listens on comes from
# this worker's own range, below the kernel's ephemeral ports: parallel workers
# (pytest-xdist, `-n`) never pick the same port, and the load tests' outgoing connections
# never take one between its pick and its bind: 10000-32767 shared out between the workers.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
_SPAN = (32768 - 10000) // _WORKERS
_BASE = 10000 + _SPAN * (int(_WORKER) % _WORKERS if _WORKER.isdigit() else 0)
os.environ["BGKIT_PORT_RANGE"] = f"{_BASE}-{_BASE + _SPAN - 1}"
EXAMPLE_DIR = REPO / "examples" / "hello-c"
EXAMPLE_CONFIG = EXAMPLE_DIR / "bgkit.toml"


def example_data() -> dict[str, Any]:
    """The shipped example bgkit.toml as a dict (a fresh copy each call)."""
    return copy.deepcopy(tomllib.loads(EXAMPLE_CONFIG.read_text()))


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write a bgkit.toml into tmp_path: the example, with its outputs kept in tmp_path."""

    def write(changes: dict[str, Any] | None = None, *, name: str = "bgkit.toml") -> Path:
        data = merge(example_data(), {
            "app": {"source_dir": str(EXAMPLE_DIR), "dist_dir": str(tmp_path / "dist")},
            "runs": {"dir": str(tmp_path / "runs")},
        })
        merge(data, changes or {})
        path = tmp_path / name
        path.write_text(tomli_w.dumps(data))
        return path

    return write
