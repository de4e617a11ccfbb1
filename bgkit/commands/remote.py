"""Remote shell commands for the release layout on a host, and parsers of their output.

    <root>/releases/<release>/   one folder per release, never changed once in place
    <root>/releases/.<release>.sha256   the tarball's sha256, written once it is installed
    <root>/current -> releases/<release>    swapped atomically (temporary link + mv -T)
    <root>/previous -> releases/<release>   what current pointed at before the last swap
    <root>/shared/                host-local config, pid files and logs; outlives releases
    <root>/.incoming/             uploads waiting to be checked and unpacked

Every value is quoted with ``shlex.quote``; these functions only build strings. bgkit
writes nothing inside a release folder after unpacking it: the install marker stands
beside it, where no member of a release can reach.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bgkit.release_tree import Member

__all__ = [
    "Layout",
    "Preflight",
    "check_libraries",
    "discard",
    "extract",
    "install_release",
    "list_releases",
    "make_root",
    "missing_libraries",
    "parse_preflight",
    "parse_releases",
    "parse_sha256sum",
    "parse_stage",
    "preflight",
    "prune",
    "read_file",
    "releases_to_prune",
    "sha256sum",
    "stage",
    "swap_current",
    "tree_digest",
]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one release lives under one host's deploy root."""

    root: str
    release: str

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def release_dir(self) -> str:
        return f"{self.releases}/{self.release}"

    @property
    def partial_dir(self) -> str:
        return f"{self.releases}/.{self.release}.partial"

    @property
    def marker(self) -> str:
        """The installed release's sha256, beside its folder (never inside it)."""
        return f"{self.releases}/.{self.release}.sha256"

    @property
    def incoming(self) -> str:
        return f"{self.root}/.incoming/{self.release}.tar.gz"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def previous(self) -> str:
        return f"{self.root}/previous"

    @property
    def shared(self) -> str:
        return f"{self.root}/shared"


def _q(value: str) -> str:
    return shlex.quote(value)


@dataclass(frozen=True, slots=True)
class Preflight:
    """What a host said before anything on it changed."""

    arch: str
    free_kb: int
    writable: bool
    current: str  # release name current points at, "" if none
    installed_sha256: str  # sha256 recorded for this release if already installed, else ""


def preflight(layout: Layout) -> str:
    """Report arch, free space, writability, current release and install state. No changes."""
    root, marker, release = _q(layout.root), _q(layout.marker), _q(layout.release_dir)
    return "; ".join([
        f"probe={root}",
        'while [ ! -d "$probe" ]; do probe=$(dirname "$probe"); done',
        "printf 'arch=%s\\n' \"$(uname -m)\"",
        "printf 'free_kb=%s\\n' \"$(df -Pk \"$probe\" | awk 'NR==2 {print $4}')\"",
        "if [ -w \"$probe\" ]; then echo writable=yes; else echo writable=no; fi",
        f"printf 'current=%s\\n' \"$(readlink {_q(layout.current)} 2>/dev/null || true)\"",
        f"printf 'installed=%s\\n' \"$([ -d {release} ] && cat -- {marker} 2>/dev/null "
        "|| true)\"",
    ])


def parse_preflight(text: str) -> Preflight:
    """Parse :func:`preflight` output. Raises ValueError naming a missing or bad field."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        free_kb = int(fields["free_kb"])
        return Preflight(arch=fields["arch"].strip(), free_kb=free_kb,
                         writable=fields["writable"].strip() == "yes",
                         current=fields["current"].strip().rsplit("/", 1)[-1],
                         installed_sha256=fields["installed"].strip())
    except (KeyError, ValueError) as error:
        raise ValueError(f"unexpected preflight output ({error}): {text[:200]!r}") from error


def make_root(layout: Layout) -> str:
    """Create the layout's folders (idempotent)."""
    folders = [layout.releases, f"{layout.root}/.incoming", layout.shared,
               f"{layout.shared}/run", f"{layout.shared}/log"]
    return "mkdir -p -- " + " ".join(_q(folder) for folder in folders)


def sha256sum(path: str) -> str:
    return f"sha256sum -- {_q(path)}"


def parse_sha256sum(text: str) -> str:
    digest = text.strip().split(" ", 1)[0].lstrip("\\")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"unexpected sha256sum output: {text[:200]!r}")
    return digest


def extract(layout: Layout) -> str:
    """Unpack the uploaded tarball into the release's partial folder (replacing a stale one).

    The tarball's members were checked locally and its checksum on the host, so what is
    unpacked here is exactly what was checked.
    """
    partial, incoming = _q(layout.partial_dir), _q(layout.incoming)
    return (f"rm -rf -- {partial} && mkdir -p -- {partial} && "
            f"tar -xzf {incoming} -C {partial} --no-same-owner --no-same-permissions")


def check_libraries(layout: Layout, executable: str) -> str:
    """``ldd`` of the unpacked executable; its output goes to :func:`missing_libraries`."""
    return f"ldd -- {_q(layout.partial_dir + '/' + executable)} 2>&1 || true"


def missing_libraries(ldd_output: str) -> list[str]:
    """Library names ``ldd`` could not resolve (``libfoo.so.1 => not found``)."""
    return [line.split("=>", 1)[0].strip() for line in ldd_output.splitlines()
            if "=> not found" in line]


STAGE_BAD_CHECKSUM = 3
STAGE_MISSING_LIBRARIES = 4
STAGE_UNEXPECTED_TREE = 5
_LISTING = ("\\( -type f -printf 'f %s %P\\n' \\) -o \\( -type d -printf 'd %P\\n' \\) -o "
            "\\( -type l -printf 'l %P -> %l\\n' \\) -o -printf '? %P\\n'")


def tree_digest(members: Iterable[Member]) -> str:
    """sha256 of the listing :func:`stage` takes of an unpacked release with these members.

    One line per member (``f <size> <path>``, ``d <path>``, ``l <path> -> <target>``),
    sorted by bytes, as ``find -printf | LC_ALL=C sort`` gives them on the host.
    """
    lines = sorted(_listing_line(m).encode("utf-8", "surrogateescape") for m in members)
    return hashlib.sha256(b"".join(line + b"\n" for line in lines)).hexdigest()


def _listing_line(member: Member) -> str:
    if member.kind == "file":
        return f"f {member.size} {member.path}"
    if member.kind == "symlink":
        return f"l {member.path} -> {member.target}"
    return f"d {member.path}"


def stage(layout: Layout, *, sha256: str, executable: str, tree: str) -> str:
    """After upload, in one round trip: verify the checksum, unpack, compare the unpacked
    tree with the one checked locally (``tree``: :func:`tree_digest`), check ``ldd``, install.

    Exits 3 (printing ``checksum=<found>``) on a checksum mismatch, 5 (printing
    ``tree=<found>``) when tar on the host unpacked something else than was checked, and
    4 (printing one ``missing=<library>`` line each) when libraries are missing; each
    cleans up the upload and the partial unpack. See :func:`parse_stage`.
    """
    incoming, partial = _q(layout.incoming), _q(layout.partial_dir)
    binary = _q(f"{layout.partial_dir}/{executable}")
    return "; ".join([
        f"found=$(sha256sum -- {incoming} | cut -d ' ' -f 1)",
        f'if [ "$found" != {_q(sha256)} ]; then echo "checksum=$found"; '
        f"rm -f -- {incoming}; exit {STAGE_BAD_CHECKSUM}; fi",
        f"{extract(layout)} || exit 1",
        f"tree=$(find {partial} -mindepth 1 {_LISTING} | LC_ALL=C sort | sha256sum "
        "| cut -d ' ' -f 1)",
        f'if [ "$tree" != {_q(tree)} ]; then echo "tree=$tree"; '
        f"rm -rf -- {partial} {incoming}; exit {STAGE_UNEXPECTED_TREE}; fi",
        f"missing=$(ldd -- {binary} 2>&1 | awk '/=> not found/ {{print $1}}')",
        f'if [ -n "$missing" ]; then printf \'missing=%s\\n\' $missing; '
        f"rm -rf -- {partial} {incoming}; exit {STAGE_MISSING_LIBRARIES}; fi",
        f"{install_release(layout, sha256)} || exit 1",
    ])


def parse_stage(exit_code: int, text: str) -> tuple[str, list[str]]:
    """(checksum or tree digest found on the host or "", missing libraries) from
    :func:`stage`'s answer."""
    fields = [line.split("=", 1) for line in text.splitlines() if "=" in line]
    key = "tree" if exit_code == STAGE_UNEXPECTED_TREE else "checksum"
    found = next((value for name, value in fields if name == key), "")
    missing = [value for name, value in fields if name == "missing"]
    if exit_code in (STAGE_BAD_CHECKSUM, STAGE_UNEXPECTED_TREE) and not found:
        raise ValueError(f"unexpected stage output: {text[:200]!r}")
    return found, missing


def install_release(layout: Layout, sha256: str) -> str:
    """Move the partial folder into place atomically, then write its marker beside it."""
    partial, final, marker = _q(layout.partial_dir), _q(layout.release_dir), _q(layout.marker)
    return (f"rm -f -- {marker} && rm -rf -- {final} && mv -T -- {partial} {final} && "
            f"printf '%s\\n' {_q(sha256)} > {marker} && rm -f -- {_q(layout.incoming)}")


def swap_current(layout: Layout) -> str:
    """Point ``current`` at the release (temporary link + ``mv -T``), keeping ``previous``."""
    target = _q(f"releases/{layout.release}")
    cur_tmp, prev_tmp = _q(f"{layout.root}/.current.tmp"), _q(f"{layout.root}/.previous.tmp")
    return "; ".join([
        "set -e",
        f"old=$(readlink {_q(layout.current)} 2>/dev/null || true)",
        f'if [ -n "$old" ] && [ "$old" != {target} ]; then '
        f'ln -sfn -- "$old" {prev_tmp} && mv -T -- {prev_tmp} {_q(layout.previous)}; fi',
        f"ln -sfn -- {target} {cur_tmp}",
        f"mv -T -- {cur_tmp} {_q(layout.current)}",
        f"test \"$(readlink {_q(layout.current)})\" = {target}",
    ])


def list_releases(layout: Layout) -> str:
    """Each release folder with its modification time, and where current/previous point."""
    return "; ".join([
        f"find {_q(layout.releases)} -mindepth 1 -maxdepth 1 -type d -printf 'release %T@ %f\\n'",
        f"printf 'current %s\\n' \"$(readlink {_q(layout.current)} 2>/dev/null || true)\"",
        f"printf 'previous %s\\n' \"$(readlink {_q(layout.previous)} 2>/dev/null || true)\"",
    ])


def parse_releases(text: str) -> tuple[list[tuple[str, float]], str, str]:
    """(releases with mtimes, current release, previous release) from :func:`list_releases`."""
    releases: list[tuple[str, float]] = []
    current = previous = ""
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "release":
            stamp, _, name = rest.partition(" ")
            if not name.startswith("."):
                releases.append((name, float(stamp)))
        elif kind == "current":
            current = rest.strip().rsplit("/", 1)[-1]
        elif kind == "previous":
            previous = rest.strip().rsplit("/", 1)[-1]
    return releases, current, previous


def releases_to_prune(releases: Sequence[tuple[str, float]], *, keep: int, current: str,
                      previous: str) -> list[str]:
    """Releases beyond the newest ``keep``; the current and previous ones never are."""
    newest_first = sorted(releases, key=lambda item: (-item[1], item[0]))
    kept = {name for name, _ in newest_first[:keep]} | {current, previous}
    return [name for name, _ in newest_first if name not in kept]


def discard(layout: Layout) -> str:
    """Remove a failed upload and its partial unpack; the installed releases stay."""
    return f"rm -rf -- {_q(layout.partial_dir)} {_q(layout.incoming)}"


def read_file(path: str) -> str:
    """Print a file, or nothing if it does not exist."""
    return f"cat -- {_q(path)} 2>/dev/null || true"


def prune(layout: Layout, names: Sequence[str]) -> str:
    """Remove the named release folders (names come from :func:`releases_to_prune`)."""
    for name in names:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"refusing to prune {name!r}: not a release folder name")
    paths = " ".join(_q(path) for name in names
                     for path in (f"{layout.releases}/{name}", Layout(layout.root, name).marker))
    return f"rm -rf -- {paths}" if names else "true"
