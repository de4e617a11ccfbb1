"""Helpers that stand up a sandbox fleet for integration tests (loopback only)."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from bgkit.config import Config, load_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rewrite_config(path: Path, changes: dict[str, Any], *, name: str) -> Config:
    """A copy of a sandbox bgkit.toml with ``changes`` merged in, loaded."""
    from tests.conftest import merge

    data = merge(tomllib.loads(path.read_text()), changes)
    target = path.with_name(name)
    target.write_text(tomli_w.dumps(data))
    return load_config(target)


def set_fault(root: Path, **faults: object) -> None:
    """Rewrite the [faults] section of a sandbox host's shared config."""
    config = root / "shared" / "config.ini"
    text = config.read_text().split("[faults]")[0]
    lines = [f"{key} = {str(value).lower() if isinstance(value, bool) else value}"
             for key, value in faults.items()]
    config.write_text(text + "[faults]\n" + "\n".join(lines) + "\n")
