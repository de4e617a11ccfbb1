"""What a host served when its pool was last live: the commands in a real shell, and the
rule that decides where a rollback may go."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bgkit.commands import remote
from bgkit.commands.remote import LastLive
from bgkit.ledger import HostServes, judge_rollback

HOSTILE = "it's a; $(root)"


def sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)


def release(root: Path, name: str, version: str) -> None:
    folder = root / "releases" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": "app", "version": version},
                                                     indent=2))
    (root / "releases" / f".{name}.sha256").write_text("ab" * 32 + "\n")


def point_current(root: Path, name: str) -> None:
    assert sh(remote.swap_current(remote.Layout(str(root), name))).returncode == 0


def test_went_live_then_left_is_recorded_atomically_and_read_back(tmp_path: Path) -> None:
    root = tmp_path / HOSTILE
    release(root, "app-1.0.0-abc", "1.0.0")
    assert sh(remote.mark_live(str(root), at="t0")).returncode == 3  # current points nowhere
    assert remote.parse_served(sh(remote.served(str(root))).stdout) == remote.Served("", None,
                                                                                      None)
    point_current(root, "app-1.0.0-abc")
    assert sh(remote.mark_live(str(root), at="t1")).returncode == 0
    served = remote.parse_served(sh(remote.served(str(root))).stdout)
    assert served == remote.Served("app-1.0.0-abc", "1.0.0", LastLive("app-1.0.0-abc", "t1", ""))
    assert sh(remote.mark_live(str(root), at="t2")).returncode == 0  # already live: kept
    assert remote.parse_served(sh(remote.served(str(root))).stdout).last_live == \
        LastLive("app-1.0.0-abc", "t1", "")
    assert sh(remote.mark_left(str(root), at="t3")).returncode == 0
    assert sh(remote.mark_left(str(root), at="t4")).returncode == 0  # the latest wins
    after = remote.parse_served(sh(remote.served(str(root))).stdout).last_live
    assert after == LastLive("app-1.0.0-abc", "t1", "t4") and not after.live
    assert sorted(p.name for p in root.iterdir()) == ["current", "last-live", "releases"]
    assert sh(remote.mark_live(str(root), at="t5")).returncode == 0  # live again
    assert remote.parse_preflight(sh(remote.preflight(
        remote.Layout(str(root), "x"))).stdout).last_live == LastLive("app-1.0.0-abc", "t5", "")


def test_traffic_leaving_a_pool_never_recorded_live_is_recorded_without_a_release(
        tmp_path: Path) -> None:
    assert sh(remote.mark_left(str(tmp_path), at="t9")).returncode == 0
    served = remote.parse_served(sh(remote.served(str(tmp_path))).stdout)
    assert served.last_live == LastLive("", "", "t9")


def test_an_unreadable_or_hostile_record_reads_as_none() -> None:
    assert remote.parse_last_live("") is None
    assert remote.parse_last_live("last_live.release=a b; rm -rf /\n") is None


def test_kept_release_reads_the_marker_and_manifest_of_an_installed_release(
        tmp_path: Path) -> None:
    release(tmp_path, "app-1.0.0-abc", "1.0.0")
    kept = remote.parse_kept_release(sh(remote.kept_release(
        remote.Layout(str(tmp_path), "app-1.0.0-abc"))).stdout)
    assert kept.sha256 == "ab" * 32 and kept.manifest == {"name": "app", "version": "1.0.0"}
    gone = remote.parse_kept_release(sh(remote.kept_release(
        remote.Layout(str(tmp_path), "app-0.9.0-def"))).stdout)
    assert gone == remote.KeptRelease("", None)


@pytest.mark.parametrize("build", [
    lambda root: remote.mark_live(root, at="t'; reboot"),
    lambda root: remote.mark_left(root, at="t'; reboot"),
    remote.served,
    lambda root: remote.kept_release(remote.Layout(root, "rel'; reboot")),
])
def test_hostile_roots_and_values_stay_single_quoted(build: object) -> None:
    command = build("/srv/it's; rm -rf /\nx $(id)")  # type: ignore[operator]
    assert "'/srv/it'\"'\"'s; rm -rf /\nx $(id)" in command
    assert "rm -rf /\nx" not in command.replace("'/srv/it'\"'\"'s; rm -rf /\nx $(id)", "")


def host(index: int, current: str, version: str | None, lived: str | None, *,
         left: str = "t2", error: str | None = None) -> HostServes:
    record = LastLive(lived, "t1", left) if lived is not None else None
    return HostServes("blue", f"10.0.1.{index}", f"blue[{index}] 10.0.1.{index}", current,
                      version, record, error)


def test_rollback_goes_to_the_release_the_pool_served_when_last_live() -> None:
    target = judge_rollback("blue", [host(1, "app-1.0.0-a", "1.0.0", "app-1.0.0-a"),
                                     host(2, "app-1.0.0-a", "1.0.0", "app-1.0.0-a")])
    assert target.ok and (target.release, target.version) == ("app-1.0.0-a", "1.0.0")


def test_rollback_refuses_a_pool_serving_a_release_deployed_since_it_was_live() -> None:
    target = judge_rollback("blue", [host(1, "app-1.0.3-c", "1.0.3", "app-1.0.1-a"),
                                     host(2, "app-1.0.3-c", "1.0.3", "app-1.0.1-a")])
    assert not target.ok and target.kept == "app-1.0.1-a"
    assert target.refusal.startswith("blue now serves 1.0.3, which never went live")
    same_version = judge_rollback("blue", [host(1, "app-1.0.1-dirty9", "1.0.1", "app-1.0.1-a")])
    assert "blue now serves app-1.0.1-dirty9, which never went live" in same_version.refusal


@pytest.mark.parametrize(("hosts", "words"), [
    ([host(1, "app-1-a", "1", None)], "no record of the release it served"),
    ([host(1, "app-1-a", "1", "app-1-a"), host(2, "app-1-a", "1", None)], "no record"),
    ([host(1, "app-1-a", "1", "")], "no record"),
    ([host(1, "app-1-a", "1", "app-1-a"), host(2, "app-2-b", "2", "app-2-b")], "disagree"),
    ([host(1, "", None, None, error="ssh: refused")], "cannot be read (blue[1] 10.0.1.1: ssh"),
    ([], "cannot be read"),
], ids=["never-recorded", "one-host-unrecorded", "left-unrecorded", "disagree", "unreadable",
        "no-hosts"])
def test_rollback_refuses_without_one_truthful_record_on_every_host(
        hosts: list[HostServes], words: str) -> None:
    target = judge_rollback("blue", hosts)
    assert not target.ok and words in target.refusal
