"""What may stand in a release: the rules on its members' names, kinds and links (pure).

A release unpacks into its own folder and nothing in it may reach past that folder. The
rules, applied alike when ``bgkit build`` writes a tarball and when a tarball is checked
before a deploy:

- a member's path is a plain relative path (``bin/app``): no leading ``/``, no ``..``,
  ``.`` or empty part, no control character (C0, DEL, C1), each path once;
- members are files, folders or symlinks: no hard links, devices, FIFOs;
- every folder a member lies in is itself a member, and a folder: nothing is ever
  written through a link;
- every symlink, followed through the release's own links as the kernel would, stays
  inside the release;
- the top-level names ``manifest.json`` and ``.bgkit*`` belong to bgkit.

Each rule raises :class:`ValueError` with a message naming the member and the rule.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "BLOCK_BYTES",
    "MANIFEST_NAME",
    "MAX_LINK_HOPS",
    "Member",
    "check_name",
    "check_tree",
    "has_control_character",
    "member_of",
    "resolve_link",
    "unpacked_bytes",
]

MANIFEST_NAME = "manifest.json"
RESERVED_PREFIX = ".bgkit"
MAX_LINK_HOPS = 40  # as Linux's own limit on symlinks followed in one path
BLOCK_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a release as its header describes it."""

    path: str
    kind: str  # "file" | "dir" | "symlink"
    size: int = 0
    target: str = ""


def has_control_character(text: str) -> bool:
    """True if ``text`` holds a C0 control (NUL, CR, LF, tab...), DEL or a C1 control."""
    return _CONTROL.search(text) is not None


def check_name(path: str) -> None:
    """Refuse a member path that is not a plain relative path inside the release."""
    if has_control_character(path):
        raise ValueError(f"member {path!r} has a control character in its name")
    parts = path.split("/")
    if path.startswith("/") or ".." in parts:
        raise ValueError(f"member {path!r} would be written outside the release")
    if any(part in ("", ".") for part in parts):
        raise ValueError(f"member {path!r} is not a plain relative path (expected names "
                         "like bin/app, without '.', '//' or a trailing '/')")
    if parts[0].startswith(RESERVED_PREFIX):
        raise ValueError(f"member {path!r}: names starting with {RESERVED_PREFIX!r} at the "
                         "top of a release are reserved for bgkit")


def member_of(info: tarfile.TarInfo) -> Member:
    """The :class:`Member` a tar header describes; refuses special files and hard links."""
    check_name(info.name)
    if info.issym():
        return Member(info.name, "symlink", target=info.linkname)
    if info.islnk():
        raise ValueError(f"hard link {info.name!r}: releases hold files, folders and "
                         "symlinks only")
    if info.isdir():
        return Member(info.name, "dir")
    if info.isfile():
        return Member(info.name, "file", size=info.size)
    raise ValueError(f"member {info.name!r} is a device, FIFO or other special file")


def check_tree(members: Sequence[Member]) -> None:
    """Apply every rule above to a release's members (``manifest.json`` included, if any)."""
    kinds: dict[str, str] = {}
    for member in members:
        check_name(member.path)
        if member.path in kinds:
            raise ValueError(f"member {member.path!r} appears twice in the release")
        kinds[member.path] = member.kind
    if kinds.get(MANIFEST_NAME, "file") != "file":
        raise ValueError(f"{MANIFEST_NAME} must be a regular file, not a {kinds[MANIFEST_NAME]}")
    for member in members:
        _check_parents(member.path, kinds)
    links = {m.path: m.target for m in members if m.kind == "symlink"}
    for path in links:
        resolve_link(path, links)


def _check_parents(path: str, kinds: Mapping[str, str]) -> None:
    parts = path.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        kind = kinds.get(parent)
        if kind == "symlink":
            raise ValueError(f"member {path!r} lies below the symlink {parent!r}: nothing in "
                             "a release may be written through a link")
        if kind is None:
            raise ValueError(f"member {path!r} lies in the folder {parent!r}, which is not a "
                             "member: a release holds each of its folders as a member")
        if kind != "dir":
            raise ValueError(f"member {path!r} lies below the {kind} {parent!r}")


def resolve_link(path: str, links: Mapping[str, str]) -> str:
    """Where the symlink ``path`` leads, following ``links`` (path -> target) as the kernel.

    Returns the release-relative path it reaches ("" for the release folder itself).

    Raises:
        ValueError: the link, or a link it goes through, leads outside the release, is
            absolute or empty, or more than :data:`MAX_LINK_HOPS` links are followed.
    """
    position = path.split("/")[:-1]
    pending = _target_parts(path, links[path], path)
    hops = 1
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not position:
                raise ValueError(f"symlink {path!r} -> {links[path]!r} points outside the "
                                 "release" + _through(path, hops))
            position.pop()
            continue
        position.append(part)
        here = "/".join(position)
        if here in links:
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise ValueError(f"symlink {path!r} goes through more than {MAX_LINK_HOPS} "
                                 "links (a loop?)")
            position.pop()
            pending = _target_parts(here, links[here], path) + pending
    return "/".join(position)


def _target_parts(link: str, target: str, origin: str) -> list[str]:
    if has_control_character(target):
        raise ValueError(f"symlink {link!r} has a control character in its target")
    if not target or target.startswith("/"):
        raise ValueError(f"symlink {link!r} -> {target!r} points outside the release"
                         + ("" if link == origin else f" (followed from {origin!r})"))
    return target.split("/")


def _through(path: str, hops: int) -> str:
    return "" if hops == 1 else f" once the {hops - 1} link(s) it goes through are followed"


def unpacked_bytes(members: Iterable[Member]) -> int:
    """Space the members take once unpacked: each rounded up to a 4 KiB block."""
    blocks = 0
    for member in members:
        blocks += max(1, -(-member.size // BLOCK_BYTES)) if member.kind == "file" else 1
    return blocks * BLOCK_BYTES
