"""bgkit init: a commented, valid bgkit.toml from a CMake project's own CMakeLists.txt."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgkit.cli import main
from bgkit.config import load_config
from bgkit.errors import UsageError
from bgkit.scaffold import read_project
from tests.conftest import REPO


def project(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "CMakeLists.txt").write_text(text)
    return folder


def test_the_shipped_examples_are_read_as_written(tmp_path: Path) -> None:
    plain = read_project(REPO / "examples/plain-c/CMakeLists.txt")
    assert (plain.name, plain.version, plain.executable) == ("plain-c", "0.3.0",
                                                            "usr/bin/plain-c")
    hello = read_project(REPO / "examples/hello-c/CMakeLists.txt")
    assert (hello.name, hello.version, hello.executable) == ("hello-c", "0.1.0", "bin/hello-c")


def test_init_writes_a_valid_commented_config_and_never_replaces_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = project(tmp_path / "srv", """
        cmake_minimum_required(VERSION 3.20)
        project(tiny-http VERSION 2.4.1 LANGUAGES C)  # the server
        include(GNUInstallDirs)
        add_library(util STATIC util.c)
        add_executable(tiny-httpd main.c)
        # install(TARGETS util DESTINATION lib)
        install(TARGETS util tiny-httpd
                RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT server
                ARCHIVE DESTINATION lib)
    """)
    assert main(["init", str(folder)]) == 0
    written = folder / "bgkit.toml"
    config = load_config(written)
    assert (config.app.name, config.app.version) == ("tiny-http", "2.4.1")
    assert config.service.executable == "usr/bin/tiny-httpd"
    assert config.source_dir == folder.resolve()
    assert "# replace: your first server of the blue pool" in written.read_text()
    before = written.read_text()
    assert main(["init", str(folder)]) == 2
    assert "never replaces a file" in capsys.readouterr().err
    assert written.read_text() == before


@pytest.mark.parametrize(("text", "problem"), [
    ("add_executable(app main.c)", "no project"),
    ("project(app)\nadd_executable(app main.c)", "no install(TARGETS ...) of an executable "
     "(executables: app)"),
    ("project(app)\nadd_library(lib x.c)\ninstall(TARGETS lib DESTINATION lib)",
     "executables: none"),
])
def test_a_project_bgkit_cannot_read_is_refused_saying_what_to_write(
        tmp_path: Path, text: str, problem: str) -> None:
    folder = project(tmp_path / "p", text)
    with pytest.raises(UsageError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_project(folder / "CMakeLists.txt")
    assert main(["init", str(folder)]) == 2
    assert not (folder / "bgkit.toml").exists()


def test_an_output_in_a_missing_folder_is_a_usage_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = project(tmp_path / "srv", "project(app VERSION 1.0)\nadd_executable(app m.c)\n"
                     "install(TARGETS app RUNTIME DESTINATION bin)\n")
    target = tmp_path / "no-such-folder" / "bgkit.toml"
    assert main(["init", str(folder), "-o", str(target)]) == 2
    said = capsys.readouterr().err
    assert f"cannot write {target}" in said and "Traceback" not in said
    assert not target.parent.exists()
