"""Crafted release tarballs against a real sandbox host: each is refused, nothing moves.

One table, one row per way a release could reach past its folder (issue 11's cases and
the ones that already held). Each row is deployed with ``bgkit deploy`` to the idle pool
of a sandbox whose other pool is live; afterwards the idle hosts have no release, no
file of any host changed (the host tree is hashed before and after), the load balancer
still sends traffic to the live pool, and the message names the problem.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgkit.artifact import BuildResult
from bgkit.cli import main
from bgkit.config import Config, load_config
from bgkit.deploy import deploy
from bgkit.lb import get_provider
from bgkit.sandbox import sandbox_down, sandbox_up
from tests.integration.sandbox_support import rewrite_config, sandbox_ports, wait_lb_healthy

pytestmark = pytest.mark.slow

BOMB_MIB = 400  # compresses to well under 1 MiB


@dataclass
class Crafted:
    """A copy of a good release with members added; the manifest lists them if ``listed``."""

    good: BuildResult
    added: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)
    listed: bool = True
    name: str = ""

    def add(self, info: tarfile.TarInfo, data: bytes = b"") -> Crafted:
        info.size = len(data) if info.isfile() else 0
        self.added.append((info, data))
        return self

    def write(self, folder: Path) -> Path:
        path = folder / f"{self.name or self.good.release}.tar.gz"
        with tarfile.open(self.good.artifact) as source, tarfile.open(path, "w:gz") as out:
            manifest = json.load(source.extractfile("manifest.json"))  # type: ignore[arg-type]
            manifest["release"] = self.name or manifest["release"]
            if self.listed:
                manifest["files"] += [entry(info, data) for info, data in self.added]
            body = json.dumps(manifest).encode()
            for member in source.getmembers():
                if member.name == "manifest.json":
                    member.size = len(body)
                    out.addfile(member, io.BytesIO(body))
                else:
                    out.addfile(member, source.extractfile(member) if member.isfile() else None)
            for info, data in self.added:
                out.addfile(info, io.BytesIO(data) if info.isfile() else None)
        seal(path)
        return path


def entry(info: tarfile.TarInfo, data: bytes) -> dict[str, Any]:
    if info.issym():
        return {"path": info.name, "type": "symlink", "mode": "0777", "target": info.linkname}
    if info.isdir():
        return {"path": info.name, "type": "dir", "mode": "0755"}
    return {"path": info.name, "type": "file", "mode": "0644", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def seal(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def chain(crafted: Crafted) -> Crafted:
    """Folders a1/a2/a3 and a link a1/a2/a3/p -> ../../.. (the release folder itself)."""
    for folder in ("a1", "a1/a2", "a1/a2/a3"):
        crafted.add(member(folder, tarfile.DIRTYPE))
    return crafted.add(member("a1/a2/a3/p", tarfile.SYMTYPE, "../../.."))


@dataclass(frozen=True)
class Env:
    """What a row's builder may need: the good release, the sandbox, a scratch folder."""

    good: BuildResult
    config: Config
    folder: Path

    def root(self, pool: str, index: int = 0) -> Path:
        return Path(self.config.pools.get(pool).hosts[index].deploy_root)  # type: ignore[arg-type]


def to_the_live_config(env: Env) -> str:
    """From an idle host's release folder, through p, to a live host's shared/config.ini."""
    live = env.root("green") / "shared" / "config.ini"
    return "a1/a2/a3/p/../../../" + os.path.relpath(live, env.root("blue").parent)


def sparse(env: Env, *, size: int, listed_size: int) -> Path:
    """The good release plus bin/huge, a ``size``-byte sparse file (GNU tar -S: a few KB),
    listed with its true sha256 and ``listed_size``."""
    stage = env.folder / "sparse-stage"
    stage.mkdir()
    with tarfile.open(env.good.artifact) as source:
        source.extractall(stage, filter="tar")
        names = source.getnames()
    with (stage / "bin" / "huge").open("wb") as handle:
        handle.truncate(size)
    manifest = json.loads((stage / "manifest.json").read_text())
    manifest["files"].append({"path": "bin/huge", "type": "file", "mode": "0644",
                              "size": listed_size, "sha256": zeros_sha256(size >> 20)})
    (stage / "manifest.json").write_text(json.dumps(manifest))
    path = env.folder / f"{env.good.release}.tar.gz"
    subprocess.run(["tar", "-S", "--format=gnu", "--no-recursion", "--owner=0", "--group=0",
                    "-czf", str(path), "-C", str(stage), *sorted([*names, "bin/huge"])],
                   check=True)
    seal(path)
    assert path.stat().st_size < 64 * 1024
    return path


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read without holding them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


@functools.cache
def zeros_sha256(mib: int) -> str:
    digest = hashlib.sha256()
    for _ in range(mib):
        digest.update(bytes(1 << 20))
    return digest.hexdigest()


def gzip_bomb(env: Env) -> Path:
    """The good release plus a BOMB_MIB MiB file of zeros, correctly listed in the manifest."""
    size = BOMB_MIB << 20
    path = env.folder / f"{env.good.release}.tar.gz"
    with tarfile.open(env.good.artifact) as source, \
            tarfile.open(path, "w:gz", compresslevel=1) as out:
        manifest = json.load(source.extractfile("manifest.json"))  # type: ignore[arg-type]
        manifest["files"].append({"path": "bin/bomb", "type": "file", "mode": "0644",
                                  "size": size, "sha256": zeros_sha256(BOMB_MIB)})
        body = json.dumps(manifest).encode()
        for item in source.getmembers():
            if item.name == "manifest.json":
                item.size = len(body)
                out.addfile(item, io.BytesIO(body))
            else:
                out.addfile(item, source.extractfile(item) if item.isfile() else None)
        bomb = member("bin/bomb")
        bomb.size = size
        out.addfile(bomb, io.BufferedReader(Zeros(size)))
    seal(path)
    assert path.stat().st_size < 2 << 20
    return path


def tight_disk(env: Env) -> dict[str, Any]:
    """A margin leaving room for the old estimate (3 x the tarball) but not the bomb."""
    stats = os.statvfs(env.root("blue"))
    free_mib = stats.f_bavail * stats.f_frsize >> 20
    return {"deploy": {"min_free_mb": free_mib - BOMB_MIB // 2}}


def corrupt_checksum(env: Env) -> Path:
    path = Crafted(env.good).write(env.folder)
    path.with_name(path.name + ".sha256").write_text("0" * 64 + f"  {path.name}\n")
    return path


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Env], Path]
    message: str
    exit_code: int = 2
    config: Callable[[Env], dict[str, Any]] | None = None


def add(*members: tarfile.TarInfo, listed: bool = True) -> Callable[[Env], Path]:
    def build(env: Env) -> Path:
        crafted = Crafted(env.good, listed=listed)
        for info in members:
            crafted.add(info, b"#!/bin/sh\necho owned\n" if info.isfile() else b"")
        return crafted.write(env.folder)
    return build


CASES = [
    # held before issue 11, kept holding
    Case("path-traversal", add(member("../escaped")), "would be written outside the release"),
    Case("absolute-path", add(member("/tmp/bgkit-hostile-absolute")),
         "would be written outside the release"),
    Case("direct-symlink-escape", add(member("bin/out", tarfile.SYMTYPE, "../../../../etc")),
         "points outside the release"),
    Case("absolute-symlink", add(member("bin/abs", tarfile.SYMTYPE, "/etc/passwd")),
         "points outside the release"),
    Case("hard-link", add(member("bin/hard", tarfile.LNKTYPE, "bin/hello-c")), "hard link"),
    Case("device", add(member("bin/null", tarfile.CHRTYPE)), "device, FIFO"),
    Case("fifo", add(member("bin/pipe", tarfile.FIFOTYPE)), "device, FIFO"),
    Case("checksum-mismatch", corrupt_checksum, "checksum mismatch"),
    # 1: a symlink chain, the install marker, a write through a link
    Case("symlink-chain-as-install-marker-to-the-live-config",
         lambda env: chain(Crafted(env.good)).add(member(
             ".bgkit-sha256", tarfile.SYMTYPE, to_the_live_config(env))).write(env.folder),
         "'.bgkit-sha256': names starting with '.bgkit' .* are reserved for bgkit"),
    Case("symlink-chain-to-the-live-config",
         lambda env: chain(Crafted(env.good)).add(member(
             "conf/live", tarfile.SYMTYPE, "../" + to_the_live_config(env))).write(env.folder),
         "symlink 'conf/live' .* points outside the release once the 1 link"),
    Case("file-written-through-a-link",
         lambda env: chain(Crafted(env.good)).add(member("a1/a2/a3/p/owned")).write(env.folder),
         "'a1/a2/a3/p/owned' lies below the symlink 'a1/a2/a3/p'"),
    Case("reserved-name", add(member(".bgkit-sha256")), "reserved for bgkit"),
    Case("member-in-a-folder-not-held", add(member("etc/conf")),
         "'etc/conf' lies in the folder 'etc', which is not a member"),
    # 2: a sparse huge member
    Case("sparse-1-gib-member", lambda env: sparse(env, size=1 << 30, listed_size=1 << 30),
         r"1025 MiB unpacked, more than \[deploy\].max_unpacked_mb = 512"),
    Case("member-size-differs-from-manifest",
         lambda env: sparse(env, size=1 << 30, listed_size=10),
         "'bin/huge' is 1073741824 bytes in the tarball but manifest.json says 10"),
    # 3: a gzip bomb against a host with too little room
    Case("gzip-bomb-on-a-tight-disk", gzip_bomb, r"MiB free under .*MiB needed \(the upload, "
         f"{BOMB_MIB} MiB unpacked", exit_code=1, config=tight_disk),
    # 4: members the manifest does not list
    Case("member-not-in-manifest", add(member("bin/backdoor"), listed=False),
         "'bin/backdoor' is not listed in manifest.json"),
    Case("link-not-in-manifest", add(member("bin/alias", tarfile.SYMTYPE, "hello-c"),
                                     listed=False), "'bin/alias' is not listed"),
    Case("duplicate-member", add(member("bin/hello-c")), "'bin/hello-c' appears twice"),
    # 5 and 6: control characters in names
    Case("newline-in-member-name", add(member("bin/a\nb")), "control character in its name"),
    Case("carriage-return-in-link-target", add(member("bin/t", tarfile.SYMTYPE, "x\rY")),
         "control character in its target"),
    Case("newline-in-release-name",
         lambda env: Crafted(env.good, name="hello-c-2.0.0\nx").write(env.folder),
         "is not a release name: expected <release>.tar.gz"),
]


def host_tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its kind and content (service logs aside)."""
    tree = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if "/shared/log/" in f"/{relative}":
            continue
        if path.is_symlink():
            tree[relative] = f"link {path.readlink()}"
        elif path.is_file():
            tree[relative] = f"file {path.stat().st_mode:o} " + hashlib.sha256(
                path.read_bytes()).hexdigest()
        else:
            tree[relative] = f"dir {path.stat().st_mode:o}"
    return tree


@pytest.fixture(scope="module")
def live_green(tmp_path_factory: pytest.TempPathFactory,
               releases: dict[str, BuildResult]) -> Iterator[Config]:
    """One sandbox for the whole table: green live with 1.0.0, blue idle and empty."""
    state = tmp_path_factory.mktemp("hostile") / "sbx"
    info = sandbox_up(state, hosts=2, **sandbox_ports())
    try:
        config = load_config(info.config_file)
        deploy(config, artifact=releases["1.0.0"].artifact)
        wait_lb_healthy(config, "green")
        get_provider(config).switch("green", timeout_s=10)
        yield config
    finally:
        sandbox_down(state)


def public_version(config: Config) -> str:
    response = httpx.get(f"{config.lb.public_url}/", timeout=5)
    return f"{response.status_code} {response.headers.get('X-App-Version')}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_release_is_refused_and_no_host_changes(
        live_green: Config, releases: dict[str, BuildResult], tmp_path: Path, case: Case,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = Env(good=releases["2.0.0"], config=live_green, folder=tmp_path)
    release = case.build(env)
    config = live_green if case.config is None else rewrite_config(
        live_green.path, case.config(env), name=f"{case.id}.toml")
    hosts = env.root("blue").parent
    before = host_tree(hosts)
    capsys.readouterr()

    code = main(["deploy", "--config", str(config.path), "--artifact", str(release)])

    message = capsys.readouterr().err.replace("\n", " ")
    assert code == case.exit_code, message
    assert re.search(case.message, message), message
    assert host_tree(hosts) == before
    for index in range(2):
        releases_dir = env.root("blue", index) / "releases"
        assert not releases_dir.exists() or not any(releases_dir.iterdir())
    assert get_provider(live_green).live_pool() == "green"
    assert public_version(live_green) == "200 1.0.0"
