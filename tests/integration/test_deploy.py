"""bgkit deploy against a real sandbox: real sshd, real HAProxy, the real C service."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.deploy import DeployResult, deploy
from bgkit.errors import DeployError, UsageError
from bgkit.hosts import Session
from bgkit.lb import get_provider
from bgkit.tarball import staged_files, write_tarball
from tests.integration.sandbox_support import (
    add_server,
    rewrite_config,
    set_fault,
    wait_lb_healthy,
)

pytestmark = pytest.mark.slow


def roots(config: Config, pool: str) -> list[Path]:
    return [Path(h.deploy_root) for h in config.pools.get(pool).hosts]  # type: ignore[arg-type]


def current_of(root: Path) -> str | None:
    link = root / "current"
    return link.readlink().name if link.is_symlink() else None


def version_at(address: str, port: int) -> str:
    response = httpx.get(f"http://{address}:{port}/health", timeout=5)
    assert response.status_code == 200
    return response.headers["X-App-Version"]


def public_version(config: Config) -> str:
    response = httpx.get(f"{config.lb.public_url}/", timeout=5)
    assert response.status_code == 200, response.text
    return response.headers["X-App-Version"]


@pytest.fixture
def serving(sandbox: Config, releases: dict[str, BuildResult]) -> Config:
    """A sandbox whose green pool is live and serving 1.0.0; blue is idle and empty."""
    deploy(sandbox, artifact=releases["1.0.0"].artifact)
    wait_lb_healthy(sandbox, "green")  # the switch step's gate, in short
    get_provider(sandbox).switch("green", timeout_s=10)
    assert public_version(sandbox) == "1.0.0"
    return sandbox


class PublicTraffic:
    """Requests through the load balancer while something else happens."""

    def __init__(self, config: Config) -> None:
        self.url = f"{config.lb.public_url}/"
        self.answers: list[tuple[int, str | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set() and len(self.answers) < 20000:
                try:
                    response = client.get(self.url)
                    self.answers.append((response.status_code,
                                         response.headers.get("X-App-Version")))
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))

    def __enter__(self) -> PublicTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_deploy_puts_the_release_on_every_idle_host_while_the_live_pool_serves(
        serving: Config, releases: dict[str, BuildResult]) -> None:
    for host in serving.pools.green.hosts:
        assert version_at(host.address, serving.service.port) == "1.0.0"
    with PublicTraffic(serving) as traffic:
        result = deploy(serving, artifact=releases["2.0.0"].artifact)
    assert result.ok and result.pool == "blue" and result.live_pool == "green"
    assert result.release == releases["2.0.0"].release
    for host in serving.pools.blue.hosts:
        assert version_at(host.address, serving.service.port) == "2.0.0"
    assert traffic.errors == []
    assert len(traffic.answers) > 10
    assert set(traffic.answers) == {(200, "1.0.0")}
    assert public_version(serving) == "1.0.0"
    assert get_provider(serving).live_pool() == "green"
    assert all(current_of(root) == releases["1.0.0"].release for root in roots(serving, "green"))


def test_deploy_refuses_the_live_pool_and_changes_nothing(
        serving: Config, releases: dict[str, BuildResult]) -> None:
    with pytest.raises(UsageError, match="refusing to deploy to the green pool: it is live"):
        deploy(serving, artifact=releases["2.0.0"].artifact, pool="green")
    assert all(current_of(root) == releases["1.0.0"].release for root in roots(serving, "green"))
    assert all(release_dirs(root) == set() for root in roots(serving, "blue"))
    assert get_provider(serving).live_pool() == "green"


def test_one_unreachable_host_fails_preflight_and_no_host_changes(
        serving: Config, releases: dict[str, BuildResult]) -> None:
    hosts = [h.model_dump() for h in serving.pools.blue.hosts]
    unreachable = {**hosts[0], "address": "127.0.1.99", "name": "blue-3",
                   "deploy_root": hosts[0]["deploy_root"] + "-unreachable"}
    config = rewrite_config(serving.path, {"pools": {"blue": {"hosts": [*hosts, unreachable]}}},
                            name="unreachable.toml")
    add_server(serving, "blue", "blue-3", "127.0.1.99", check=False)  # listed in both
    with pytest.raises(DeployError, match="failed at preflight on 1 of 3") as caught:
        deploy(config, artifact=releases["2.0.0"].artifact)
    assert "127.0.1.99" in str(caught.value) and "connection refused" in str(caught.value)
    assert "no host changed the release it serves" in str(caught.value)
    assert all(release_dirs(root) == set() for root in roots(serving, "blue"))
    assert public_version(serving) == "1.0.0"


def test_a_checksum_mismatch_after_upload_stops_before_any_host_switches(
        serving: Config, releases: dict[str, BuildResult],
        monkeypatch: pytest.MonkeyPatch) -> None:
    original = Session.put

    def corrupting_put(self: Session, local: Path, remote: str) -> None:
        original(self, local, remote)
        with Path(remote).open("ab") as uploaded:  # the sandbox host's disk is this disk
            uploaded.write(b"corrupted in transit")

    monkeypatch.setattr(Session, "put", corrupting_put)
    with pytest.raises(DeployError, match="checksum mismatch after upload") as caught:
        deploy(serving, artifact=releases["2.0.0"].artifact)
    assert "failed at stage" in str(caught.value)
    for root in roots(serving, "blue"):
        assert current_of(root) is None
        assert list((root / "releases").iterdir()) == []
        assert list((root / ".incoming").iterdir()) == []
    assert public_version(serving) == "1.0.0"


def unsafe_release(folder: Path, good: BuildResult, bad: tarfile.TarInfo) -> Path:
    """A copy of a good release with one hostile member added, with a matching .sha256."""
    path = folder / f"{good.release}.tar.gz"
    with tarfile.open(good.artifact) as source, tarfile.open(path, "w:gz") as target:
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        target.addfile(bad)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return path


def hostile(name: str, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
    return info


@pytest.mark.parametrize("bad", [hostile("../escaped"), hostile("/etc/bgkit-test"),
                                 hostile("bin/out", "../../../etc/passwd")],
                         ids=["dotdot", "absolute", "escaping-symlink"])
def test_unsafe_tarballs_are_refused_before_any_host_is_touched(
        serving: Config, releases: dict[str, BuildResult], tmp_path: Path,
        bad: tarfile.TarInfo) -> None:
    path = unsafe_release(tmp_path, releases["2.0.0"], bad)
    with pytest.raises(UsageError, match="outside the release"):
        deploy(serving, artifact=path)
    assert all(release_dirs(root) == set() for root in roots(serving, "blue"))


def test_a_binary_that_fails_at_startup_fails_that_host_and_lists_who_moved(
        serving: Config, releases: dict[str, BuildResult]) -> None:
    blue = roots(serving, "blue")
    set_fault(blue[1], fail_at_startup=True)
    with pytest.raises(DeployError, match="failed at activate on 1 of 2") as caught:
        deploy(serving, artifact=releases["2.0.0"].artifact)
    message = str(caught.value)
    assert "blue[1]" in message and "exited" in message
    assert "hosts that moved to" in message and "blue[0]" in message
    failed = {r.host.index: r for r in caught.value.results}  # type: ignore[attr-defined]
    assert failed[1].error and not failed[0].error
    assert public_version(serving) == "1.0.0"
    assert get_provider(serving).live_pool() == "green"


def test_a_service_whose_health_never_turns_200_fails_within_the_timeout(
        serving: Config, releases: dict[str, BuildResult]) -> None:
    config = rewrite_config(serving.path, {"deploy": {"health_timeout_s": 2}}, name="fast.toml")
    set_fault(roots(serving, "blue")[0], health_status=503)
    with pytest.raises(DeployError, match="answered 503"):
        deploy(config, artifact=releases["2.0.0"].artifact)
    assert public_version(serving) == "1.0.0"


def release_needing_a_missing_library(folder: Path, good: BuildResult) -> Path:
    """A release whose executable links libbgkitmissing.so, which no host has."""
    work = folder / "missing-lib"
    (work / "lib").mkdir(parents=True)
    (work / "lib.c").write_text("int bgkit_missing(void) { return 7; }\n")
    (work / "main.c").write_text("int bgkit_missing(void);\n"
                                 "int main(void) { return bgkit_missing(); }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(work / "lib" / "libbgkitmissing.so"),
                    str(work / "lib.c")], check=True)
    stage = work / "stage"
    (stage / "bin").mkdir(parents=True)
    subprocess.run(["cc", "-o", str(stage / "bin" / "hello-c"), str(work / "main.c"),
                    f"-L{work / 'lib'}", "-lbgkitmissing"], check=True)
    entries = staged_files(stage)
    manifest: dict[str, Any] = {**good.manifest, "release": "hello-c-9.9.9-missing",
                                "version": "9.9.9",
                                "files": [entry.to_manifest() for entry in entries]}
    path = folder / "hello-c-9.9.9-missing.tar.gz"
    write_tarball(stage, entries, manifest, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return path


def test_a_missing_shared_library_is_found_by_ldd_before_any_host_switches(
        serving: Config, releases: dict[str, BuildResult], tmp_path: Path) -> None:
    path = release_needing_a_missing_library(tmp_path, releases["1.0.0"])
    with pytest.raises(DeployError, match="libbgkitmissing.so") as caught:
        deploy(serving, artifact=path)
    assert "failed at stage" in str(caught.value)
    assert all(current_of(root) is None for root in roots(serving, "blue"))
    for root in roots(serving, "blue"):
        assert release_dirs(root) == set()


def test_re_running_the_same_deploy_uploads_and_restarts_nothing(
        serving: Config, releases: dict[str, BuildResult]) -> None:
    first = deploy(serving, artifact=releases["2.0.0"].artifact)
    pids = [(root / "shared/run/service.pid").read_text() for root in roots(serving, "blue")]
    again = deploy(serving, artifact=releases["2.0.0"].artifact)
    assert all(h.uploaded and h.restarted for h in first.hosts)
    assert not any(h.uploaded or h.restarted for h in again.hosts)
    assert again.moved == []
    assert pids == [(root / "shared" / "run" / "service.pid").read_text()
                    for root in roots(serving, "blue")]


def release_dirs(root: Path) -> set[str]:
    return {p.name for p in (root / "releases").iterdir() if not p.name.startswith(".")}


@pytest.fixture
def keep_two(serving: Config) -> Iterator[Config]:
    yield rewrite_config(serving.path, {"deploy": {"keep_releases": 2}}, name="keep2.toml")


def test_pruning_keeps_the_newest_and_never_the_current_or_previous_release(
        keep_two: Config, releases: dict[str, BuildResult]) -> None:
    names = {v: releases[v].release for v in releases}
    results: list[DeployResult] = [deploy(keep_two, artifact=releases[v].artifact)
                                   for v in ("2.0.0", "3.0.0", "4.0.0")]
    assert all(r.ok for r in results)
    for root in roots(keep_two, "blue"):
        assert release_dirs(root) == {names["3.0.0"], names["4.0.0"]}
    deploy(keep_two, artifact=releases["2.0.0"].artifact)  # back to an older release
    for root in roots(keep_two, "blue"):
        assert current_of(root) == names["2.0.0"]
        assert (root / "previous").readlink().name == names["4.0.0"]
        assert release_dirs(root) == {names["2.0.0"], names["4.0.0"]}


def test_the_release_picker_deploys_the_chosen_release_when_clicked(
        serving: Config, releases: dict[str, BuildResult]) -> None:
    import shutil

    from bgkit.runbook.steps import release_picker

    serving.dist_dir.mkdir(parents=True, exist_ok=True)
    for version in ("2.0.0", "3.0.0"):
        for path in releases[version].artifact.parent.glob(f"{releases[version].release}.*"):
            shutil.copy2(path, serving.dist_dir / path.name)
    box = release_picker(serving, lb=get_provider(serving))
    picker, button, progress = box.children
    assert "blue" in button.status and button.label == "Deploy to blue (idle)"
    assert button.state == "ready"
    assert {label for label, _ in picker.options} == {
        f"{releases[v].release}.tar.gz" for v in ("2.0.0", "3.0.0")}
    picker.value = str(serving.dist_dir / f"{releases['3.0.0'].release}.tar.gz")
    button.click()
    assert button.label == "deployed" and button.state == "done"
    for host in serving.pools.blue.hosts:
        assert host.address in progress.value and "done" in progress.value
    for host in serving.pools.blue.hosts:
        assert version_at(host.address, serving.service.port) == "3.0.0"
    assert public_version(serving) == "1.0.0"
