"""A release is checked before any host sees it: checksum, members, manifest."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from bgkit import release_check
from bgkit.errors import UsageError
from bgkit.release_check import check_artifact, latest_artifact

MANIFEST = {"name": "app", "version": "1.0", "release": "app-1.0-abc", "executable": "bin/app",
            "arch": "x86_64"}


def write_release(folder: Path, members: list[tarfile.TarInfo], *, files: dict[str, bytes],
                  manifest: dict[str, object] | None = None, name: str = "app-1.0-abc",
                  listed: bool = True) -> Path:
    """A release of ``files`` plus extra ``members``, with a matching .sha256.

    With ``listed`` the manifest lists every member as it is (so that a test meets the
    rule it aims at, not the manifest's); ``manifest`` overrides any key.
    """
    path = folder / f"{name}.tar.gz"
    folders = [folder_of for folder_of in sorted({
        "/".join(p.split("/")[:depth]) for p in files for depth in range(1, p.count("/") + 1)})]
    entries = [entry_of(info, files.get(info.name, b"")) for info in [
        *(member(f, tarfile.DIRTYPE) for f in folders),
        *(file_info(p, d) for p, d in files.items()), *members]
        if listed or info.name in files or info.name in folders]
    body = json.dumps({**MANIFEST, "files": entries, **(manifest or {})}).encode()
    with tarfile.open(path, "w:gz") as tar:
        for folder_path in folders:
            tar.addfile(member(folder_path, tarfile.DIRTYPE))
        for member_path, data in {**files, "manifest.json": body}.items():
            tar.addfile(file_info(member_path, data), io.BytesIO(data))
        for extra in members:
            tar.addfile(extra)
    seal(path)
    return path


def file_info(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


def entry_of(info: tarfile.TarInfo, data: bytes) -> dict[str, object]:
    if info.issym():
        return {"path": info.name, "type": "symlink", "target": info.linkname}
    if info.isdir():
        return {"path": info.name, "type": "dir"}
    return {"path": info.name, "type": "file", "size": info.size,
            "sha256": hashlib.sha256(data).hexdigest()}


def seal(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


BIN = {"path": "bin", "type": "dir"}


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def folder(name: str) -> tarfile.TarInfo:
    return member(name, tarfile.DIRTYPE)


def link(name: str, target: str) -> tarfile.TarInfo:
    return member(name, tarfile.SYMTYPE, target)


def test_a_good_release_passes_with_its_manifest(tmp_path: Path) -> None:
    path = write_release(tmp_path, [member("bin/app-link", tarfile.SYMTYPE, "app")],
                         files={"bin/app": b"\x7fELF"})
    checked = check_artifact(path)
    assert checked.release == "app-1.0-abc" and checked.version == "1.0"
    assert checked.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("bad", "message"), [
    (member("../evil"), "outside the release"),
    (member("/etc/cron.d/evil"), "outside the release"),
    (member("bin/../../evil"), "outside the release"),
    (link("bin/escape", "../../etc/passwd"), "points outside"),
    (link("bin/abs", "/etc/passwd"), "points outside"),
    (member("bin/hard", tarfile.LNKTYPE, "bin/app"), "hard link"),
    (member("dev/null", tarfile.CHRTYPE), "device, FIFO"),
    (member("fifo", tarfile.FIFOTYPE), "device, FIFO"),
])
def test_members_that_could_escape_or_are_special_are_refused(
        tmp_path: Path, bad: tarfile.TarInfo, message: str) -> None:
    path = write_release(tmp_path, [bad], files={"bin/app": b"x"})
    with pytest.raises(UsageError, match=message):
        check_artifact(path)


def test_a_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    path = write_release(tmp_path, [], files={"bin/app": b"x"})
    path.with_name(path.name + ".sha256").write_text("0" * 64 + f"  {path.name}\n")
    with pytest.raises(UsageError, match="checksum mismatch"):
        check_artifact(path)


def test_a_file_that_differs_from_its_manifest_entry_is_refused(tmp_path: Path) -> None:
    path = write_release(tmp_path, [], files={"bin/app": b"x"},
                         manifest={"files": [BIN, {"path": "bin/app", "type": "file",
                                              "sha256": "0" * 64}]})
    with pytest.raises(UsageError, match="does not match its sha256"):
        check_artifact(path)


def test_missing_checksum_file_or_release(tmp_path: Path) -> None:
    path = write_release(tmp_path, [], files={"bin/app": b"x"})
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(UsageError, match=r"\.sha256 is missing"):
        check_artifact(path)
    with pytest.raises(UsageError, match="does not exist"):
        check_artifact(tmp_path / "nope.tar.gz")


def test_latest_release_is_the_newest_tarball(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="run `bgkit build` first"):
        latest_artifact(tmp_path)
    old = write_release(tmp_path, [], files={"a": b"1"}, name="app-1")
    new = write_release(tmp_path, [], files={"a": b"2"}, name="app-2")
    import os

    os.utime(old, (1, 1))
    assert latest_artifact(tmp_path) == new


# --- nothing in a release reaches past it (issue 11) ---------------------------------

CHAIN = [folder("a1"), folder("a1/a2"), folder("a1/a2/a3"), link("a1/a2/a3/p", "../../..")]


@pytest.mark.parametrize(("bad", "message"), [
    ([*CHAIN, link("conf", "a1/a2/a3/p/../../../live/shared/config.ini")],
     r"symlink 'conf' .* points outside the release once the 1 link\(s\)"),
    ([link("a", "b"), link("b", "c"), link("c", "../outside")], "points outside"),
    ([link("loop", "loop/x")], "more than 40 links"),
    ([link("bin/up", "."), link("bin/up2", "up/../..")], "points outside"),
    ([link("lib", "bin"), member("lib/evil")], "lies below the symlink 'lib'"),
    ([*CHAIN, member("a1/a2/a3/p/evil")], "lies below the symlink 'a1/a2/a3/p'"),
    ([member("bin/app/inner")], "lies below the file 'bin/app'"),
    ([member("etc/conf")], "lies in the folder 'etc', which is not a member"),
], ids=["chain-escape", "link-to-link-escape", "loop", "dot-then-dotdot", "file-below-link",
        "file-below-chain", "file-below-file", "folder-not-a-member"])
def test_links_are_followed_through_the_release_as_the_kernel_would(
        tmp_path: Path, bad: list[tarfile.TarInfo], message: str) -> None:
    path = write_release(tmp_path, bad, files={"bin/app": b"x"})
    with pytest.raises(UsageError, match=message):
        check_artifact(path)


def test_links_that_stay_inside_through_other_links_pass(tmp_path: Path) -> None:
    path = write_release(tmp_path, [*CHAIN, link("bin/root-conf", "../a1/a2/a3/p/conf"),
                                    link("bin/self", "."), link("bin/up", "..")],
                         files={"bin/app": b"x", "conf": b"c"})
    assert check_artifact(path).release == "app-1.0-abc"


@pytest.mark.parametrize(("bad", "message"), [
    ([member(".bgkit-sha256")], "reserved for bgkit"),
    ([link(".bgkit-sha256", "a1/a2/a3/p/../../../live/shared/config.ini"), *CHAIN],
     "reserved for bgkit"),
    ([member("bin/app")], "'bin/app' appears twice"),
    ([member("bin/a\nb")], "control character in its name"),
    ([member("bin/a\rb")], "control character in its name"),
    ([member("bin/a\x85b")], "control character in its name"),
    ([link("bin/t", "app\nx")], "control character in its target"),
    ([member("./bin/other")], "not a plain relative path"),
    ([member("bin//other")], "not a plain relative path"),
], ids=["reserved-file", "reserved-link-chain", "duplicate", "newline", "carriage-return",
        "c1-control", "newline-in-target", "dot-prefix", "double-slash"])
def test_reserved_duplicate_control_and_non_plain_names_are_refused(
        tmp_path: Path, bad: list[tarfile.TarInfo], message: str) -> None:
    path = write_release(tmp_path, bad, files={"bin/app": b"x"})
    with pytest.raises(UsageError, match=message):
        check_artifact(path)


def test_a_manifest_that_is_a_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app-1.0-abc.tar.gz"
    body = json.dumps({**MANIFEST, "files": []}).encode()
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(file_info("real.json", body), io.BytesIO(body))
        tar.addfile(link("manifest.json", "real.json"))
    seal(path)
    with pytest.raises(UsageError, match="manifest.json must be a regular file"):
        check_artifact(path)


def test_a_member_the_manifest_does_not_list_is_refused(tmp_path: Path) -> None:
    path = write_release(tmp_path, [member("bin/backdoor")], files={"bin/app": b"x"},
                         listed=False)
    with pytest.raises(UsageError, match="'bin/backdoor' is not listed in manifest.json"):
        check_artifact(path)


def test_an_unlisted_folder_or_link_is_refused_too(tmp_path: Path) -> None:
    for extra in (folder("extra"), link("bin/alias", "app")):
        path = write_release(tmp_path, [extra], files={"bin/app": b"x"}, listed=False)
        with pytest.raises(UsageError, match="is not listed in manifest.json"):
            check_artifact(path)


@pytest.mark.parametrize(("entry", "message"), [
    ({"path": "bin/app", "type": "symlink", "target": "x"}, "is a file in the tarball but a "
     "symlink"),
    ({"path": "bin/app", "type": "file", "size": 10, "sha256": "0" * 64},
     "'bin/app' is 1 bytes in the tarball but manifest.json says 10"),
    ({"path": "bin/gone", "type": "file", "size": 1, "sha256": "0" * 64},
     "lists 'bin/gone' but the tarball has no such member"),
])
def test_the_manifest_must_describe_each_member_as_it_is(
        tmp_path: Path, entry: dict[str, object], message: str) -> None:
    path = write_release(tmp_path, [], files={"bin/app": b"x"},
                         manifest={"files": [BIN, entry] if entry["path"] == "bin/app" else [
                             BIN, entry_of(file_info("bin/app", b"x"), b"x"), entry]})
    with pytest.raises(UsageError, match=message):
        check_artifact(path)


def test_a_link_target_differing_from_the_manifest_is_refused(tmp_path: Path) -> None:
    path = write_release(tmp_path, [link("bin/alias", "app")], files={"bin/app": b"x"},
                         manifest={"files": [
                             BIN, entry_of(file_info("bin/app", b"x"), b"x"),
                             {"path": "bin/alias", "type": "symlink", "target": "other"}]})
    with pytest.raises(UsageError, match="points at 'app' but manifest.json says 'other'"):
        check_artifact(path)


def sparse_release(folder_path: Path, *, size: int, listed_size: int | None = None) -> Path:
    """A release whose bin/big is a ``size``-byte sparse file (GNU tar -S): a few KB."""
    stage = folder_path / "stage"
    (stage / "bin").mkdir(parents=True)
    (stage / "bin" / "app").write_bytes(b"x")
    with (stage / "bin" / "big").open("wb") as handle:
        handle.truncate(size)
    digest = hashlib.sha256()
    for _ in range(size >> 20):
        digest.update(bytes(1 << 20))
    entries = [entry_of(folder("bin"), b""), entry_of(file_info("bin/app", b"x"), b"x"),
               {"path": "bin/big", "type": "file", "size": listed_size or size,
                "sha256": digest.hexdigest()}]
    (stage / "manifest.json").write_text(json.dumps({**MANIFEST, "files": entries}))
    path = folder_path / "app-1.0-abc.tar.gz"
    subprocess.run(["tar", "-S", "--format=gnu", "--no-recursion", "-czf", str(path), "-C",
                    str(stage), "bin", "bin/app", "bin/big", "manifest.json"], check=True)
    seal(path)
    return path


def test_a_huge_sparse_member_is_refused_by_its_size_before_any_byte_is_read(
        tmp_path: Path) -> None:
    path = sparse_release(tmp_path, size=1 << 30)
    assert path.stat().st_size < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=r"1025 MiB unpacked, more than "
                           r"\[deploy\].max_unpacked_mb = 512"):
            check_artifact(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_a_member_larger_than_its_manifest_entry_is_refused_unread(tmp_path: Path) -> None:
    path = sparse_release(tmp_path, size=1 << 30, listed_size=1024)
    with pytest.raises(UsageError, match="'bin/big' is 1073741824 bytes in the tarball but "
                       "manifest.json says 1024"):
        check_artifact(path, max_unpacked_mb=4096)


def test_files_are_hashed_in_blocks_whatever_their_size(tmp_path: Path) -> None:
    path = sparse_release(tmp_path, size=64 << 20)
    tracemalloc.start()
    try:
        checked = check_artifact(path, max_unpacked_mb=128)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert checked.unpacked_bytes == (64 << 20) + 3 * 4096
    assert peak < 16 << 20


def test_too_many_members_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(release_check, "MAX_MEMBERS", 3)
    path = write_release(tmp_path, [folder("d1"), folder("d2")], files={"bin/app": b"x"})
    with pytest.raises(UsageError, match="more than 3 members"):
        check_artifact(path)


def test_an_oversized_manifest_is_refused_unread(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(release_check, "MAX_MANIFEST_BYTES", 100)
    path = write_release(tmp_path, [], files={"bin/app": b"x"})
    with pytest.raises(UsageError, match="manifest.json is .* bytes, more than the 100"):
        check_artifact(path)


@pytest.mark.parametrize("name", ["app-1.0\nx", "app 1.0", "app-1.0\r", "-app", "app'1"])
def test_a_release_file_name_that_is_not_a_release_name_says_so(tmp_path: Path,
                                                                name: str) -> None:
    path = write_release(tmp_path, [], files={"bin/app": b"x"}, name=name,
                         manifest={"release": None})
    with pytest.raises(UsageError, match="is not a release name: expected <release>.tar.gz"):
        check_artifact(path)


def test_a_manifest_nested_too_deep_for_json_is_refused_without_a_traceback(
        tmp_path: Path) -> None:
    path = tmp_path / "app-1.0-abc.tar.gz"
    body = b"[" * 200_000 + b"]" * 200_000
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(file_info("manifest.json", body), io.BytesIO(body))
    seal(path)
    with pytest.raises(UsageError, match="is not a usable release"):
        check_artifact(path)
