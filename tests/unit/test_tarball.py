"""Release tarballs are byte-for-byte reproducible and refuse what cannot be released."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest

from bgkit.tarball import (
    FIXED_MTIME,
    elf_arch,
    read_manifest,
    staged_files,
    write_tarball,
)


def make_stage(root: Path, *, mtime: int, umask_mode: int) -> Path:
    stage = root / "stage"
    (stage / "bin").mkdir(parents=True)
    (stage / "conf").mkdir()
    (stage / "conf" / "config.ini").write_text("[server]\nport = 8080\n")
    binary = stage / "bin" / "app"
    binary.write_bytes(b"\x7fELF-not-really")
    binary.chmod(0o700 | umask_mode)
    (stage / "bin" / "app-current").symlink_to("app")
    for path in [stage, *stage.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return stage


def build(root: Path, *, mtime: int, umask_mode: int) -> bytes:
    stage = make_stage(root, mtime=mtime, umask_mode=umask_mode)
    out = root / "release.tar.gz"
    write_tarball(stage, staged_files(stage), {"name": "app"}, out)
    return out.read_bytes()


def test_the_same_files_give_identical_bytes_whatever_their_times_and_modes(
        tmp_path: Path) -> None:
    first = build(tmp_path / "a", mtime=1_000_000_000, umask_mode=0o000)
    second = build(tmp_path / "b", mtime=1_700_000_000, umask_mode=0o055)
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


def test_gzip_header_has_no_timestamp_and_no_file_name(tmp_path: Path) -> None:
    data = build(tmp_path, mtime=1_600_000_000, umask_mode=0)
    flags, mtime = data[3], int.from_bytes(data[4:8], "little")
    assert mtime == 0
    assert flags & 0x08 == 0  # FNAME
    assert gzip.decompress(data)


def test_entries_are_sorted_owned_by_root_with_fixed_mtime(tmp_path: Path) -> None:
    build(tmp_path, mtime=1_600_000_000, umask_mode=0o022)
    with tarfile.open(tmp_path / "release.tar.gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == ["bin", "bin/app", "bin/app-current", "conf", "conf/config.ini",
                     "manifest.json"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "", "", FIXED_MTIME)}
    modes = {m.name: m.mode for m in members}
    assert modes["bin/app"] == 0o755
    assert modes["conf/config.ini"] == 0o644
    assert read_manifest(tmp_path / "release.tar.gz") == {"name": "app"}


def test_manifest_entries_carry_sha256_of_each_file(tmp_path: Path) -> None:
    stage = make_stage(tmp_path, mtime=0, umask_mode=0)
    entries = {e.path: e.to_manifest() for e in staged_files(stage)}
    expected = hashlib.sha256((stage / "conf" / "config.ini").read_bytes()).hexdigest()
    assert entries["conf/config.ini"]["sha256"] == expected
    assert entries["bin/app-current"] == {"path": "bin/app-current", "type": "symlink",
                                          "mode": "0777", "target": "app"}


def test_a_symlink_leaving_the_release_is_refused(tmp_path: Path) -> None:
    stage = make_stage(tmp_path, mtime=0, umask_mode=0)
    (stage / "conf" / "escape").symlink_to("../../../etc/passwd")
    with pytest.raises(ValueError, match="symlink 'conf/escape' .* points outside the release"):
        staged_files(stage)


def test_an_absolute_symlink_is_refused(tmp_path: Path) -> None:
    stage = make_stage(tmp_path, mtime=0, umask_mode=0)
    (stage / "abs").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="symlink 'abs' -> '/etc/passwd' points outside"):
        staged_files(stage)


@pytest.mark.parametrize(("make", "message"), [
    (lambda stage: (stage / ".bgkit-sha256").write_text("x"), "reserved for bgkit"),
    (lambda stage: (stage / "manifest.json").write_text("{}"), "keeps for the release's manifest"),
    (lambda stage: (stage / "conf" / "a\rb").write_text("x"), "control character"),
    (lambda stage: (stage / "conf" / "loop").symlink_to("loop"), "more than 40 links"),
], ids=["reserved", "manifest", "carriage-return", "link-loop"])
def test_the_build_refuses_what_a_deploy_would_refuse(tmp_path: Path, make: Any,
                                                      message: str) -> None:
    stage = make_stage(tmp_path, mtime=0, umask_mode=0)
    make(stage)
    with pytest.raises(ValueError, match=message):
        staged_files(stage)


def test_a_staged_link_chain_leaving_the_release_is_refused(tmp_path: Path) -> None:
    stage = make_stage(tmp_path, mtime=0, umask_mode=0)
    (stage / "a1" / "a2" / "a3").mkdir(parents=True)
    (stage / "a1" / "a2" / "a3" / "p").symlink_to("../../..")
    (stage / "conf" / "live").symlink_to("../a1/a2/a3/p/../../../x")
    with pytest.raises(ValueError, match="symlink 'conf/live' .* points outside"):
        staged_files(stage)


def test_the_manifest_lists_every_folder_and_link(tmp_path: Path) -> None:
    stage = make_stage(tmp_path, mtime=0, umask_mode=0)
    listed = {(entry.path, entry.kind) for entry in staged_files(stage)}
    assert listed == {("bin", "dir"), ("conf", "dir"), ("bin/app", "file"),
                      ("conf/config.ini", "file"), ("bin/app-current", "symlink")}


def test_sockets_and_fifos_are_refused(tmp_path: Path) -> None:
    stage = make_stage(tmp_path, mtime=0, umask_mode=0)
    os.mkfifo(stage / "pipe")
    with pytest.raises(ValueError, match="pipe: only files, folders and symlinks"):
        staged_files(stage)
    (stage / "pipe").unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(stage / "sock"))
        with pytest.raises(ValueError, match="sock: only files"):
            staged_files(stage)


def test_elf_arch_reads_the_machine_field(tmp_path: Path) -> None:
    assert elf_arch(Path("/bin/sh")) in {"x86_64", "aarch64"}
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert elf_arch(text) == "not-elf"
