"""The remote layout commands do what they say when a real shell runs them."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

from bgkit.commands import remote


def sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)


def make_tarball(path: Path, content: bytes) -> str:
    source = path.parent / "src"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "app").write_bytes(content)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source / "bin", arcname="bin")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_stage_swap_and_prune_on_a_real_filesystem_with_a_hostile_root(tmp_path: Path) -> None:
    root = tmp_path / "it's a; root"
    first = remote.Layout(str(root), "app-1")
    assert sh(remote.make_root(first)).returncode == 0
    digest = make_tarball(Path(first.incoming), b"one")
    assert remote.parse_sha256sum(sh(remote.sha256sum(first.incoming)).stdout) == digest
    assert sh(remote.extract(first)).returncode == 0
    assert sh(remote.install_release(first, digest)).returncode == 0
    assert (root / "releases" / "app-1" / "bin" / "app").read_bytes() == b"one"
    assert not Path(first.incoming).exists()

    pre = remote.parse_preflight(sh(remote.preflight(first)).stdout)
    assert pre.installed_sha256 == digest and pre.current == "" and pre.writable

    assert sh(remote.swap_current(first)).returncode == 0
    assert (root / "current" / "bin" / "app").read_bytes() == b"one"
    second = remote.Layout(str(root), "app-2")
    (root / "releases" / "app-2").mkdir()
    assert sh(remote.swap_current(second)).returncode == 0
    assert (root / "current").readlink() == Path("releases/app-2")
    assert (root / "previous").readlink() == Path("releases/app-1")

    releases, current, previous = remote.parse_releases(sh(remote.list_releases(second)).stdout)
    assert (current, previous) == ("app-2", "app-1")
    assert sorted(name for name, _ in releases) == ["app-1", "app-2"]
    doomed = remote.releases_to_prune(releases, keep=1, current=current, previous=previous)
    assert doomed == []


def test_preflight_on_a_root_that_does_not_exist_yet_changes_nothing(tmp_path: Path) -> None:
    layout = remote.Layout(str(tmp_path / "not" / "yet"), "r")
    answer = remote.parse_preflight(sh(remote.preflight(layout)).stdout)
    assert answer.free_kb > 0 and answer.writable and answer.current == ""
    assert not (tmp_path / "not").exists()


def test_the_sandbox_supervisor_starts_from_current_and_stops_with_sigterm(
        tmp_path: Path) -> None:
    import time

    from bgkit.commands import service
    from bgkit.config import parse_config
    from tests.conftest import example_data, merge

    config = parse_config(merge(example_data(), {"service": {
        "manager": "sandbox", "args": ["{shared}/marker"], "drain_timeout_s": 3}}),
        path="bgkit.toml")
    root = tmp_path / "host root"
    program = root / "releases" / "r1" / "bin" / "hello-c"
    program.parent.mkdir(parents=True)
    program.write_text('#!/bin/sh\ntrap \'echo drained > "$1.term"; exit 0\' TERM\n'
                       'echo "$PWD" > "$1"\nwhile :; do sleep 0.05; done\n')
    program.chmod(0o755)
    (root / "current").symlink_to("releases/r1")
    commands = service.service_commands(config, root=str(root))
    assert sh(commands.is_running).returncode != 0
    assert sh(commands.restart).returncode == 0
    marker = root / "shared" / "marker"
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text().strip() == str(root / "releases" / "r1")  # started in current
    assert sh(commands.is_running).returncode == 0
    started = time.monotonic()
    assert sh(commands.stop).returncode == 0
    assert time.monotonic() - started < 2.5
    assert (root / "shared" / "marker.term").read_text().strip() == "drained"
    assert sh(commands.is_running).returncode != 0
    assert not (root / "shared" / "run" / "service.pid").exists()
