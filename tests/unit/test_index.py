"""The hash-chained archive index: every tampering is reported, naming file or line."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from bgkit.errors import UsageError
from bgkit.runbook import index
from bgkit.runbook.index import GENESIS, INDEX_NAME, append, read_entries, verify_archive
from tests.unit.archive_factory import write_run


def archive_of(runs_dir: Path, count: int) -> list[Path]:
    paths = [write_run(runs_dir, "04_switch", f"2026-11-{day:02d}T10:00:00+00:00")
             for day in range(1, count + 1)]
    for path in paths:
        append(runs_dir, path)
    return paths


def relative(runs_dir: Path, path: Path) -> str:
    return path.relative_to(runs_dir).as_posix()


def index_lines(runs_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (runs_dir / INDEX_NAME).read_text().splitlines()]


def write_lines(runs_dir: Path, lines: list[dict[str, object]]) -> None:
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    (runs_dir / INDEX_NAME).write_text(text)


def kinds(check: index.ArchiveCheck) -> list[tuple[str, str]]:
    return [(finding.kind, finding.subject) for finding in check.findings]


def test_appended_entries_chain_and_a_clean_archive_verifies(tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 3)
    entries = read_entries(tmp_path)
    assert [entry.seq for entry in entries] == [1, 2, 3]
    assert entries[0].prev == GENESIS
    assert [entry.prev for entry in entries[1:]] == [entry.hash for entry in entries[:-1]]
    assert entries[1].path == relative(tmp_path, paths[1])
    assert entries[1].run_id == paths[1].stem.rsplit("_", 1)[-1]
    assert entries[1].sha256 == hashlib.sha256(paths[1].read_bytes()).hexdigest()
    check = verify_archive(tmp_path)
    assert check.ok, check.findings
    assert (check.entries, check.notebooks, check.head) == (3, 3, entries[-1].hash)


def test_each_line_is_canonical_json_whose_hash_covers_every_other_field(
        tmp_path: Path) -> None:
    archive_of(tmp_path, 1)
    line = (tmp_path / INDEX_NAME).read_text().splitlines()[0]
    fields = json.loads(line)
    assert line == json.dumps(fields, sort_keys=True, separators=(",", ":"))
    body = {key: value for key, value in fields.items() if key != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert fields["hash"] == hashlib.sha256(canonical).hexdigest()
    assert sorted(fields) == ["hash", "path", "prev", "recorded_at", "run_id", "seq", "sha256"]


def test_a_notebook_edited_after_indexing_is_reported_as_modified(tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 3)
    paths[1].chmod(stat.S_IRUSR | stat.S_IWUSR)
    paths[1].write_text(paths[1].read_text().replace("ci@runner", "someone@else"))
    check = verify_archive(tmp_path)
    assert kinds(check) == [("modified", relative(tmp_path, paths[1]))]
    assert "at seq 2" in check.findings[0].detail


def test_a_deleted_notebook_is_reported_with_its_index_entry(tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 3)
    paths[0].unlink()
    check = verify_archive(tmp_path)
    assert kinds(check) == [("deleted", relative(tmp_path, paths[0]))]
    assert "seq 1" in check.findings[0].detail


def test_a_notebook_added_without_an_index_entry_is_reported_as_inserted(
        tmp_path: Path) -> None:
    archive_of(tmp_path, 2)
    extra = write_run(tmp_path, "04_switch", "2026-11-20T10:00:00+00:00")
    check = verify_archive(tmp_path)
    assert kinds(check) == [("inserted", relative(tmp_path, extra))]


def test_an_edited_index_line_is_reported_at_its_line(tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 3)
    lines = index_lines(tmp_path)
    lines[1]["recorded_at"] = "2020-01-01T00:00:00+00:00"
    write_lines(tmp_path, lines)
    check = verify_archive(tmp_path)
    assert [(f.kind, f.subject.split(" (")[0]) for f in check.findings] == [
        ("chain", f"{INDEX_NAME} line 2")]
    assert relative(tmp_path, paths[1]) in check.findings[0].subject
    assert "edited" in check.findings[0].detail


def test_a_rehashed_edit_to_hide_a_changed_notebook_breaks_the_next_link(
        tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 3)
    paths[1].chmod(stat.S_IRUSR | stat.S_IWUSR)
    paths[1].write_text(paths[1].read_text().replace("succeeded", "failed"))
    lines = index_lines(tmp_path)
    lines[1]["sha256"] = hashlib.sha256(paths[1].read_bytes()).hexdigest()
    lines[1]["hash"] = index.entry_hash(lines[1])
    write_lines(tmp_path, lines)
    check = verify_archive(tmp_path)
    assert [(f.kind, f.subject.split(" (")[0]) for f in check.findings] == [
        ("chain", f"{INDEX_NAME} line 3")]
    assert "does not match the hash of line 2" in check.findings[0].detail


def test_a_removed_index_line_breaks_seq_and_prev_and_its_file_shows_as_inserted(
        tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 3)
    lines = index_lines(tmp_path)
    write_lines(tmp_path, [lines[0], lines[2]])
    check = verify_archive(tmp_path)
    details = [f.detail for f in check.findings if f.kind == "chain"]
    assert len(details) == 2
    assert "seq 3 where 2 was expected" in details[0]
    assert "prev" in details[1]
    assert ("inserted", relative(tmp_path, paths[1])) in kinds(check)


def test_reordered_lines_are_reported(tmp_path: Path) -> None:
    archive_of(tmp_path, 3)
    lines = index_lines(tmp_path)
    write_lines(tmp_path, [lines[0], lines[2], lines[1]])
    check = verify_archive(tmp_path)
    assert {f.kind for f in check.findings} == {"chain"}
    assert len(check.findings) == 4  # both moved lines: seq and prev


def test_a_cut_short_line_is_reported_once_and_later_appends_still_chain(
        tmp_path: Path) -> None:
    archive_of(tmp_path, 2)
    with (tmp_path / INDEX_NAME).open("a") as handle:
        handle.write('{"seq": 3, "run_id": "ab')  # a crash mid-write
    late = write_run(tmp_path, "04_switch", "2026-11-20T10:00:00+00:00")
    entry = append(tmp_path, late)
    assert entry.seq == 4
    check = verify_archive(tmp_path)
    assert kinds(check) == [("unreadable", f"{INDEX_NAME} line 3")]
    assert "not JSON" in check.findings[0].detail


def test_a_file_indexed_twice_is_refused_and_reported(tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 1)
    with pytest.raises(UsageError, match="already in"):
        append(tmp_path, paths[0])
    lines = index_lines(tmp_path)
    copy = {**lines[0], "seq": 2, "prev": lines[0]["hash"]}
    copy["hash"] = index.entry_hash(copy)
    write_lines(tmp_path, [lines[0], copy])
    assert [f.kind for f in verify_archive(tmp_path).findings] == ["duplicate"]


def test_an_entry_pointing_outside_the_archive_is_reported_not_read(tmp_path: Path) -> None:
    archive_of(tmp_path, 1)
    lines = index_lines(tmp_path)
    rogue = {**lines[0], "seq": 2, "prev": lines[0]["hash"], "path": "../../etc/passwd"}
    rogue["hash"] = index.entry_hash(rogue)
    write_lines(tmp_path, [lines[0], rogue])
    check = verify_archive(tmp_path)
    assert [f.kind for f in check.findings] == ["unreadable"]
    assert "outside the archive" in check.findings[0].detail


def test_append_refuses_a_file_outside_the_runs_dir(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    stray = write_run(tmp_path / "elsewhere", "04_switch", "2026-11-01T10:00:00+00:00")
    with pytest.raises(UsageError, match="not inside the run archive"):
        append(tmp_path / "runs", stray)


def test_an_archive_without_an_index_reports_every_run_and_a_missing_dir_is_an_error(
        tmp_path: Path) -> None:
    assert verify_archive(tmp_path).ok  # empty: nothing to check
    write_run(tmp_path, "01_build", "2026-11-01T10:00:00+00:00")
    assert [f.kind for f in verify_archive(tmp_path).findings] == ["inserted"]
    with pytest.raises(UsageError, match="no run archive"):
        verify_archive(tmp_path / "missing")


def _append_many(runs_dir: str, paths: list[str]) -> None:
    for path in paths:
        append(Path(runs_dir), Path(path))


def test_concurrent_appends_from_several_processes_keep_the_chain_intact(
        tmp_path: Path) -> None:
    workers, each = 6, 15
    paths = [str(write_run(tmp_path, "04_switch", f"2026-11-01T10:{minute:02d}:00+00:00",
                           run_id=f"{worker:02d}{minute:010d}"))
             for worker in range(workers) for minute in range(each)]
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_many, args=(str(tmp_path),
                                                            paths[w * each:(w + 1) * each]))
                 for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    check = verify_archive(tmp_path)
    assert check.ok, check.findings[:5]
    assert [entry.seq for entry in read_entries(tmp_path)] == list(range(1, workers * each + 1))


def test_an_expected_head_catches_removed_last_runs_an_emptied_archive_and_a_rewrite(
        tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 3)
    head = read_entries(tmp_path)[-1].hash
    assert verify_archive(tmp_path, expect_head=head).ok
    earlier = read_entries(tmp_path)[1].hash
    assert verify_archive(tmp_path, expect_head=earlier).ok, "later runs may follow a head"

    # the last run and its index line removed: the chain alone still looks in order
    lines = index_lines(tmp_path)
    write_lines(tmp_path, lines[:-1])
    paths[-1].chmod(stat.S_IWUSR | stat.S_IRUSR)
    paths[-1].unlink()
    assert verify_archive(tmp_path).ok
    assert [f.kind for f in verify_archive(tmp_path, expect_head=head).findings] == ["head"]

    # emptied: no index, no runs
    (tmp_path / INDEX_NAME).unlink()
    for path in paths[:-1]:
        path.chmod(stat.S_IWUSR | stat.S_IRUSR)
        path.unlink()
    assert verify_archive(tmp_path).ok
    assert [f.kind for f in verify_archive(tmp_path, expect_head=head).findings] == ["head"]
    gone = verify_archive(tmp_path / "nowhere", expect_head=head)
    assert [f.kind for f in gone.findings] == ["head"]


def rehash_from(runs_dir: Path, start: int) -> None:
    """Rewrite the chain from line ``start`` on with fresh file digests and hashes, as
    someone covering an edit would."""
    lines = index_lines(runs_dir)
    for number, line in enumerate(lines):
        if number >= start:
            line["sha256"] = hashlib.sha256((runs_dir / str(line["path"])).read_bytes()).hexdigest()
            line["prev"] = lines[number - 1]["hash"] if number else GENESIS
            line.pop("mac", None)
            line["hash"] = index.entry_hash(line)
    write_lines(runs_dir, lines)


def test_a_rewritten_chain_is_caught_by_the_expected_head(tmp_path: Path) -> None:
    paths = archive_of(tmp_path, 3)
    head = read_entries(tmp_path)[-1].hash
    target = paths[1]
    target.chmod(stat.S_IWUSR | stat.S_IRUSR)
    target.write_text(target.read_text().replace("2026-11-02", "2026-11-09"))
    rehash_from(tmp_path, 1)
    assert verify_archive(tmp_path).ok, "a consistent rewrite fools the chain alone"
    assert [f.kind for f in verify_archive(tmp_path, expect_head=head).findings] == ["head"]


def test_with_a_key_every_entry_is_macced_and_a_rewrite_without_the_key_is_caught(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(index.KEY_ENV, "archive-key-123")
    paths = archive_of(tmp_path, 3)
    entries = read_entries(tmp_path)
    assert all(entry.mac == index.keyed(entry.hash) for entry in entries)
    assert verify_archive(tmp_path).ok
    keyed_head = index.keyed(entries[-1].hash)
    assert keyed_head is not None and verify_archive(tmp_path, expect_head=keyed_head).ok
    target = paths[2]
    target.chmod(stat.S_IWUSR | stat.S_IRUSR)
    target.write_text(target.read_text().replace("2026-11-03", "2026-11-09"))
    rehash_from(tmp_path, 2)
    check = verify_archive(tmp_path)
    assert [f.kind for f in check.findings] == ["unkeyed"], check.findings
    assert verify_archive(tmp_path, key="the-wrong-key").findings
    monkeypatch.delenv(index.KEY_ENV)
    assert verify_archive(tmp_path).ok, "without the key only the chain is checked"
