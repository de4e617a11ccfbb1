"""A release is checked before any host sees it: checksum, members, manifest."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from bgkit.errors import UsageError
from bgkit.release_check import check_release, latest_release

MANIFEST = {"name": "app", "version": "1.0", "release": "app-1.0-abc", "executable": "bin/app",
            "arch": "x86_64"}


def write_release(folder: Path, members: list[tarfile.TarInfo], *, files: dict[str, bytes],
                  manifest: dict[str, object] | None = None, name: str = "app-1.0-abc") -> Path:
    path = folder / f"{name}.tar.gz"
    entries = [{"path": p, "type": "file", "sha256": hashlib.sha256(d).hexdigest()}
               for p, d in files.items()]
    body = json.dumps({**MANIFEST, "files": entries, **(manifest or {})}).encode()
    with tarfile.open(path, "w:gz") as tar:
        for member_path, data in {**files, "manifest.json": body}.items():
            info = tarfile.TarInfo(member_path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for member in members:
            tar.addfile(member)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_a_good_release_passes_with_its_manifest(tmp_path: Path) -> None:
    path = write_release(tmp_path, [member("bin/app-link", tarfile.SYMTYPE, "app")],
                         files={"bin/app": b"\x7fELF"})
    checked = check_release(path)
    assert checked.release == "app-1.0-abc" and checked.version == "1.0"
    assert checked.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("bad", "message"), [
    (member("../evil"), "outside the release"),
    (member("/etc/cron.d/evil"), "outside the release"),
    (member("bin/../../evil"), "outside the release"),
    (member("bin/escape", tarfile.SYMTYPE, "../../etc/passwd"), "points outside"),
    (member("bin/abs", tarfile.SYMTYPE, "/etc/passwd"), "points outside"),
    (member("bin/hard", tarfile.LNKTYPE, "bin/app"), "hard link"),
    (member("dev/null", tarfile.CHRTYPE), "device, FIFO"),
    (member("fifo", tarfile.FIFOTYPE), "device, FIFO"),
])
def test_members_that_could_escape_or_are_special_are_refused(
        tmp_path: Path, bad: tarfile.TarInfo, message: str) -> None:
    path = write_release(tmp_path, [bad], files={"bin/app": b"x"})
    with pytest.raises(UsageError, match=message):
        check_release(path)


def test_a_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    path = write_release(tmp_path, [], files={"bin/app": b"x"})
    path.with_name(path.name + ".sha256").write_text("0" * 64 + f"  {path.name}\n")
    with pytest.raises(UsageError, match="checksum mismatch"):
        check_release(path)


def test_a_file_that_differs_from_its_manifest_entry_is_refused(tmp_path: Path) -> None:
    path = write_release(tmp_path, [], files={"bin/app": b"x"},
                         manifest={"files": [{"path": "bin/app", "type": "file",
                                              "sha256": "0" * 64}]})
    with pytest.raises(UsageError, match="does not match its sha256"):
        check_release(path)


def test_missing_checksum_file_or_release(tmp_path: Path) -> None:
    path = write_release(tmp_path, [], files={"bin/app": b"x"})
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(UsageError, match=r"\.sha256 is missing"):
        check_release(path)
    with pytest.raises(UsageError, match="does not exist"):
        check_release(tmp_path / "nope.tar.gz")


def test_latest_release_is_the_newest_tarball(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="run `bgkit build` first"):
        latest_release(tmp_path)
    old = write_release(tmp_path, [], files={"a": b"1"}, name="app-1")
    new = write_release(tmp_path, [], files={"a": b"2"}, name="app-2")
    import os

    os.utime(old, (1, 1))
    assert latest_release(tmp_path) == new
