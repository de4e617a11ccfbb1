"""Build a release: CMake configure, build, ctest, install, then a reproducible tarball.

``build_release(config)`` writes, into ``[app].dist_dir``:

    <release>.tar.gz          the files installed by CMake plus manifest.json
    <release>.tar.gz.sha256   ``sha256sum`` format
    <release>.build.json      sidecar: when, where, by whom, how long (not in the tarball)

where ``<release>`` is ``<name>-<version>-<shortsha>``. Nothing is written to
``dist_dir`` unless every stage passed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bgkit import __version__
from bgkit.commands import build as cmd
from bgkit.config import Config
from bgkit.errors import BuildError, UsageError
from bgkit.identity import GitInfo, git_info, operator
from bgkit.parity import release_glibc
from bgkit.tarball import FileEntry, elf_arch, sha256_file, staged_files, write_tarball

__all__ = ["BuildResult", "build_release", "release_name"]

Progress = Callable[[str], None]
TAIL_LINES = 40


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A built release and where its files are."""

    release: str
    artifact: Path
    sha256: str
    checksum_file: Path
    sidecar: Path
    manifest: dict[str, Any]
    duration_s: float

    def summary(self) -> dict[str, Any]:
        """The facts a run records: JSON-ready."""
        return {
            "release": self.release,
            "artifact": str(self.artifact),
            "sha256": self.sha256,
            "version": self.manifest["version"],
            "git_commit": self.manifest["git"]["commit"],
            "git_dirty": self.manifest["git"]["dirty"],
            "arch": self.manifest["arch"],
            "compiler": self.manifest["compiler"],
            "files": len(self.manifest["files"]),
            "duration_s": round(self.duration_s, 3),
        }

    def summary_table(self) -> pd.DataFrame:
        """The summary as a two-column table, for display."""
        return pd.DataFrame(list(self.summary().items()), columns=["fact", "value"])

    def files_table(self) -> pd.DataFrame:
        """One row per path in the release, as listed in manifest.json."""
        columns = ["path", "type", "mode", "size", "sha256"]
        table = pd.DataFrame(self.manifest["files"]).reindex(columns=columns)
        table["size"] = table["size"].astype("Int64")
        return table


def release_name(name: str, version: str, source: GitInfo, content_digest: str) -> str:
    """``<name>-<version>-<shortsha>``; a dirty tree or a folder outside git adds a digest."""
    if source.short is None:
        return f"{name}-{version}-src{content_digest[:7]}"
    if source.dirty:
        return f"{name}-{version}-{source.short}-dirty{content_digest[:7]}"
    return f"{name}-{version}-{source.short}"


def build_release(config: Config, *, version: str | None = None,
                  on_progress: Progress | None = None, jobs: int | None = None) -> BuildResult:
    """Build ``config.app`` from source into a release in ``config.dist_dir``; ``version``
    (None: ``[app].version``) follows the same rule as ``[app].version``.

    Raises:
        UsageError: ``version`` is not a version (empty, a space, a ``;``...).
        BuildError: a stage failed; the message carries the tail of its output.
    """
    if version is not None:
        from bgkit import _validators

        try:
            version = _validators.version(version)
        except ValueError as error:
            raise UsageError(f"--version: {error}") from None
    progress = on_progress or (lambda _stage: None)
    started = time.monotonic()
    source = config.source_dir
    if not (source / "CMakeLists.txt").is_file():
        raise BuildError("configure", f"{source} has no CMakeLists.txt (check [app].source_dir)")
    app_version = version or config.app.version
    git = git_info(source)
    with tempfile.TemporaryDirectory(prefix="bgkit-build-") as scratch:
        build_dir, stage = Path(scratch) / "build", Path(scratch) / "stage"
        _compile(config, source=source, build_dir=build_dir, stage=stage,
                 version=app_version, jobs=jobs or os.cpu_count() or 1, progress=progress)
        _include(config, source=source, stage=stage)
        progress("package")
        try:
            entries = staged_files(stage)
        except ValueError as error:
            raise BuildError("package", str(error)) from error
        executable = stage / config.service.executable
        if not executable.is_file():
            raise BuildError("install", f"the install step did not produce "
                             f"{config.service.executable} (named by [service].executable); "
                             f"it installed {_executables(entries)}")
        digest = _content_digest(source, config.dist_dir)
        release = release_name(config.app.name, app_version, git, digest)
        manifest = {
            "schema": 1,
            "name": config.app.name,
            "version": app_version,
            "release": release,
            "git": {"commit": git.commit, "dirty": git.dirty},
            "compiler": _compiler(build_dir),
            "build_type": config.app.build_type,
            "cmake_options": list(config.app.cmake_options),
            "arch": _arch(executable, stage, entries, config.service.executable),
            # the newest GLIBC_x.y its ELF files need: a host with an older glibc is
            # refused at deploy preflight (bgkit.parity)
            "glibc": release_glibc([stage / e.path for e in entries if e.kind == "file"
                                    and elf_arch(stage / e.path) != "not-elf"]),
            "executable": config.service.executable,
            "files": [entry.to_manifest() for entry in entries],
        }
        artifact, checksum_file, sha = _publish(config.dist_dir, release, stage, entries, manifest)
    duration = time.monotonic() - started
    sidecar = _write_sidecar(config.dist_dir, release, sha, duration)
    return BuildResult(release=release, artifact=artifact, sha256=sha,
                       checksum_file=checksum_file, sidecar=sidecar,
                       manifest=manifest, duration_s=duration)


def _executables(entries: Sequence[FileEntry]) -> str:
    found = [e.path for e in entries if e.kind == "file" and e.mode & 0o111]
    if not found:
        return "no executable at all (check install(TARGETS ...) and [app].install_components)"
    shown = ", ".join(found[:20]) + (f" and {len(found) - 20} more" if len(found) > 20 else "")
    return f"these executables: {shown}"


def _arch(executable: Path, stage: Path, entries: Sequence[FileEntry], name: str) -> str:
    """The release's CPU architecture: its executable's, or (a script) its ELF files'.

    Raises:
        BuildError: no ELF file at all, or ELF files of several architectures.
    """
    arch = elf_arch(executable)
    if arch != "not-elf":
        return arch
    found = {elf_arch(stage / e.path) for e in entries if e.kind == "file"} - {"not-elf"}
    if len(found) == 1:
        return found.pop()
    if not found:
        raise BuildError("package", f"{name} (named by [service].executable) is not an ELF "
                         "executable and the release holds no ELF file: bgkit deploys compiled "
                         "services and checks each host's CPU architecture against the "
                         "release's; point executable at the compiled program")
    raise BuildError("package", f"{name} is not an ELF executable and the release holds ELF "
                     f"files of several architectures ({', '.join(sorted(found))})")


def _include(config: Config, *, source: Path, stage: Path) -> None:
    """Copy ``[app].include`` entries from the repository into the staged release."""
    for index, item in enumerate(config.app.include):
        origin, target = source / item.from_, stage / item.to
        where = f"[app].include[{index}]"
        if not origin.exists():
            raise BuildError("install", f"{where}: {item.from_} does not exist in {source}")
        if target.exists() and not target.is_dir():
            raise BuildError("install", f"{where}: the install already staged a file at "
                             f"{item.to}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(origin, target, follow_symlinks=False)


def _compile(config: Config, *, source: Path, build_dir: Path, stage: Path, version: str,
             jobs: int, progress: Progress) -> None:
    env = dict(os.environ)
    env["CFLAGS"] = " ".join(filter(None, [
        env.get("CFLAGS", ""), cmd.reproducible_cflags(source_dir=source, build_dir=build_dir)]))
    env["SOURCE_DATE_EPOCH"] = "315532800"
    app = config.app
    steps = [
        ("configure", cmd.cmake_configure(source_dir=source, build_dir=build_dir,
                                          build_type=app.build_type, version=version,
                                          options=app.cmake_options)),
        ("compile", cmd.cmake_build(build_dir=build_dir, jobs=jobs)),
    ]
    if app.ctest:
        steps.append(("ctest", cmd.ctest(build_dir=build_dir, jobs=jobs, extra=app.ctest_args)))
    steps += [("install", cmd.cmake_install(build_dir=build_dir, component=component))
              for component in (app.install_components or (None,))]
    for stage_name, argv in steps:
        progress(stage_name)
        step_env = {**env, "DESTDIR": str(stage)} if stage_name == "install" else env
        _run(stage_name, argv, env=step_env, cwd=build_dir.parent)


def _run(stage: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> str:
    try:
        done = subprocess.run(list(argv), cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", check=False)
    except FileNotFoundError as error:
        raise BuildError(stage, f"{argv[0]} is not installed ({error.strerror}); "
                         "run `make deps` or install it") from error
    if done.returncode != 0:
        tail = "\n".join(done.stdout.rstrip().splitlines()[-TAIL_LINES:])
        hint = ""
        if stage == "ctest" and "No tests were found" in done.stdout:
            hint = ("; the project has no ctest tests: add some, or set [app] ctest = false "
                    "in bgkit.toml to build without them")
        raise BuildError(stage, f"`{' '.join(argv)}` exited with {done.returncode}{hint}",
                         tail)
    return done.stdout


def _compiler(build_dir: Path) -> str:
    compiler = "cc"
    cache = build_dir / "CMakeCache.txt"
    for line in cache.read_text(errors="replace").splitlines():
        if line.startswith("CMAKE_C_COMPILER:"):
            compiler = line.split("=", 1)[1]
    try:
        out = subprocess.run(cmd.compiler_version(compiler), capture_output=True, text=True,
                             check=False, timeout=30).stdout
    except OSError:
        return compiler
    first = out.splitlines()[0] if out else compiler
    return first.strip()


def _content_digest(source: Path, dist_dir: Path) -> str:
    """A digest of the source files, for release names of unversioned or dirty trees."""
    listed = subprocess.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=False,
    )
    if listed.returncode == 0:
        names = sorted(n for n in listed.stdout.decode().split("\0") if n)
        files = [source / name for name in names]
    else:
        files = sorted(p for p in source.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(source).parts)
                       and not p.is_relative_to(dist_dir))
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(source).as_posix().encode() + b"\0")
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _publish(dist_dir: Path, release: str, stage: Path, entries: list[Any],
             manifest: dict[str, Any]) -> tuple[Path, Path, str]:
    """Write the tarball and its checksum next to each other, each renamed into place."""
    dist_dir.mkdir(parents=True, exist_ok=True)
    artifact = dist_dir / f"{release}.tar.gz"
    checksum_file = dist_dir / f"{release}.tar.gz.sha256"
    partial = dist_dir / f".{release}.tar.gz.partial"
    try:
        write_tarball(stage, entries, manifest, partial)
        sha = sha256_file(partial)
        checksum_partial = dist_dir / f".{release}.sha256.partial"
        checksum_partial.write_text(f"{sha}  {artifact.name}\n")
        checksum_partial.replace(checksum_file)
        partial.replace(artifact)
    finally:
        partial.unlink(missing_ok=True)
    return artifact, checksum_file, sha


def _write_sidecar(dist_dir: Path, release: str, sha: str, duration: float) -> Path:
    sidecar = dist_dir / f"{release}.build.json"
    facts = {
        "release": release,
        "sha256": sha,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "operator": operator(),
        "duration_s": round(duration, 3),
        "bgkit_version": __version__,
    }
    sidecar.write_text(json.dumps(facts, indent=2) + "\n")
    return sidecar
