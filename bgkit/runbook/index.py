"""The archive index: an append-only, hash-chained list of every archived run.

``runs/index.jsonl`` holds one JSON line per run, appended by the runner once the run's
notebook is final and read-only::

    {"hash": "...", "path": "2026/11/..._04_switch_ab12cd34ef56.ipynb", "prev": "...",
     "recorded_at": "2026-11-26T16:01:28+00:00", "run_id": "ab12cd34ef56", "seq": 7,
     "sha256": "..."}

``sha256`` is the digest of the notebook file, ``prev`` the ``hash`` of the line before
(64 zeros for the first), and ``hash`` the sha256 of the canonical JSON of the entry
without ``hash`` (sorted keys, no spaces). Editing a notebook, deleting or adding one,
or editing, removing or reordering a line is then visible to :func:`verify_archive`.

What a chain alone cannot show: the *last* lines being removed, or the whole tail being
rewritten with fresh hashes. Two things close that gap:

- **an expected head**: every run prints the index head after it; keep it somewhere else
  (a CI log, a commit message) and check with ``bgkit runs verify --expect-head HASH``,
  which fails unless that entry is still in the chain, unchanged (an empty or truncated
  archive fails too);
- **a keyed chain**: with ``BGKIT_ARCHIVE_KEY`` set in the environment (never in
  bgkit.toml), each entry also carries ``mac``, an HMAC-SHA256 of its hash under that key.
  Verifying with the key set fails on any entry without a valid ``mac``, so a chain
  re-hashed by someone without the key is caught even with no head kept elsewhere.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from bgkit.errors import BgkitError, UsageError
from bgkit.tarball import sha256_file
from bgkit.words import parse_run_name

__all__ = ["GENESIS", "INDEX_NAME", "KEY_ENV", "ArchiveCheck", "Finding", "IndexEntry",
           "append", "appended", "entry_hash", "indexed_paths", "keyed", "next_entry",
           "read_entries", "run_notebooks", "verify_archive"]

INDEX_NAME = "index.jsonl"
KEY_ENV = "BGKIT_ARCHIVE_KEY"
GENESIS = "0" * 64
RUN_GLOB = "*/*/*.ipynb"  # the archive layout, as bgkit.runbook.archive reads it
_FIELDS: dict[str, type] = {"seq": int, "run_id": str, "path": str, "sha256": str,
                            "recorded_at": str, "prev": str, "hash": str}
_OPTIONAL = ("mac", "release")  # written only when there is one

Kind = Literal["modified", "deleted", "inserted", "chain", "unreadable", "duplicate", "head",
               "unkeyed", "link"]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One line of the index."""

    seq: int
    run_id: str
    path: str  # relative to the runs dir, POSIX separators
    sha256: str
    recorded_at: str
    prev: str
    hash: str
    mac: str | None = None  # HMAC-SHA256 of ``hash`` under BGKIT_ARCHIVE_KEY, if set
    release: str | None = None  # the release id the run was about (covered by ``hash``)

    def to_line(self) -> bytes:
        fields = {key: value for key, value in asdict(self).items()
                  if value is not None or key not in _OPTIONAL}
        return _canonical(fields) + b"\n"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem :func:`verify_archive` found; ``subject`` names the file or line."""

    kind: Kind
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """The result of checking an archive against its index."""

    runs_dir: Path
    entries: int  # index lines that parse as entries
    notebooks: int  # run notebooks found in the archive
    head: str | None  # hash of the last entry: record it elsewhere to detect truncation
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def index_path(self) -> Path:
        return self.runs_dir / INDEX_NAME


def entry_hash(fields: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of an entry's fields other than ``hash`` and ``mac``."""
    body = {key: value for key, value in fields.items() if key not in ("hash", "mac")}
    return hashlib.sha256(_canonical(body)).hexdigest()


def keyed(head: str, *, key: str | None = None) -> str | None:
    """HMAC-SHA256 (hex) of ``head`` under ``key`` (default: ``$BGKIT_ARCHIVE_KEY``);
    None when there is no key."""
    secret = key if key is not None else os.environ.get(KEY_ENV)
    if not secret:
        return None
    return hmac.new(secret.encode(), head.encode(), hashlib.sha256).hexdigest()


def append(runs_dir: Path, path: Path, *, now: datetime | None = None,
           release: str | None = None) -> IndexEntry:
    """Enter the archived notebook ``path`` (about ``release``, when given) into
    ``runs_dir``'s index; return its entry.

    Safe against concurrent runners: the index is held under an exclusive ``flock``
    while its tail is read and the new line written (and fsynced).

    Raises:
        UsageError: ``path`` is not a file inside ``runs_dir``, or is already indexed.
    """
    relative = _relative(runs_dir, path)
    digest = sha256_file(path)
    runs_dir.mkdir(parents=True, exist_ok=True)
    with _locked(runs_dir / INDEX_NAME, "a+b", fcntl.LOCK_EX) as handle:
        handle.seek(0)
        raw = handle.read()
        entry = next_entry(raw, relative, digest, now=now, release=release,
                           index_name=runs_dir / INDEX_NAME)
        handle.write(appended(raw, entry)[len(raw):])
        handle.flush()
        os.fsync(handle.fileno())
    return entry


def next_entry(raw: bytes, relative: str, digest: str, *, now: datetime | None = None,
               release: str | None = None, index_name: str | Path = INDEX_NAME) -> IndexEntry:
    """The entry that enters ``relative`` (sha256 ``digest``, about ``release`` when given)
    after the index ``raw``.

    Raises:
        UsageError: ``relative`` is already indexed.
    """
    lines = raw.splitlines()
    if any(entry is not None and entry["path"] == relative
           for entry in (_parse(line) for line in lines)):
        raise UsageError(f"{relative} is already in {index_name}")
    next_seq, prev = _tail(lines)
    fields: dict[str, Any] = {
        "seq": next_seq, "run_id": parse_run_name(PurePosixPath(relative).stem).run_id,
        "path": relative, "sha256": digest,
        "recorded_at": (now or datetime.now(UTC)).isoformat(), "prev": prev,
    }
    if release:
        fields["release"] = release
    digest_of_entry = entry_hash(fields)
    return IndexEntry(**fields, hash=digest_of_entry, mac=keyed(digest_of_entry))


def appended(raw: bytes, entry: IndexEntry) -> bytes:
    """The index ``raw`` with ``entry`` as its new last line. A line cut short by a crash
    stays a (reported) line of its own."""
    return raw + (b"\n" if raw and not raw.endswith(b"\n") else b"") + entry.to_line()


def indexed_paths(raw: bytes) -> set[str]:
    """The paths the index ``raw`` holds."""
    return {entry["path"] for entry in map(_parse, raw.splitlines()) if entry is not None}


def read_entries(runs_dir: Path) -> list[IndexEntry]:
    """The index's well-formed entries in file order (an empty list without an index)."""
    return [IndexEntry(**{key: entry[key] for key in _FIELDS}, mac=entry.get("mac"),
                       release=entry.get("release"))
            for entry in map(_parse, _read_lines(runs_dir)) if entry is not None]


def run_notebooks(runs_dir: Path) -> list[str]:
    """Every run notebook in the archive layout, relative to ``runs_dir``, sorted."""
    return sorted(p.relative_to(runs_dir).as_posix() for p in runs_dir.glob(RUN_GLOB))


def verify_archive(runs_dir: Path, *, expect_head: str | None = None,
                   key: str | None = None) -> ArchiveCheck:
    """Check every archived notebook against the index, and the index's own chain.

    Reports, each naming its file or index line: notebooks changed since indexed
    (``modified``), indexed notebooks that are gone (``deleted``), notebooks that are not
    in the index (``inserted``), lines whose hash, ``prev`` or ``seq`` do not fit
    (``chain``), lines that are not entries (``unreadable``), files indexed twice
    (``duplicate``); with ``expect_head``, a chain that no longer holds that entry hash
    (``head``); with ``key`` (default ``$BGKIT_ARCHIVE_KEY``), entries whose ``mac`` is
    missing or wrong (``unkeyed``).

    Raises:
        UsageError: ``runs_dir`` is not a folder (unless a head is expected: then a
            missing archive is a finding, not a usage error).
    """
    secret = key if key is not None else os.environ.get(KEY_ENV) or None
    if not runs_dir.is_dir():
        if expect_head is None:
            raise UsageError(f"no run archive at {runs_dir} (give --runs-dir or --config)")
        return ArchiveCheck(runs_dir=runs_dir, entries=0, notebooks=0, head=None,
                            findings=(Finding("head", str(runs_dir), "the archive is gone, "
                                              f"but head {expect_head[:12]} was expected"),))
    findings: list[Finding] = []
    hashes: set[str] = set()
    indexed: dict[str, int] = {}
    entries, head = 0, None
    expected_seq, expected_prev, previous_line = 1, GENESIS, 0
    for number, raw in enumerate(_read_lines(runs_dir), start=1):
        where = f"{INDEX_NAME} line {number}"
        entry = _parse(raw)
        if entry is None:
            findings.append(Finding("unreadable", where, _unreadable_reason(raw)))
            expected_seq, expected_prev = _advance(raw, None, expected_seq, expected_prev)
            previous_line = number if raw.strip() else previous_line
            continue
        entries += 1
        where = f"{where} (seq {entry['seq']}, {entry['path']})"
        findings += _chain_findings(entry, where, expected_seq, expected_prev, previous_line)
        findings += _mac_findings(entry, where, secret)
        findings += _file_findings(runs_dir, entry, where, indexed)
        hashes.add(entry["hash"])
        indexed.setdefault(entry["path"], entry["seq"])
        expected_seq, expected_prev = _advance(raw, entry, expected_seq, expected_prev)
        previous_line, head = number, entry["hash"]
    found = run_notebooks(runs_dir)
    findings += [Finding("inserted", name, _inserted_reason(runs_dir / name))
                 for name in found if name not in indexed]
    if expect_head is not None and expect_head not in hashes and \
            (secret is None or not any(keyed(h, key=secret) == expect_head for h in hashes)):
        findings.append(Finding("head", INDEX_NAME, f"the expected head {expect_head[:12]} is "
                                "not in the chain: runs were removed from its end, the "
                                "archive was emptied, or the chain was rewritten"))
    return ArchiveCheck(runs_dir=runs_dir, entries=entries, notebooks=len(found), head=head,
                        findings=tuple(findings))


def _chain_findings(entry: dict[str, Any], where: str, expected_seq: int, expected_prev: str,
                    previous_line: int) -> list[Finding]:
    found = []
    if entry["seq"] != expected_seq:
        found.append(Finding("chain", where, f"seq {entry['seq']} where {expected_seq} was "
                             "expected: entries were removed, added or reordered before it"))
    if entry["prev"] != expected_prev:
        before = f"line {previous_line}" if previous_line else "the start of the chain"
        found.append(Finding("chain", where, f"prev {entry['prev'][:12]} does not match the "
                             f"hash of {before} ({expected_prev[:12]}): an entry before it "
                             "was removed, added, reordered or rewritten"))
    if entry_hash(entry) != entry["hash"]:
        found.append(Finding("chain", where, "hash does not match the entry's content: the "
                             "line was edited after it was written"))
    return found


def _mac_findings(entry: dict[str, Any], where: str, secret: str | None) -> list[Finding]:
    if secret is None:
        return []
    mac = entry.get("mac")
    if not isinstance(mac, str):
        return [Finding("unkeyed", where, f"no mac, but {KEY_ENV} is set: the entry was not "
                        "written with the key (added or rewritten by someone without it)")]
    if not hmac.compare_digest(mac, keyed(entry["hash"], key=secret) or ""):
        return [Finding("unkeyed", where, f"mac does not match the hash under {KEY_ENV}: "
                        "rewritten by someone without the key (or the key is wrong)")]
    return []


def _file_findings(runs_dir: Path, entry: dict[str, Any], where: str,
                   indexed: dict[str, int]) -> list[Finding]:
    name = entry["path"]
    if name in indexed:
        return [Finding("duplicate", where, f"{name} is already indexed at seq "
                        f"{indexed[name]}")]
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return [Finding("unreadable", where, f"path {name!r} points outside the archive")]
    path = runs_dir / relative
    linked = [part for part in (path, *path.parents) if part != runs_dir and
              part.is_relative_to(runs_dir) and part.is_symlink()]
    if linked:
        return [Finding("link", name, f"{linked[-1].relative_to(runs_dir)} is a symbolic "
                        "link: the archive holds files, never links to files kept elsewhere")]
    if not path.is_file():
        return [Finding("deleted", name, f"indexed at seq {entry['seq']} ({where}) but the "
                        "file is missing")]
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        return [Finding("modified", name, f"sha256 is {digest[:12]}, the index recorded "
                        f"{entry['sha256'][:12]} at seq {entry['seq']}: the notebook was "
                        "changed after it was archived")]
    return []


def _inserted_reason(path: Path) -> str:
    reason = "a run notebook that is not in the index"
    try:
        meta = json.loads(path.read_bytes()).get("metadata", {}).get("bgkit", {})
    except (OSError, ValueError, AttributeError):
        return reason
    if isinstance(meta, dict) and meta.get("outcome") == "running":
        reason += " (its outcome says 'running': a run in progress or whose runner was killed)"
    return reason


def _unreadable_reason(raw: bytes) -> str:
    if not raw.strip():
        return "blank line (the index never writes one)"
    try:
        value = json.loads(raw)
    except ValueError:
        return "not JSON (a cut-short or hand-edited line)"
    if not isinstance(value, dict):
        return "not a JSON object"
    wrong = [key for key, kind in _FIELDS.items() if not _is(value.get(key), kind)]
    return f"missing or mistyped field(s): {', '.join(wrong)}"


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The line's fields when it is a well-formed entry, else None."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    if not all(_is(value.get(key), kind) for key, kind in _FIELDS.items()):
        return None
    if any(key in value and not isinstance(value[key], str) for key in _OPTIONAL):
        return None
    return value


def _is(value: object, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def _advance(raw: bytes, entry: dict[str, Any] | None, seq: int,
             prev: str) -> tuple[int, str]:
    """The (seq, prev) the line after ``raw`` must carry. A well-formed line links by its
    ``hash`` and seq; anything else by the digest of its bytes, so one bad line is
    reported once and the chain after it still checks. Blank lines do not link."""
    if not raw.strip():
        return seq, prev
    if entry is None:
        return seq + 1, hashlib.sha256(raw).hexdigest()
    return int(entry["seq"]) + 1, str(entry["hash"])


def _tail(lines: list[bytes]) -> tuple[int, str]:
    """The (seq, prev) of the next entry after ``lines``, by the same rules as verify."""
    seq, prev = 1, GENESIS
    for raw in lines:
        seq, prev = _advance(raw, _parse(raw), seq, prev)
    return seq, prev


def _read_lines(runs_dir: Path) -> list[bytes]:
    index = runs_dir / INDEX_NAME
    if not index.exists():
        return []
    with _locked(index, "rb", fcntl.LOCK_SH) as handle:
        return handle.read().splitlines()


@contextmanager
def _locked(path: Path, mode: str, operation: int) -> Iterator[IO[bytes]]:
    try:
        handle: IO[bytes] = path.open(mode)
    except OSError as error:
        raise BgkitError(f"cannot open the archive index {path}: {error.strerror}") from error
    with handle:
        fcntl.flock(handle.fileno(), operation)
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _relative(runs_dir: Path, path: Path) -> str:
    try:
        relative = path.resolve().relative_to(runs_dir.resolve())
    except ValueError:
        raise UsageError(f"{path} is not inside the run archive {runs_dir}") from None
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    return relative.as_posix()


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
