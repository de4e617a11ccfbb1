"""Local checks of a release tarball before any host sees it.

The checks run on the exact bytes that are uploaded (the host verifies the same
sha256), so what a host unpacks is what was checked here. In order:

1. the file name is a release name (``<name>-<version>-<commit>``, no control characters);
2. the sha256 matches the ``.sha256`` file beside it;
3. every member obeys :mod:`bgkit.release_tree` (no escape through names or links);
4. the members are exactly those ``manifest.json`` lists, of the kinds, link targets and
   sizes it gives; the total unpacked size is within ``max_unpacked_mb``;
5. every file's sha256, read in 1 MiB blocks, matches the manifest.

Sizes are checked from the headers before a byte of content is read, so a sparse or
compressed-to-nothing member costs no memory.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bgkit.errors import UsageError
from bgkit.release_tree import MANIFEST_NAME, Member, check_tree, member_of, unpacked_bytes
from bgkit.tarball import sha256_file

if TYPE_CHECKING:
    from bgkit.config import Config

__all__ = [
    "DEFAULT_MAX_UNPACKED_MB",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBERS",
    "CheckedRelease",
    "artifact_for",
    "check_artifact",
    "check_matches_config",
    "check_release_name",
    "latest_artifact",
]

DEFAULT_MAX_UNPACKED_MB = 512
MAX_MEMBERS = 100_000
MAX_MANIFEST_BYTES = 16 << 20
_BLOCK = 1 << 20
_RELEASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_KINDS = ("file", "dir", "symlink")


@dataclass(frozen=True, slots=True)
class CheckedRelease:
    """A release tarball whose checksum and every member were checked.

    ``unpacked_bytes`` is the space its members take once unpacked (4 KiB blocks).
    ``kept_on_hosts``: no tarball here; the release was found installed, the same on
    every host of the pool (``bgkit deploy --release``), and ``manifest`` read there.
    """

    path: Path
    release: str
    sha256: str
    manifest: dict[str, Any]
    members: tuple[Member, ...] = ()
    unpacked_bytes: int = 0
    kept_on_hosts: bool = False

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def arch(self) -> str:
        return str(self.manifest.get("arch", ""))

    @property
    def glibc(self) -> str | None:
        """The newest glibc symbol version the release needs (``"2.34"``); None when it
        needs none, or was built by a bgkit that did not record it."""
        value = self.manifest.get("glibc")
        return value if isinstance(value, str) else None


def latest_artifact(dist_dir: Path) -> Path:
    """The newest artifact (tarball) in ``dist_dir``. Raises UsageError when there is none."""
    tarballs = sorted(dist_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not tarballs:
        raise UsageError(f"no artifact in {dist_dir}: run `bgkit build` first, "
                         "or pass --artifact PATH")
    return tarballs[-1]


def artifact_for(config: Config, artifact: Path | None) -> CheckedRelease:
    """``artifact`` (default: the newest in ``[app].dist_dir``) checked once, for the
    app ``config`` describes: the release every later step carries.

    Raises:
        UsageError: as :func:`check_artifact` and :func:`check_matches_config` say.
    """
    checked = check_artifact(artifact or latest_artifact(config.dist_dir),
                             max_unpacked_mb=config.deploy.max_unpacked_mb)
    check_matches_config(checked, name=config.app.name, executable=config.service.executable)
    return checked


def check_release_name(file_name: str) -> str:
    """The release id of a tarball's file name (``<release>.tar.gz``).

    Raises:
        UsageError: the name holds anything but letters, digits, '.', '_', '+' or '-'
            (a control character, a space, a quote...), or is longer than 200 characters.
    """
    release = file_name.removesuffix(".tar.gz")
    if not file_name.endswith(".tar.gz") or not _RELEASE_NAME.fullmatch(release):
        raise UsageError(f"release file name {file_name!r} is not a release name: expected "
                         "<release>.tar.gz where <release> is letters, digits, '.', '_', '+' "
                         "or '-' (at most 200, as `bgkit build` names it); rename or rebuild it")
    return release


def check_artifact(path: Path, *,
                   max_unpacked_mb: int = DEFAULT_MAX_UNPACKED_MB) -> CheckedRelease:
    """Check the artifact (tarball) against its ``.sha256`` file, its members and its
    manifest; the release it holds.

    Raises:
        UsageError: a bad file name, missing files, a checksum mismatch, a member that
            could escape the release folder (absolute path, ``..``, a link leaving it or
            one it lies below, a device or FIFO), a reserved name, a member the manifest
            does not list or lists differently, or more than ``max_unpacked_mb`` MiB unpacked.
    """
    release = check_release_name(path.name)
    if not path.is_file():
        raise UsageError(f"release {path} does not exist")
    actual = _checked_sha256(path)
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            infos = _headers(tar)
            members = [member_of(info) for info in infos]
            check_tree(members)
            manifest = _manifest(tar, infos)
            _check_listing(members, manifest["files"])
            total = unpacked_bytes(members)
            _check_size(total, max_unpacked_mb)
            _check_hashes(tar, infos, manifest["files"])
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, KeyError,
            TypeError, RecursionError) as error:
        raise UsageError(f"{path.name} is not a usable release: {error}") from error
    if manifest.get("release") not in (None, release):
        raise UsageError(f"{path.name}: manifest names release {manifest['release']!r}")
    return CheckedRelease(path=path, release=release, sha256=actual, manifest=manifest,
                          members=tuple(members), unpacked_bytes=total)


def check_matches_config(checked: CheckedRelease, *, name: str, executable: str) -> None:
    """The release is one of this app's: its manifest names ``[app].name`` and it holds
    ``[service].executable`` (a file, or a link to one).

    Raises:
        UsageError: another app's release (a ``dist_dir`` shared by two apps), or the
            executable is missing; no host is contacted.
    """
    found = checked.manifest.get("name")
    if found != name:
        raise UsageError(f"{checked.path.name} is a release of {found!r}, not of {name!r} "
                         "([app].name): refusing to deploy another app's release (does "
                         "another app share [app].dist_dir?)")
    kinds = {m.path: m.kind for m in checked.members}
    if kinds.get(executable) not in ("file", "symlink"):
        files = sorted(e["path"] for e in checked.manifest.get("files", ())
                       if e.get("type") == "file" and _executable_mode(e.get("mode")))
        raise UsageError(f"{checked.path.name} holds no {executable} ([service].executable); "
                         f"its executables are: {', '.join(files) or 'none'}")


def _executable_mode(mode: object) -> bool:
    try:
        return bool(int(str(mode), 8) & 0o111)
    except ValueError:
        return False


def _checked_sha256(path: Path) -> str:
    checksum_file = path.with_name(path.name + ".sha256")
    if not checksum_file.is_file():
        raise UsageError(f"{checksum_file} is missing: releases come from `bgkit build`")
    with checksum_file.open(errors="replace") as handle:
        expected = handle.read(200).split(" ", 1)[0].strip()
    actual = sha256_file(path)
    if actual != expected:
        raise UsageError(f"checksum mismatch for {path.name}: the file has sha256 {actual}, "
                         f"{checksum_file.name} says {expected}; rebuild it")
    return actual


def _headers(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member header, refusing more than :data:`MAX_MEMBERS` of them."""
    infos: list[tarfile.TarInfo] = []
    for info in tar:
        infos.append(info)
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"more than {MAX_MEMBERS} members; a release holds fewer")
    return infos


def _manifest(tar: tarfile.TarFile, infos: Sequence[tarfile.TarInfo]) -> dict[str, Any]:
    info = next((i for i in infos if i.name == MANIFEST_NAME), None)
    if info is None:
        raise ValueError(f"{MANIFEST_NAME} is missing")
    if info.size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{MANIFEST_NAME} is {info.size} bytes, more than the "
                         f"{MAX_MANIFEST_BYTES} a manifest may hold")
    handle = tar.extractfile(info)
    if handle is None:
        raise ValueError(f"{MANIFEST_NAME} is not a file")
    manifest = json.load(handle)
    if not isinstance(manifest, dict):
        raise ValueError(f"{MANIFEST_NAME} is not a JSON object")
    for key in ("name", "version", "files", "executable"):
        if key not in manifest:
            raise ValueError(f"{MANIFEST_NAME} has no {key!r}")
    _check_entries(manifest["files"])
    return manifest


def _check_entries(entries: object) -> None:
    if not isinstance(entries, list):
        raise ValueError(f"{MANIFEST_NAME}: 'files' is not a list")
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and entry.get("type") in _KINDS):
            raise ValueError(f"{MANIFEST_NAME}: entry {str(entry)[:100]!r} is not "
                             "{path, type: file|dir|symlink, ...}")


def _check_listing(members: Sequence[Member], entries: Sequence[Mapping[str, Any]]) -> None:
    """The tarball holds exactly what the manifest lists (besides manifest.json itself)."""
    listed: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        if entry["path"] in listed:
            raise ValueError(f"{MANIFEST_NAME} lists {entry['path']!r} twice")
        listed[entry["path"]] = entry
    present = {m.path: m for m in members if m.path != MANIFEST_NAME}
    for member in present.values():
        found = listed.get(member.path)
        if found is None:
            raise ValueError(f"member {member.path!r} is not listed in {MANIFEST_NAME}: a "
                             "release holds exactly the files, folders and links it lists")
        _compare(member, found)
    missing = sorted(set(listed) - set(present) - {MANIFEST_NAME})
    if missing:
        raise ValueError(f"{MANIFEST_NAME} lists {missing[0]!r} but the tarball has no such "
                         "member")


def _compare(member: Member, entry: Mapping[str, Any]) -> None:
    name = member.path
    if entry["type"] != member.kind:
        raise ValueError(f"{name!r} is a {member.kind} in the tarball but a {entry['type']} "
                         f"in {MANIFEST_NAME}")
    if member.kind == "symlink" and entry.get("target") != member.target:
        raise ValueError(f"symlink {name!r} points at {member.target!r} but {MANIFEST_NAME} "
                         f"says {entry.get('target')!r}")
    if member.kind == "file" and entry.get("size", member.size) != member.size:
        raise ValueError(f"{name!r} is {member.size} bytes in the tarball but "
                         f"{MANIFEST_NAME} says {entry.get('size')}")


def _check_size(total: int, max_unpacked_mb: int) -> None:
    if total > max_unpacked_mb << 20:
        raise ValueError(f"its members take {-(-total // (1 << 20))} MiB unpacked, more than "
                         f"[deploy].max_unpacked_mb = {max_unpacked_mb}")


def _check_hashes(tar: tarfile.TarFile, infos: Sequence[tarfile.TarInfo],
                  entries: Sequence[Mapping[str, Any]]) -> None:
    """Each file's sha256 against its entry, in tarball order (the gzip stream read once)."""
    listed = {entry["path"]: entry for entry in entries}
    for info in infos:
        if not info.isfile() or info.name == MANIFEST_NAME:
            continue
        handle = tar.extractfile(info)
        if handle is None or _sha256(handle) != listed[info.name].get("sha256"):
            raise ValueError(f"{info.name} does not match its sha256 in the manifest")


def _sha256(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(_BLOCK), b""):
        digest.update(block)
    return digest.hexdigest()
