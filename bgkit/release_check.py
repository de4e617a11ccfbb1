"""Local checks of a release tarball before any host sees it.

The checks run on the exact bytes that are uploaded (the host verifies the same
sha256), so what a host unpacks is what was checked here.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bgkit.errors import UsageError
from bgkit.tarball import MANIFEST_NAME, sha256_file

__all__ = ["CheckedRelease", "check_release", "latest_release"]


@dataclass(frozen=True, slots=True)
class CheckedRelease:
    """A release tarball whose checksum and every member were checked."""

    path: Path
    release: str
    sha256: str
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def arch(self) -> str:
        return str(self.manifest.get("arch", ""))


def latest_release(dist_dir: Path) -> Path:
    """The newest tarball in ``dist_dir``. Raises UsageError when there is none."""
    tarballs = sorted(dist_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not tarballs:
        raise UsageError(f"no release in {dist_dir}: run `bgkit build` first, "
                         "or pass --release PATH")
    return tarballs[-1]


def check_release(path: Path) -> CheckedRelease:
    """Check the tarball against its ``.sha256`` file, its members and its manifest.

    Raises:
        UsageError: missing files, a checksum mismatch, or a member that could escape the
            release folder (absolute path, ``..``, a link leaving it, a device or FIFO).
    """
    if not path.is_file():
        raise UsageError(f"release {path} does not exist")
    checksum_file = path.with_name(path.name + ".sha256")
    if not checksum_file.is_file():
        raise UsageError(f"{checksum_file} is missing: releases come from `bgkit build`")
    expected = checksum_file.read_text().split(" ", 1)[0].strip()
    actual = sha256_file(path)
    if actual != expected:
        raise UsageError(f"checksum mismatch for {path.name}: the file has sha256 {actual}, "
                         f"{checksum_file.name} says {expected}; rebuild it")
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            manifest = _manifest(tar)
            _check_files(tar, manifest)
    except (tarfile.TarError, OSError, ValueError, KeyError) as error:
        raise UsageError(f"{path.name} is not a usable release: {error}") from error
    release = path.name.removesuffix(".tar.gz")
    if manifest.get("release") not in (None, release):
        raise UsageError(f"{path.name}: manifest names release {manifest['release']!r}")
    return CheckedRelease(path=path, release=release, sha256=actual, manifest=manifest)


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    normal = posixpath.normpath(name)
    if name.startswith("/") or normal == ".." or normal.startswith("../") or \
            ".." in name.split("/"):
        raise ValueError(f"member {name!r} would be written outside the release")
    if member.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(normal), member.linkname))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise ValueError(f"symlink {name!r} -> {member.linkname!r} points outside the release")
    elif member.islnk():
        raise ValueError(f"hard link {name!r}: releases hold files, folders and symlinks only")
    elif not (member.isfile() or member.isdir()):
        raise ValueError(f"member {name!r} is a device, FIFO or other special file")


def _manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    handle = tar.extractfile(MANIFEST_NAME)
    if handle is None:
        raise ValueError(f"{MANIFEST_NAME} is missing")
    manifest: dict[str, Any] = json.load(handle)
    for key in ("name", "version", "files", "executable"):
        if key not in manifest:
            raise ValueError(f"{MANIFEST_NAME} has no {key!r}")
    return manifest


def _check_files(tar: tarfile.TarFile, manifest: dict[str, Any]) -> None:
    for entry in manifest["files"]:
        if entry.get("type") != "file":
            continue
        handle = tar.extractfile(entry["path"])
        if handle is None:
            raise ValueError(f"{entry['path']} is listed in the manifest but not a file")
        if hashlib.sha256(handle.read()).hexdigest() != entry["sha256"]:
            raise ValueError(f"{entry['path']} does not match its sha256 in the manifest")
