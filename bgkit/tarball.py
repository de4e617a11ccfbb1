"""Reproducible release tarballs and their manifest.

The same staged files always give the same bytes: entries sorted by path, fixed
mtime, uid/gid 0 with empty owner names, normalised modes, and a gzip header with
neither a file name nor a timestamp. Build time and host never enter the tarball.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bgkit.release_tree import MANIFEST_NAME, Member, check_tree

__all__ = [
    "FIXED_MTIME",
    "MANIFEST_NAME",
    "FileEntry",
    "elf_arch",
    "read_manifest",
    "sha256_file",
    "staged_files",
    "write_tarball",
]

FIXED_MTIME = 315532800  # 1980-01-01T00:00:00Z, the earliest time zip and most tools accept
_ELF_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64",
                 21: "ppc64", 22: "s390x"}


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One staged path as it will stand in the release."""

    path: str
    kind: str  # "file" | "dir" | "symlink"
    mode: int
    size: int = 0
    sha256: str = ""
    target: str = ""

    def to_manifest(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.path, "type": self.kind, "mode": f"{self.mode:04o}"}
        if self.kind == "file":
            entry.update(size=self.size, sha256=self.sha256)
        if self.kind == "symlink":
            entry["target"] = self.target
        return entry


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def staged_files(stage: Path) -> list[FileEntry]:
    """Every path below ``stage``, sorted, with normalised modes.

    The staged tree must obey the rules of :mod:`bgkit.release_tree`, so that a built
    release always passes the checks a deploy makes.

    Raises:
        ValueError: a device, FIFO or socket, a symlink leaving the stage, a name with a
            control character, or a name bgkit reserves (``manifest.json``, ``.bgkit*``).
    """
    entries = sorted(_walk(stage), key=lambda entry: entry.path)
    if any(entry.path == MANIFEST_NAME for entry in entries):
        raise ValueError(f"{MANIFEST_NAME}: the install step staged a file of that name, "
                         "which bgkit keeps for the release's manifest")
    check_tree([Member(e.path, e.kind, e.size, e.target) for e in entries])
    return entries


def _walk(stage: Path) -> Iterator[FileEntry]:
    for folder, dirnames, filenames in os.walk(stage):
        for name in [*dirnames, *filenames]:
            full = Path(folder) / name
            relative = full.relative_to(stage).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                yield FileEntry(relative, "symlink", 0o777, target=str(full.readlink()))
            elif stat.S_ISDIR(info.st_mode):
                yield FileEntry(relative, "dir", 0o755)
            elif stat.S_ISREG(info.st_mode):
                mode = 0o755 if info.st_mode & 0o111 else 0o644
                yield FileEntry(relative, "file", mode, info.st_size, sha256_file(full))
            else:
                raise ValueError(f"{relative}: only files, folders and symlinks can be released")


def write_tarball(stage: Path, entries: list[FileEntry], manifest: dict[str, Any],
                  out: Path) -> None:
    """Write ``entries`` from ``stage`` plus ``manifest.json`` to ``out`` (gzip, deterministic)."""
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    members = sorted([*entries, FileEntry(MANIFEST_NAME, "file", 0o644, len(manifest_bytes))],
                     key=lambda entry: entry.path)
    with out.open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in members:
            info = _tarinfo(entry)
            if entry.path == MANIFEST_NAME:
                tar.addfile(info, io.BytesIO(manifest_bytes))
            elif entry.kind == "file":
                with (stage / entry.path).open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)


def _tarinfo(entry: FileEntry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.size = entry.size
    return info


def read_manifest(tarball: Path) -> dict[str, Any]:
    """The manifest.json inside a release tarball."""
    with tarfile.open(tarball, mode="r:gz") as tar:
        member = tar.extractfile(MANIFEST_NAME)
        if member is None:
            raise ValueError(f"{tarball}: {MANIFEST_NAME} is not a file")
        manifest: dict[str, Any] = json.load(member)
        return manifest


def elf_arch(path: Path) -> str:
    """The CPU architecture an ELF executable was built for (e.g. ``x86_64``)."""
    with path.open("rb") as handle:
        header = handle.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return "not-elf"
    little = header[5] == 1
    machine = int.from_bytes(header[18:20], "little" if little else "big")
    return _ELF_MACHINES.get(machine, f"elf-machine-{machine}")
