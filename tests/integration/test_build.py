"""bgkit build against the real sample service: CMake, gcc, ctest, reproducible tarballs."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from bgkit.artifact import build_release
from bgkit.config import load_config
from bgkit.errors import BuildError
from tests.conftest import EXAMPLE_DIR, WriteConfig

pytestmark = pytest.mark.slow


def copy_source(tmp_path: Path) -> Path:
    target = tmp_path / "hello-c"
    shutil.copytree(EXAMPLE_DIR, target, ignore=shutil.ignore_patterns("build", "dist"))
    return target


def test_two_builds_of_the_same_source_are_byte_identical(
        write_config: WriteConfig, tmp_path: Path) -> None:
    first = build_release(load_config(write_config()))
    second = build_release(load_config(write_config(
        {"app": {"dist_dir": str(tmp_path / "dist-again")}}, name="again.toml")))
    assert first.release == second.release
    assert first.sha256 == second.sha256
    assert first.artifact.read_bytes() == second.artifact.read_bytes()
    assert first.artifact.parent != second.artifact.parent


def test_the_artifact_has_manifest_checksum_file_and_sidecar(write_config: WriteConfig) -> None:
    result = build_release(load_config(write_config()))
    assert result.artifact.name == f"{result.release}.tar.gz"
    assert result.release.startswith("hello-c-1.0.0-")
    digest = hashlib.sha256(result.artifact.read_bytes()).hexdigest()
    assert result.checksum_file.read_text() == f"{digest}  {result.artifact.name}\n"
    with tarfile.open(result.artifact) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for entry in manifest["files"]:
            if entry["type"] == "file":
                data = tar.extractfile(entry["path"]).read()  # type: ignore[union-attr]
                assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert manifest["name"] == "hello-c" and manifest["version"] == "1.0.0"
    assert manifest["arch"] in {"x86_64", "aarch64"}
    assert manifest["compiler"]
    assert set(manifest["git"]) == {"commit", "dirty"}
    assert {e["path"] for e in manifest["files"]} >= {"bin/hello-c", "conf/config.ini"}
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["sha256"] == digest and sidecar["host"] and sidecar["built_at"]
    assert "built_at" not in json.dumps(manifest)


def test_the_version_override_reaches_the_binary_config_and_name(
        write_config: WriteConfig) -> None:
    result = build_release(load_config(write_config()), version="2.5.0-rc1")
    assert "-2.5.0-rc1-" in result.release
    with tarfile.open(result.artifact) as tar:
        conf = tar.extractfile("conf/config.ini").read().decode()  # type: ignore[union-attr]
    assert "version = 2.5.0-rc1" in conf


def test_a_compile_error_leaves_no_artifact_and_shows_the_compiler_message(
        write_config: WriteConfig, tmp_path: Path) -> None:
    source = copy_source(tmp_path)
    (source / "src" / "app.c").write_text((source / "src" / "app.c").read_text()
                                          + "\nthis is not C;\n")
    config = load_config(write_config({"app": {"source_dir": str(source)}}))
    with pytest.raises(BuildError) as caught:
        build_release(config)
    assert caught.value.stage == "compile"
    assert "app.c" in caught.value.output_tail and "error" in caught.value.output_tail
    assert not config.dist_dir.exists() or not list(config.dist_dir.iterdir())


def test_a_failing_ctest_leaves_no_artifact(write_config: WriteConfig, tmp_path: Path) -> None:
    source = copy_source(tmp_path)
    with (source / "CMakeLists.txt").open("a") as cmake:
        cmake.write('\nadd_test(NAME deliberately_failing COMMAND sh -c "echo nope; exit 3")\n')
    config = load_config(write_config({"app": {"source_dir": str(source)}}))
    with pytest.raises(BuildError, match="build failed at ctest") as caught:
        build_release(config)
    assert "deliberately_failing" in caught.value.output_tail
    assert not config.dist_dir.exists() or not list(config.dist_dir.iterdir())


def test_a_source_outside_git_is_named_by_its_content(
        write_config: WriteConfig, tmp_path: Path) -> None:
    source = copy_source(tmp_path)
    config = load_config(write_config({"app": {"source_dir": str(source)}}))
    result = build_release(config)
    assert result.release.startswith("hello-c-1.0.0-src")
    assert result.manifest["git"] == {"commit": None, "dirty": False}


def test_an_executable_the_install_does_not_produce_is_an_error(
        write_config: WriteConfig) -> None:
    config = load_config(write_config({"service": {"executable": "bin/missing"}}))
    with pytest.raises(BuildError, match="did not produce bin/missing"):
        build_release(config)


def test_a_folder_without_cmakelists_is_refused(write_config: WriteConfig,
                                                 tmp_path: Path) -> None:
    config = load_config(write_config({"app": {"source_dir": str(tmp_path)}}))
    with pytest.raises(BuildError, match="has no CMakeLists.txt"):
        build_release(config)


def test_the_sanitizer_build_passes_ctest_including_the_smoke_test(
        write_config: WriteConfig) -> None:
    stages: list[str] = []
    config = load_config(write_config({"app": {"build_type": "Debug",
                                               "cmake_options": ["-DHELLO_SANITIZE=ON"]}}))
    result = build_release(config, on_progress=stages.append)
    assert stages == ["configure", "compile", "ctest", "install", "package"]
    assert result.manifest["cmake_options"] == ["-DHELLO_SANITIZE=ON"]
