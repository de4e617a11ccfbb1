"""``bgkit init``: a commented ``bgkit.toml`` for a CMake project, read from its
``CMakeLists.txt``.

What is read (pure, from the text; nothing is configured or built):

- the name and version from ``project(<name> VERSION <x.y.z> ...)`` (version ``0.1.0``
  when the project gives none);
- the executable from the install rules: the first ``install(TARGETS <t> ...)`` that
  installs an ``add_executable`` target, with its ``RUNTIME DESTINATION`` (or
  ``DESTINATION``). bgkit installs with ``CMAKE_INSTALL_PREFIX=/`` into the release
  folder, so ``${CMAKE_INSTALL_BINDIR}`` (GNUInstallDirs) becomes ``usr/bin``.

The written file is validated like any other (``load_config``) before it is written, and
never replaces an existing one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bgkit.errors import UsageError

__all__ = ["CmakeProject", "read_project", "render_config", "write_config"]

_COMMENT = re.compile(r"#[^\n]*")
_CALL = re.compile(r"\b(?P<name>project|add_executable|install)\s*\((?P<args>[^)]*)\)",
                   re.IGNORECASE)
_GNU_DIRS = {"${CMAKE_INSTALL_BINDIR}": "usr/bin", "${CMAKE_INSTALL_SBINDIR}": "usr/sbin",
             "${CMAKE_INSTALL_LIBEXECDIR}": "usr/libexec"}
_KEYWORDS = frozenset({"RUNTIME", "LIBRARY", "ARCHIVE", "DESTINATION", "COMPONENT",
                       "PERMISSIONS", "CONFIGURATIONS", "OPTIONAL", "EXPORT", "INCLUDES",
                       "NAMELINK_SKIP", "EXCLUDE_FROM_ALL", "BUNDLE", "FRAMEWORK"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")


@dataclass(frozen=True, slots=True)
class CmakeProject:
    """What ``bgkit init`` learned from a ``CMakeLists.txt``."""

    name: str
    version: str
    executable: str  # the path inside the release, e.g. ``usr/bin/app`` or ``bin/app``
    gnu_install_dirs: bool


def read_project(cmakelists: Path) -> CmakeProject:
    """Read the project's name, version and installed executable.

    Raises:
        UsageError: no such file, no ``project()``, or no installed executable target (the
            message says what was found and what to write instead).
    """
    try:
        text = cmakelists.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise UsageError(f"cannot read {cmakelists}: {error.strerror}; expected the CMake "
                         "project's top-level CMakeLists.txt") from None
    calls = [(match["name"].lower(), match["args"].split())
             for match in _CALL.finditer(_COMMENT.sub("", text))]
    projects = [args for name, args in calls if name == "project" and args]
    if not projects:
        raise UsageError(f"{cmakelists}: no project(...) call; expected a CMake project")
    name = projects[0][0]
    version = _version_of(projects[0])
    executables = {args[0] for name, args in calls if name == "add_executable" and args}
    found = _installed_executable(calls, executables)
    if not _NAME.fullmatch(name):
        raise UsageError(f"{cmakelists}: project name {name!r} is not usable as [app].name "
                         "(letters, digits, '.', '_' or '-')")
    if found is None:
        listed = ", ".join(sorted(executables)) or "none"
        raise UsageError(f"{cmakelists}: no install(TARGETS ...) of an executable "
                         f"(executables: {listed}); add an install rule, or write "
                         "[service].executable by hand")
    return CmakeProject(name=name, version=version, executable=found,
                        gnu_install_dirs="GNUInstallDirs" in text)


def _version_of(args: list[str]) -> str:
    upper = [arg.upper() for arg in args]
    if "VERSION" in upper and upper.index("VERSION") + 1 < len(args):
        candidate = args[upper.index("VERSION") + 1]
        if _VERSION.fullmatch(candidate):
            return candidate
    return "0.1.0"


def _installed_executable(calls: list[tuple[str, list[str]]],
                          executables: set[str]) -> str | None:
    for name, args in calls:
        if name != "install" or not args or args[0].upper() != "TARGETS":
            continue
        targets = []
        for arg in args[1:]:
            if arg.upper() in _KEYWORDS:
                break
            targets.append(arg)
        chosen = next((target for target in targets if target in executables), None)
        if chosen is None:
            continue
        folder = _destination(args)
        return f"{folder}/{chosen}" if folder else chosen
    return None


def _destination(args: list[str]) -> str:
    upper = [arg.upper() for arg in args]
    spots = [i for i, arg in enumerate(upper) if arg == "DESTINATION" and i + 1 < len(args)]
    runtime = [i for i in spots if i > 0 and "RUNTIME" in upper[max(0, i - 3):i]]
    candidates = runtime or spots
    if not candidates:
        return "bin"
    folder = args[candidates[0] + 1].strip('"')
    return _GNU_DIRS.get(folder, folder).strip("/")


_TEMPLATE = """\
# bgkit.toml for {name}, written by `bgkit init` from {cmakelists}.
# Every key below is documented in README.md; check the file with `bgkit config check`.
# Replace the placeholder hosts and the load balancer settings with your own.

[app]
# name and version come from project(); `bgkit build --version V` overrides the version.
name = "{name}"
version = "{version}"
# the CMake project, relative to this file; built artifacts (tarballs) go to dist_dir
source_dir = "{source_dir}"
dist_dir = "dist"
build_type = "Release"
# ctest = false                  # the default runs ctest and fails on "No tests were found"
# include = [{{ from = "www", to = "share/www" }}]   # repository files to add to the release

[service]
port = 8080                      # the port every host serves on
# from install(TARGETS ...): the path inside the release (installed with prefix /)
executable = "{executable}"
# args = ["--listen", "{{address}}:{{port}}"]   # placeholders: {{address}} {{port}} {{host}}
                                 # {{pool}} {{version}} {{release}} {{root}} {{shared}} {{current}}
manager = "systemd"              # run `bgkit host setup` once per host (as root)
health_path = "/health"          # a path that answers 200 when the service is up
version_from = "header:X-App-Version"   # or "json:/version", or "none" (read over SSH)
drain_timeout_s = 10

[service.systemd]
# the service user; it must exist on the hosts
user = "{name}"

[[pools.blue.hosts]]
address = "blue-1.example"       # replace: your first server of the blue pool
user = "deploy"
deploy_root = "/srv/{name}"

[[pools.green.hosts]]
address = "green-1.example"      # replace: your first server of the green pool
user = "deploy"
deploy_root = "/srv/{name}"

[lb]
provider = "haproxy"             # or "ovh-iplb" (then an [lb.ovh_iplb] table)
public_url = "http://lb.example/" # replace: the address users reach

[lb.haproxy]
runtime_api = "/run/haproxy/admin.sock"
map_file = "/etc/haproxy/bgkit-live.map"

# [gates]                        # the defaults, shown for reference
# min_samples_per_host = 50
# max_error_ratio = 0.0
# max_p99_ms = 500

# [lock]
# path = "bgkit.lock"            # where every operator and CI job reaches it
"""


def render_config(project: CmakeProject, *, cmakelists: Path, target: Path) -> str:
    """The commented bgkit.toml text for ``project`` (``target`` is where it will live)."""
    source = Path(_relative(cmakelists.parent.resolve(), target.parent.resolve()))
    return _TEMPLATE.format(name=project.name, version=project.version,
                            executable=project.executable, cmakelists=cmakelists.name,
                            source_dir=source.as_posix())


def write_config(project_dir: Path, target: Path) -> tuple[Path, CmakeProject]:
    """Write ``target`` for the CMake project in ``project_dir``; validated first.

    Raises:
        UsageError: ``target`` exists (it is never replaced) or cannot be written (no
            such folder, no permission), or the project cannot be read (see
            :func:`read_project`).
    """
    from bgkit.config import parse_config
    from bgkit.errors import ConfigError

    if target.exists():
        raise UsageError(f"{target} exists; bgkit init never replaces a file (remove it, or "
                         "pass another --output)")
    cmakelists = project_dir / "CMakeLists.txt"
    project = read_project(cmakelists)
    text = render_config(project, cmakelists=cmakelists, target=target)
    import tomllib

    try:
        parse_config(tomllib.loads(text), path=target)
    except ConfigError as error:  # a project whose names bgkit.toml cannot hold
        raise UsageError(f"the bgkit.toml for {cmakelists} would not be valid:\n{error}") \
            from None
    try:
        with target.open("x", encoding="utf-8") as out:  # "x": never replaces, even in a race
            out.write(text)
    except FileExistsError:
        raise UsageError(f"{target} exists; bgkit init never replaces a file (remove it, or "
                         "pass another --output)") from None
    except OSError as error:
        raise UsageError(f"cannot write {target} ({error.strerror}); pass an --output in a "
                         "folder that exists and that you can write") from None
    return target, project


def _relative(folder: Path, base: Path) -> str:
    import os

    return os.path.relpath(folder, base)
