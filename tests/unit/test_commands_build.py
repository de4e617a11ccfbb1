"""The build's argv lists, asserted exactly; hostile values stay single arguments."""

from __future__ import annotations

from pathlib import Path

from bgkit.commands import build as cmd

HOSTILE = "x; rm -rf / 'q' \"d\"\nnext $(id)"


def test_configure_installs_to_a_destdir_relative_root_with_the_version() -> None:
    assert cmd.cmake_configure(
        source_dir=Path("/src/app"), build_dir=Path("/tmp/b"), build_type="Release",
        version="1.2.3", options=["-DFEATURE=ON"],
    ) == ["cmake", "-S", "/src/app", "-B", "/tmp/b", "-DCMAKE_BUILD_TYPE=Release",
          "-DCMAKE_INSTALL_PREFIX=/", "-DAPP_VERSION=1.2.3", "-DFEATURE=ON"]


def test_hostile_values_are_passed_as_one_argument_each_never_through_a_shell() -> None:
    argv = cmd.cmake_configure(source_dir=Path(f"/src/{HOSTILE}"), build_dir=Path("/b"),
                               build_type="Release", version=HOSTILE, options=[f"-DX={HOSTILE}"])
    assert argv[2] == f"/src/{HOSTILE}"
    assert argv[7] == f"-DAPP_VERSION={HOSTILE}"
    assert argv[8] == f"-DX={HOSTILE}"
    assert len(argv) == 9


def test_build_test_and_install_commands() -> None:
    assert cmd.cmake_build(build_dir=Path("/b"), jobs=4) == [
        "cmake", "--build", "/b", "--parallel", "4"]
    assert cmd.ctest(build_dir=Path("/b"), jobs=2) == [
        "ctest", "--test-dir", "/b", "--output-on-failure", "--no-tests=error", "--parallel", "2"]
    assert cmd.cmake_install(build_dir=Path("/b")) == ["cmake", "--install", "/b"]
    assert cmd.compiler_version("/usr/bin/cc") == ["/usr/bin/cc", "--version"]


def test_reproducible_flags_map_both_build_folders_away() -> None:
    assert cmd.reproducible_cflags(source_dir=Path("/s"), build_dir=Path("/tmp/b")) == (
        "-ffile-prefix-map=/s=. -ffile-prefix-map=/tmp/b=build")
