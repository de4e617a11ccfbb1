"""Remote layout commands: exact strings, hostile values, and their parsers."""

from __future__ import annotations

import hashlib

import pytest

from bgkit.commands import remote
from bgkit.release_tree import Member

HOSTILE_ROOT = "/srv/it's; rm -rf /\nx $(id)"
LAYOUT = remote.Layout("/srv/app", "app-1.0.0-abc1234")


def test_layout_paths() -> None:
    assert LAYOUT.release_dir == "/srv/app/releases/app-1.0.0-abc1234"
    assert LAYOUT.partial_dir == "/srv/app/releases/.app-1.0.0-abc1234.partial"
    assert LAYOUT.incoming == "/srv/app/.incoming/app-1.0.0-abc1234.tar.gz"
    assert LAYOUT.current == "/srv/app/current"


def test_extract_refuses_ownership_and_permissions_from_the_tarball() -> None:
    assert remote.extract(LAYOUT) == (
        "rm -rf -- /srv/app/releases/.app-1.0.0-abc1234.partial && mkdir -p -- "
        "/srv/app/releases/.app-1.0.0-abc1234.partial && tar -xzf "
        "/srv/app/.incoming/app-1.0.0-abc1234.tar.gz -C "
        "/srv/app/releases/.app-1.0.0-abc1234.partial --no-same-owner --no-same-permissions")


def test_swap_uses_a_temporary_link_and_mv_T_and_keeps_previous() -> None:
    assert remote.swap_current(LAYOUT) == (
        "set -e; old=$(readlink /srv/app/current 2>/dev/null || true); "
        'if [ -n "$old" ] && [ "$old" != releases/app-1.0.0-abc1234 ]; then ln -sfn -- "$old" '
        "/srv/app/.previous.tmp && mv -T -- /srv/app/.previous.tmp /srv/app/previous; fi; "
        "ln -sfn -- releases/app-1.0.0-abc1234 /srv/app/.current.tmp; "
        "mv -T -- /srv/app/.current.tmp /srv/app/current; "
        'test "$(readlink /srv/app/current)" = releases/app-1.0.0-abc1234')


def test_install_moves_into_place_then_marks_the_checksum_beside_the_release() -> None:
    assert remote.install_release(LAYOUT, "ab" * 32) == (
        "rm -f -- /srv/app/releases/.app-1.0.0-abc1234.sha256 && "
        "rm -rf -- /srv/app/releases/app-1.0.0-abc1234 && mv -T -- "
        "/srv/app/releases/.app-1.0.0-abc1234.partial /srv/app/releases/app-1.0.0-abc1234 && "
        f"printf '%s\\n' {'ab' * 32} > /srv/app/releases/.app-1.0.0-abc1234.sha256 && "
        "rm -f -- /srv/app/.incoming/app-1.0.0-abc1234.tar.gz")


def test_the_tree_digest_is_the_sorted_listing_find_prints() -> None:
    members = [Member("bin", "dir"), Member("bin/app", "file", 3),
               Member("bin/alias", "symlink", target="app"), Member("a b", "file", 0)]
    listing = b"d bin\nf 0 a b\nf 3 bin/app\nl bin/alias -> app\n"
    assert remote.tree_digest(members) == hashlib.sha256(listing).hexdigest()


@pytest.mark.parametrize("build", [
    lambda layout: remote.extract(layout),
    lambda layout: remote.swap_current(layout),
    lambda layout: remote.preflight(layout),
    lambda layout: remote.make_root(layout),
    lambda layout: remote.install_release(layout, "0" * 64),
    lambda layout: remote.stage(layout, sha256="0" * 64, executable="bin/a b", tree="0" * 64),
    lambda layout: remote.prune(layout, ["rel'; reboot"]),
    lambda layout: remote.list_releases(layout),
])
def test_hostile_roots_and_releases_are_always_single_quoted(build: object) -> None:
    layout = remote.Layout(HOSTILE_ROOT, "rel'; reboot")
    command = build(layout)  # type: ignore[operator]
    assert "'/srv/it'\"'\"'s; rm -rf /\nx $(id)" in command
    assert "rm -rf /\nx" not in command.replace("'/srv/it'\"'\"'s; rm -rf /\nx $(id)", "")


def test_parse_preflight() -> None:
    text = ("arch=x86_64\nfree_kb=1048576\nwritable=yes\ncurrent=releases/app-0.9-1\n"
            "installed=\n")
    assert remote.parse_preflight(text) == remote.Preflight(
        arch="x86_64", free_kb=1048576, writable=True, current="app-0.9-1", installed_sha256="")


def test_parse_preflight_names_what_is_missing() -> None:
    with pytest.raises(ValueError, match="free_kb"):
        remote.parse_preflight("arch=x86_64\n")


def test_sha256sum_parsing() -> None:
    digest = "0123456789abcdef" * 4
    assert remote.parse_sha256sum(f"{digest}  /srv/x.tar.gz\n") == digest
    with pytest.raises(ValueError):
        remote.parse_sha256sum("sha256sum: /srv/x: No such file or directory")


def test_missing_libraries_from_ldd_output() -> None:
    ldd = ("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibfoo.so.1 => not found\n"
           "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\tlibbar.so => not found\n")
    assert remote.missing_libraries(ldd) == ["libfoo.so.1", "libbar.so"]
    assert remote.missing_libraries("\tnot a dynamic executable\n") == []


def test_pruning_keeps_the_newest_and_never_current_or_previous() -> None:
    releases = [(f"r{i}", float(i)) for i in range(1, 9)]  # r8 newest
    assert remote.releases_to_prune(releases, keep=3, current="r1", previous="r2") == [
        "r5", "r4", "r3"]
    assert remote.releases_to_prune(releases, keep=10, current="r1", previous="") == []


def test_parse_releases_skips_partial_folders() -> None:
    text = ("release 1700000000.5 app-1\nrelease 1700000001.0 .app-2.partial\n"
            "release 1700000002.0 app-3\ncurrent releases/app-3\nprevious releases/app-1\n")
    assert remote.parse_releases(text) == (
        [("app-1", 1700000000.5), ("app-3", 1700000002.0)], "app-3", "app-1")


def test_prune_refuses_names_that_are_not_release_folders() -> None:
    for name in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            remote.prune(LAYOUT, [name])
    assert remote.prune(LAYOUT, []) == "true"
    assert remote.prune(LAYOUT, ["a b"]) == (
        "rm -rf -- '/srv/app/releases/a b' '/srv/app/releases/.a b.sha256'")
