"""Remote shell commands for the release layout on a host, and parsers of their output.

    <root>/releases/<release>/   one folder per release, never changed once in place
    <root>/releases/.<release>.sha256   the tarball's sha256, written once it is installed
    <root>/current -> releases/<release>    swapped atomically (temporary link + mv -T)
    <root>/previous -> releases/<release>   what current pointed at before the last swap
    <root>/last-live              the release this host served when its pool was last
                                  live, since when, and when traffic left (the switch's)
    <root>/shared/                host-local config, pid files and logs; outlives releases
    <root>/.incoming/             uploads waiting to be checked and unpacked

Every value is quoted with ``shlex.quote``; these functions only build strings. bgkit
writes nothing inside a release folder after unpacking it: the install marker stands
beside it, where no member of a release can reach.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bgkit.release_tree import Member

__all__ = [
    "LAST_LIVE",
    "HostFacts",
    "KeptRelease",
    "LastLive",
    "Layout",
    "Preflight",
    "Served",
    "access_problems",
    "check_libraries",
    "discard",
    "extract",
    "file_state",
    "glibc_version",
    "host_facts",
    "install_release",
    "kept_release",
    "list_releases",
    "make_root",
    "mark_left",
    "mark_live",
    "missing_libraries",
    "open_connections",
    "parse_file_state",
    "parse_host_facts",
    "parse_kept_release",
    "parse_last_live",
    "parse_preflight",
    "parse_releases",
    "parse_served",
    "parse_sha256sum",
    "parse_stage",
    "preflight",
    "prune",
    "publish_file",
    "read_file",
    "releases_to_prune",
    "served",
    "service_access",
    "sha256sum",
    "stage",
    "staged_name",
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

    @property
    def last_live(self) -> str:
        return f"{self.root}/{LAST_LIVE}"


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
    last_live: LastLive | None = None  # what <root>/last-live says, if it exists


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What pool parity compares of a host (:func:`host_facts`)."""

    cpus: int
    memory_mib: int
    kernel: str  # uname -r
    arch: str  # uname -m
    libc: str  # "glibc 2.36", or what ldd --version said of another libc

    @property
    def glibc(self) -> tuple[int, ...] | None:
        """The glibc version as numbers ((2, 36)); None when the libc is not glibc."""
        return glibc_version(self.libc.removeprefix("glibc "))


def glibc_version(text: str) -> tuple[int, ...] | None:
    """``"2.36"`` (or ``"GLIBC_2.36"``) as ``(2, 36)``; None when it is not such a version."""
    digits = text.strip().removeprefix("GLIBC_").split(".")
    if not 2 <= len(digits) <= 3 or not all(d.isascii() and d.isdigit() for d in digits):
        return None
    return tuple(int(d) for d in digits)


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
        _print_last_live(layout.root),
    ])


def parse_preflight(text: str) -> Preflight:
    """Parse :func:`preflight` output. Raises ValueError naming a missing or bad field."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        free_kb = int(fields["free_kb"])
        return Preflight(arch=fields["arch"].strip(), free_kb=free_kb,
                         writable=fields["writable"].strip() == "yes",
                         current=fields["current"].strip().rsplit("/", 1)[-1],
                         installed_sha256=fields["installed"].strip(),
                         last_live=parse_last_live(text))
    except (KeyError, ValueError) as error:
        raise ValueError(f"unexpected preflight output ({error}): {text[:200]!r}") from error


def host_facts() -> str:
    """One read-only command printing what pool parity compares: ``cpus=`` (online CPUs),
    ``mem_kib=`` (``MemTotal`` of /proc/meminfo), ``kernel=`` (``uname -r``), ``arch=``
    (``uname -m``) and ``libc=`` (``getconf GNU_LIBC_VERSION``, e.g. ``glibc 2.36``; the
    first line of ``ldd --version`` where getconf does not know it, as on musl)."""
    return "; ".join([
        "printf 'cpus=%s\\n' \"$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)\"",
        "printf 'mem_kib=%s\\n' \"$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)\"",
        "printf 'kernel=%s\\narch=%s\\n' \"$(uname -r)\" \"$(uname -m)\"",
        "printf 'libc=%s\\n' \"$(getconf GNU_LIBC_VERSION 2>/dev/null || "
        "ldd --version 2>&1 | head -n 1)\"",
    ])


def parse_host_facts(text: str) -> HostFacts:
    """Parse :func:`host_facts` output.

    Raises:
        ValueError: a field is missing or not of its kind (names it, quotes the text).
    """
    fields = {key.strip(): value.strip() for key, _, value in
              (line.partition("=") for line in text.splitlines() if "=" in line)}
    try:
        cpus, mem_kib = int(fields["cpus"]), int(fields["mem_kib"])
        if cpus < 1 or mem_kib < 1:
            raise ValueError("cpus and mem_kib must be positive")
        return HostFacts(cpus=cpus, memory_mib=mem_kib // 1024, kernel=fields["kernel"],
                         arch=fields["arch"], libc=fields["libc"] or "unknown")
    except (KeyError, ValueError) as error:
        raise ValueError(f"unexpected host facts ({error}): {text[:200]!r}") from error


# Releases are readable by the service's user whatever the deploy user's umask (077 is
# common): they hold programs, never secrets, which go in host files with their own mode.
UMASK = "umask 022"


def make_root(layout: Layout) -> str:
    """Create the layout's folders (idempotent), readable by the service's user."""
    folders = [layout.releases, f"{layout.root}/.incoming", layout.shared,
               f"{layout.shared}/run", f"{layout.shared}/log"]
    return f"{UMASK} && mkdir -p -- " + " ".join(_q(folder) for folder in folders)


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
    """What ``ldd`` could not resolve: library names (``libfoo.so.1 => not found``) and
    symbol versions the host's libraries lack (``libc.so.6: version `GLIBC_2.38' not
    found`` becomes ``libc.so.6 (GLIBC_2.38)``): either way the release would not load."""
    missing = []
    for line in ldd_output.splitlines():
        if "=> not found" in line:
            missing.append(line.split("=>", 1)[0].strip())
        elif (found := _MISSING_VERSION.search(line)) is not None:
            missing.append(f"{found['library'].rsplit('/', 1)[-1]} ({found['version']})")
    return list(dict.fromkeys(missing))


_MISSING_VERSION = re.compile(r"(?P<library>\S+): version [`'](?P<version>[^`']+)' not found")


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

    Exits 3 (printing ``checksum=<sha256sum's line>``) on a checksum mismatch, 5 (printing
    ``tree=<found>``) when tar on the host unpacked something else than was checked, and
    4 (printing ``ldd=<line>`` for each library or symbol version ``ldd`` could not
    resolve) when libraries are missing; each cleans up the upload and the partial
    unpack. :func:`parse_stage` reads the answer with :func:`parse_sha256sum` and
    :func:`missing_libraries`.
    """
    incoming, partial = _q(layout.incoming), _q(layout.partial_dir)
    return "; ".join([
        UMASK,
        f"line=$({sha256sum(layout.incoming)})",
        'found="${line%% *}"',
        f'if [ "$found" != {_q(sha256)} ]; then printf \'checksum=%s\\n\' "$line"; '
        f"rm -f -- {incoming}; exit {STAGE_BAD_CHECKSUM}; fi",
        f"{extract(layout)} || exit 1",
        f"tree=$(find {partial} -mindepth 1 {_LISTING} | LC_ALL=C sort | sha256sum "
        "| cut -d ' ' -f 1)",
        f'if [ "$tree" != {_q(tree)} ]; then echo "tree=$tree"; '
        f"rm -rf -- {partial} {incoming}; exit {STAGE_UNEXPECTED_TREE}; fi",
        f"libraries=$({check_libraries(layout, executable)})",
        # "libfoo.so.1 => not found", or "...libc.so.6: version `GLIBC_2.38' not found"
        'missing=$(printf \'%s\\n\' "$libraries" | grep -F " not found" || true)',
        f'if [ -n "$missing" ]; then printf \'%s\\n\' "$missing" | sed \'s/^/ldd=/\'; '
        f"rm -rf -- {partial} {incoming}; exit {STAGE_MISSING_LIBRARIES}; fi",
        f"{install_release(layout, sha256)} || exit 1",
    ])


def parse_stage(exit_code: int, text: str) -> tuple[str, list[str]]:
    """(checksum or tree digest found on the host or "", missing libraries) from
    :func:`stage`'s answer."""
    fields = [line.split("=", 1) for line in text.splitlines() if "=" in line]
    key = "tree" if exit_code == STAGE_UNEXPECTED_TREE else "checksum"
    found = next((value for name, value in fields if name == key), "")
    if exit_code in (STAGE_BAD_CHECKSUM, STAGE_UNEXPECTED_TREE) and not found:
        raise ValueError(f"unexpected stage output: {text[:200]!r}")
    if exit_code == STAGE_BAD_CHECKSUM:
        found = parse_sha256sum(found)
    missing = missing_libraries("\n".join(value for name, value in fields if name == "ldd"))
    return found, missing


def install_release(layout: Layout, sha256: str) -> str:
    """Move the partial folder into place atomically, then write its marker beside it."""
    partial, final, marker = _q(layout.partial_dir), _q(layout.release_dir), _q(layout.marker)
    return (f"rm -f -- {marker} && rm -rf -- {final} && mv -T -- {partial} {final} && "
            f"printf '%s\\n' {_q(sha256)} > {marker} && rm -f -- {_q(layout.incoming)}")


ACTIVATE_SWAP_FAILED = 90


def activate(layout: Layout, restart: str) -> str:
    """Swap ``current`` to the release, then run ``restart``; exits
    :data:`ACTIVATE_SWAP_FAILED` when the swap failed (nothing was restarted), else with
    the restart's own exit code."""
    return f"( {swap_current(layout)} ) || exit {ACTIVATE_SWAP_FAILED}; {restart}"


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


# --- what a host serves, and served when its pool was last live ---------------------------

LAST_LIVE = "last-live"
_LAST_LIVE_PREFIX = "last_live."
_RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


@dataclass(frozen=True, slots=True)
class LastLive:
    """``<root>/last-live``: the release the host served when its pool was last live
    (``""`` when traffic left a pool bgkit never saw go live), since when, and when
    traffic left it (``""`` while it is live). Times are ISO 8601, bgkit's clock."""

    release: str
    live_since: str
    left_at: str

    @property
    def live(self) -> bool:
        return not self.left_at


@dataclass(frozen=True, slots=True)
class Served:
    """What a host serves (where ``current`` points, its manifest's version) and what it
    served when its pool was last live."""

    release: str
    version: str | None
    last_live: LastLive | None


@dataclass(frozen=True, slots=True)
class KeptRelease:
    """A release folder kept on a host: the tarball's sha256 from its install marker
    (``""`` when it is not installed) and its manifest (None when unreadable)."""

    sha256: str
    manifest: dict[str, object] | None


def _print_last_live(root: str) -> str:
    """Print ``<root>/last-live`` with every line prefixed ``last_live.``, or nothing."""
    return (f"sed 's/^/{_LAST_LIVE_PREFIX}/' -- {_q(root + '/' + LAST_LIVE)} 2>/dev/null "
            "|| true")


def mark_live(root: str, *, at: str) -> str:
    """Record that this host's pool went live at ``at`` serving the release ``current``
    points at: ``<root>/last-live`` written beside itself, then renamed into place
    (atomic). A record that already says that release is live is kept as it is (its
    ``live_since`` stays). Exits 3 when ``current`` points nowhere."""
    final, staged = _q(f"{root}/{LAST_LIVE}"), _q(f"{root}/.{LAST_LIVE}.tmp")
    return "; ".join([
        f"rel=$(readlink {_q(root + '/current')} 2>/dev/null || true)",
        'rel="${rel##*/}"',
        'if [ -z "$rel" ]; then echo "current points at no release" >&2; exit 3; fi',
        f'if [ -f {final} ] && grep -Fqx "release=$rel" {final} && '
        f"! grep -q '^left_at=' {final}; then exit 0; fi",
        f"printf 'release=%s\\nlive_since=%s\\n' \"$rel\" {_q(at)} > {staged} && "
        f"mv -T -- {staged} {final}",
    ])


def mark_left(root: str, *, at: str) -> str:
    """Record that traffic left this host's pool at ``at``: ``left_at`` set in
    ``<root>/last-live`` (created if missing), the rest kept; renamed into place."""
    final, staged = _q(f"{root}/{LAST_LIVE}"), _q(f"{root}/.{LAST_LIVE}.tmp")
    return "; ".join([
        f"if [ -f {final} ]; then grep -v '^left_at=' -- {final} > {staged} || true; "
        f"else : > {staged}; fi",
        f"printf 'left_at=%s\\n' {_q(at)} >> {staged} && mv -T -- {staged} {final}",
    ])


def parse_last_live(text: str) -> LastLive | None:
    """The ``last_live.``-prefixed lines of an answer (:func:`served`, :func:`preflight`)
    as a :class:`LastLive`; None when there is no record, or only an unreadable one."""
    fields = {key.removeprefix(_LAST_LIVE_PREFIX): value.strip()
              for key, _, value in (line.partition("=") for line in text.splitlines())
              if key.startswith(_LAST_LIVE_PREFIX)}
    release = fields.get("release", "")
    if not fields or (release and not _RELEASE_ID.fullmatch(release)):
        return None
    return LastLive(release=release, live_since=fields.get("live_since", ""),
                    left_at=fields.get("left_at", ""))


def served(root: str) -> str:
    """Where ``current`` points, ``<root>/last-live``, and the current release's
    manifest on one line (for :func:`parse_served`). Changes nothing."""
    return "; ".join([
        f"printf 'current=%s\\n' \"$(readlink {_q(root + '/current')} 2>/dev/null || true)\"",
        _print_last_live(root),
        f"printf 'manifest='; tr -d '\\n' 2>/dev/null < {_q(root + '/current/manifest.json')}"
        " || true; echo",
    ])


def parse_served(text: str) -> Served:
    """:func:`served`'s answer: the release ``current`` points at ("" if none), its
    manifest's version (None if unreadable) and the last-live record."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    release = fields.get("current", "").strip().rsplit("/", 1)[-1]
    manifest = _manifest(fields.get("manifest", ""))
    version = manifest.get("version") if manifest is not None else None
    return Served(release=release, version=version if isinstance(version, str) else None,
                  last_live=parse_last_live(text))


def kept_release(layout: Layout) -> str:
    """The install marker and the manifest of ``releases/<release>`` if that folder
    exists, for :func:`parse_kept_release`. Changes nothing."""
    folder = _q(layout.release_dir)
    return (f"if [ -d {folder} ]; then printf 'installed=%s\\n' \"$(cat -- "
            f"{_q(layout.marker)} 2>/dev/null || true)\"; printf 'manifest='; "
            f"tr -d '\\n' 2>/dev/null < {_q(layout.release_dir + '/manifest.json')} || true; "
            "echo; fi")


def parse_kept_release(text: str) -> KeptRelease:
    """:func:`kept_release`'s answer (an empty answer: the release is not kept)."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return KeptRelease(sha256=fields.get("installed", "").strip(),
                       manifest=_manifest(fields.get("manifest", "")))


def _manifest(text: str) -> dict[str, object] | None:
    try:
        manifest = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def file_state(path: str) -> str:
    """Create the file's folder; print ``sha256=<digest>`` and ``mode=<octal>`` of the
    file, or nothing if it is missing."""
    q = _q(path)
    folder = _q(path.rsplit("/", 1)[0])
    return (f"{UMASK} && mkdir -p -- {folder} && if [ -f {q} ]; then "
            "printf 'sha256=%s\\nmode=%s\\n' "
            f"\"$(sha256sum -- {q} | cut -d ' ' -f 1)\" \"$(stat -c %a -- {q})\"; fi")


def parse_file_state(text: str) -> tuple[str, int | None]:
    """(sha256 or "", mode or None) from :func:`file_state`."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        mode = int(fields["mode"].strip(), 8) if "mode" in fields else None
    except ValueError:
        mode = None
    return fields.get("sha256", "").strip(), mode


def publish_file(staged: str, final: str, mode: int) -> str:
    """Give the uploaded ``staged`` file its mode, then rename it onto ``final`` (atomic:
    both are in the same folder, so a reader sees the old file or the new one)."""
    return f"chmod {mode:04o} -- {_q(staged)} && mv -f -- {_q(staged)} {_q(final)}"


def staged_name(final: str) -> str:
    """Where a host file is uploaded before :func:`publish_file` renames it into place."""
    folder, _, name = final.rpartition("/")
    return f"{folder}/.{name}.bgkit-new"


def open_connections(address: str, port: int) -> str:
    """How many TCP connections the service at ``address:port`` holds open (``ss``)."""
    return (f"ss -Htn state established src {_q(f'{address}:{port}')} 2>/dev/null "
            "| wc -l")


def service_access(root: str, user: str, writable: Sequence[str]) -> str:
    """The service user's ids, and owner and mode of the folders it must reach: the deploy
    root and ``releases/`` (to run a release), ``shared/`` and ``writable`` (to write)."""
    q = _q
    paths = " ".join(q(p) for p in (root, f"{root}/releases", f"{root}/shared", *writable))
    return "; ".join([
        f"printf 'uid=%s\\ngids=%s\\n' \"$(id -u -- {q(user)} 2>/dev/null)\" "
        f"\"$(id -G -- {q(user)} 2>/dev/null)\"",
        f"for p in {paths}; do if [ -d \"$p\" ]; then stat -Lc 'dir %a %u %g %n' -- \"$p\"; "
        "else printf 'missing %s\\n' \"$p\"; fi; done",
    ])


def access_problems(text: str, *, user: str, root: str, writable: Sequence[str]) -> list[str]:
    """What would stop ``user`` running from ``root`` under the rendered unit, from
    :func:`service_access` output (pure): each problem says why and what to do."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    uid_text = fields.get("uid", "").strip()
    if not uid_text.isdigit():
        return [f"the service user {user} does not exist on the host (create it, then run "
                "the host setup)"]
    uid, gids = int(uid_text), {int(g) for g in fields.get("gids", "").split() if g.isdigit()}
    found: dict[str, tuple[int, int, int] | None] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "dir":
            mode, owner, group, path = rest.split(" ", 3)
            found[path] = (int(mode, 8), int(owner), int(group))
        elif kind == "missing":
            found[rest] = None
    problems = []
    for path in (root, f"{root}/releases"):
        folder = found.get(path)
        if folder is not None and not _may(folder, uid, gids, 0o1):
            problems.append(f"{path} is not searchable by the service user {user}, so it "
                            f"cannot run the release (mode {folder[0]:o}); chmod o+x, or "
                            "give it the service's group")
    shared = f"{root}/shared"
    if found.get(shared) is not None and not _may(found[shared], uid, gids, 0o3):
        problems.append(f"{shared} is not writable by the service user {user} though the unit "
                        "grants it (ReadWritePaths); run the host setup again (it makes shared/ "
                        "group-owned by the service, mode 2775)")
    for path in writable:
        if found.get(path, ()) is None:
            problems.append(f"[service.systemd].read_write_paths: {path} does not exist on "
                            "the host, and systemd refuses to start a unit whose "
                            "ReadWritePaths= folder is missing (status 226/NAMESPACE); "
                            "create it or remove it from the list")
    return problems


def _may(stat: tuple[int, int, int] | None, uid: int, gids: set[int], wanted: int) -> bool:
    """Whether ``uid`` (in ``gids``) has the ``wanted`` bits (1 = search, 2 = write) on a
    folder of (mode, owner, group). root may do anything."""
    if stat is None:
        return False
    mode, owner, group = stat
    if uid == 0:
        return True
    bits = (mode >> 6) if uid == owner else (mode >> 3) if group in gids else mode
    return bits & wanted == wanted


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
