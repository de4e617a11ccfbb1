"""The remote layout commands do what they say when a real shell runs them."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

from bgkit.commands import remote
from bgkit.release_tree import Member


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


def tarball_of(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def info(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    made = tarfile.TarInfo(name)
    made.type, made.linkname, made.mode = kind, target, 0o755
    return made


def test_the_install_marker_is_never_written_through_a_link_in_the_release(
        tmp_path: Path) -> None:
    outside = tmp_path / "live" / "shared" / "config.ini"
    outside.parent.mkdir(parents=True)
    outside.write_text("live config\n")
    root = tmp_path / "idle"
    layout = remote.Layout(str(root), "app-1")
    assert sh(remote.make_root(layout)).returncode == 0
    digest = tarball_of(Path(layout.incoming), [
        (info("bin", tarfile.DIRTYPE), b""), (info("bin/app"), b"#!/bin/sh\n"),
        (info(".bgkit-sha256", tarfile.SYMTYPE, "../../../live/shared/config.ini"), b"")])
    assert sh(remote.extract(layout)).returncode == 0
    assert sh(remote.install_release(layout, digest)).returncode == 0
    assert outside.read_text() == "live config\n"
    assert Path(layout.marker).read_text() == f"{digest}\n"
    assert remote.parse_preflight(sh(remote.preflight(layout)).stdout).installed_sha256 == digest


def test_stage_installs_only_the_tree_that_was_checked(tmp_path: Path) -> None:
    root = tmp_path / "host root"
    layout = remote.Layout(str(root), "app-1")
    assert sh(remote.make_root(layout)).returncode == 0
    members = [(info("bin", tarfile.DIRTYPE), b""), (info("bin/app"), b"#!/bin/sh\n"),
               (info("bin/alias", tarfile.SYMTYPE, "app"), b"")]
    digest = tarball_of(Path(layout.incoming), members)
    checked = [Member("bin", "dir"), Member("bin/app", "file", 10),
               Member("bin/alias", "symlink", target="app")]
    command = remote.stage(layout, sha256=digest, executable="bin/app",
                           tree=remote.tree_digest(checked))
    done = sh(command)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "releases" / "app-1" / "bin" / "alias").readlink() == Path("app")

    other = remote.Layout(str(root), "app-2")
    digest = tarball_of(Path(other.incoming), [*members, (info("bin/extra"), b"x")])
    done = sh(remote.stage(other, sha256=digest, executable="bin/app",
                           tree=remote.tree_digest(checked)))
    assert done.returncode == remote.STAGE_UNEXPECTED_TREE
    found, _ = remote.parse_stage(done.returncode, done.stdout)
    assert len(found) == 64
    assert not Path(other.partial_dir).exists() and not Path(other.incoming).exists()
    assert not Path(other.release_dir).exists()


def test_prune_removes_a_release_and_its_marker(tmp_path: Path) -> None:
    layout = remote.Layout(str(tmp_path), "app-1")
    Path(layout.release_dir).mkdir(parents=True)
    Path(layout.marker).write_text("x\n")
    assert sh(remote.prune(layout, ["app-1"])).returncode == 0
    assert list(Path(layout.releases).iterdir()) == []


def release_members(tarball: Path) -> list[Member]:
    from bgkit.release_tree import member_of

    with tarfile.open(tarball) as tar:
        return [member_of(info) for info in tar.getmembers()]


def test_stage_refuses_a_wrong_checksum_and_names_the_one_it_found(tmp_path: Path) -> None:
    layout = remote.Layout(str(tmp_path / "root"), "app-1")
    assert sh(remote.make_root(layout)).returncode == 0
    digest = make_tarball(Path(layout.incoming), b"one")
    tree = remote.tree_digest(release_members(Path(layout.incoming)))
    answer = sh(remote.stage(layout, sha256="0" * 64, executable="bin/app", tree=tree))
    assert answer.returncode == remote.STAGE_BAD_CHECKSUM
    assert remote.parse_stage(answer.returncode, answer.stdout) == (digest, [])
    assert not Path(layout.incoming).exists() and not Path(layout.release_dir).exists()


def test_stage_names_the_libraries_ldd_cannot_find(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "foo.c").write_text("int foo(void) { return 1; }\n")
    (build / "app.c").write_text("int foo(void);\nint main(void) { return foo(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(build / "libbgkitmissing.so"),
                    str(build / "foo.c")], check=True)
    layout = remote.Layout(str(tmp_path / "root"), "app-1")
    assert sh(remote.make_root(layout)).returncode == 0
    source = tmp_path / "src" / "bin"
    source.mkdir(parents=True)
    subprocess.run(["gcc", "-o", str(source / "app"), str(build / "app.c"), f"-L{build}",
                    "-lbgkitmissing"], check=True)
    with tarfile.open(layout.incoming, "w:gz") as tar:
        tar.add(source, arcname="bin")
    digest = hashlib.sha256(Path(layout.incoming).read_bytes()).hexdigest()
    tree = remote.tree_digest(release_members(Path(layout.incoming)))
    answer = sh(remote.stage(layout, sha256=digest, executable="bin/app", tree=tree))
    assert answer.returncode == remote.STAGE_MISSING_LIBRARIES, answer.stdout + answer.stderr
    assert remote.parse_stage(answer.returncode, answer.stdout) == ("", ["libbgkitmissing.so"])
    assert not Path(layout.release_dir).exists()
