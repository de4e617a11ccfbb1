"""argv for the local build: CMake configure, build, ctest, install."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "cmake_build",
    "cmake_configure",
    "cmake_install",
    "compiler_version",
    "ctest",
    "reproducible_cflags",
]


def cmake_configure(
    *,
    source_dir: Path,
    build_dir: Path,
    build_type: str,
    version: str,
    options: Sequence[str] = (),
) -> list[str]:
    """Configure ``source_dir`` into ``build_dir``, installing to a DESTDIR-relative ``/``."""
    return [
        "cmake",
        "-S", str(source_dir),
        "-B", str(build_dir),
        f"-DCMAKE_BUILD_TYPE={build_type}",
        "-DCMAKE_INSTALL_PREFIX=/",
        f"-DAPP_VERSION={version}",
        *options,
    ]


def cmake_build(*, build_dir: Path, jobs: int) -> list[str]:
    return ["cmake", "--build", str(build_dir), "--parallel", str(jobs)]


def ctest(*, build_dir: Path, jobs: int, extra: Sequence[str] = ()) -> list[str]:
    """Every test must pass, and a project without tests fails (``--no-tests=error``)."""
    return ["ctest", "--test-dir", str(build_dir), "--output-on-failure",
            "--no-tests=error", "--parallel", str(jobs), *extra]


def cmake_install(*, build_dir: Path, component: str | None = None) -> list[str]:
    """Install (one ``component``, or all); the caller sets ``DESTDIR`` in the environment
    to the staging folder."""
    argv = ["cmake", "--install", str(build_dir)]
    return [*argv, "--component", component] if component else argv


def compiler_version(compiler: str) -> list[str]:
    return [compiler, "--version"]


def reproducible_cflags(*, source_dir: Path, build_dir: Path) -> str:
    """Flags that keep the build's own folders out of the binary."""
    return (f"-ffile-prefix-map={source_dir}=. "
            f"-ffile-prefix-map={build_dir}=build")
