"""The run archive in S3-compatible object storage (``[runs] url = "s3://bucket/prefix"``).

In the bucket, the same layout as a folder archive::

    <prefix>/2026/11/20261126T160128Z_04_switch_ab12cd34ef56.ipynb   write-once runs
    <prefix>/index.jsonl                                              the hash chain

- A run is published with ``If-None-Match: *``: never over another object. With
  ``[runs] retain_days`` on a bucket that has Object Lock, it (and every version of the
  index) is retained that long, in ``retain_mode``.
- The index is appended by compare-and-swap on its ETag: read it, add the entry after its
  last line, write it back with ``If-Match`` (``If-None-Match: *`` for the first one);
  when another machine appended first, read again and retry. Two machines archiving at
  once both land in one chain, in some order, neither lost.
- Readers read a local copy (``[runs] cache_dir``, default under ``~/.cache/bgkit``):
  :meth:`S3Archive.refresh` downloads what changed (by ETag, and any local file whose
  content no longer matches what was downloaded) and removes what the bucket no longer
  holds, so ``verify_archive`` on the copy sees an edited, deleted or inserted object as
  it would see a file. ``bgkit runs verify`` refreshes ``fresh``: every object again.
  Objects under the prefix outside that layout are reported as inserted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from bgkit.errors import StorageError, UsageError
from bgkit.objectstore import ObjectStore, Retention, split_url
from bgkit.runbook.index import (
    INDEX_NAME,
    RUN_GLOB,
    Finding,
    IndexEntry,
    appended,
    indexed_paths,
    next_entry,
)
from bgkit.tarball import sha256_file

__all__ = ["S3Archive"]

APPEND_ATTEMPTS = 200
_RUN_KEY = re.compile(r"\d{4}/\d{2}/[A-Za-z0-9][A-Za-z0-9_.+-]*\.ipynb")
_PROBE = ".bgkit-probe-"
NOTEBOOK_TYPE = "application/x-ipynb+json"


class S3Archive:
    """An archive in a bucket, read through the local copy ``folder``."""

    def __init__(self, *, url: str, store: ObjectStore, folder: Path,
                 retention: Retention | None = None) -> None:
        self.location = url
        self.store = store
        self.prefix = split_url(url)[1]
        self.folder = folder
        self.retention = retention
        self._object_lock: bool | None = None
        self._checked = False

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    # --- publishing --------------------------------------------------------------------

    def publish(self, name: str, text: str, *,
                release: str | None = None) -> tuple[Path, IndexEntry]:
        relative = PurePosixPath(name)
        if not _RUN_KEY.fullmatch(name) or relative.is_absolute():
            raise UsageError(f"{name!r} is not a run file name inside the archive")
        self._check()
        body = text.encode()
        etag = self.store.create(self.key(name), body, retention=self._retention(),
                                 content_type=NOTEBOOK_TYPE)
        if etag is None:
            raise FileExistsError(f"a run is archived at {self.store.url(self.key(name))} "
                                  "already (never overwritten)")
        entry = self._append(name, hashlib.sha256(body).hexdigest(), release=release)
        with self._cache_locked():
            manifest = self._manifest()
            path = self._cache_write(name, body, etag, manifest, read_only=True)
            self._save_manifest(manifest)
        return path, entry

    def published_sha256(self, name: str) -> str | None:
        found = self.store.get(self.key(name))
        return None if found is None else hashlib.sha256(found[0]).hexdigest()

    def index_published(self, name: str) -> IndexEntry | None:
        found = self.store.get(self.key(name))
        if found is None:
            raise UsageError(f"{self.store.url(self.key(name))} is not in the archive")
        current = self.store.get(self.key(INDEX_NAME))
        if current is not None and name in indexed_paths(current[0]):
            return None
        return self._append(name, hashlib.sha256(found[0]).hexdigest())

    def _append(self, name: str, digest: str, *, release: str | None = None) -> IndexEntry:
        """Append ``name``'s entry to the index object by compare-and-swap on its ETag."""
        key = self.key(INDEX_NAME)
        for attempt in range(APPEND_ATTEMPTS):
            current = self.store.get(key)
            raw, etag = current if current is not None else (b"", None)
            entry = next_entry(raw, name, digest, release=release,
                               index_name=self.store.url(key))
            body = appended(raw, entry)
            written = self.store.create(key, body, retention=self._retention()) \
                if etag is None else \
                self.store.replace(key, body, etag=etag, retention=self._retention())
            if written is not None:
                with self._cache_locked():
                    manifest = self._manifest()
                    self._cache_write(INDEX_NAME, body, written, manifest, read_only=False)
                    self._save_manifest(manifest)
                return entry
            time.sleep(random.uniform(0, min(0.02 * 2 ** min(attempt, 6), 1.0)))  # noqa: S311
        raise StorageError(f"could not append {name} to {self.store.url(key)} after "
                           f"{APPEND_ATTEMPTS} attempts (others kept appending first); the run "
                           "is published, and the next `bgkit run` or `bgkit runs list` on "
                           "this machine enters it into the index")

    def _retention(self) -> Retention | None:
        if self.retention is None:
            return None
        if self._object_lock is None:
            self._object_lock = self.store.object_lock()
        return self.retention if self._object_lock else None

    def _check(self) -> None:
        if not self._checked:
            try:
                self.store.check_conditional_writes(self.prefix)
            except StorageError as error:
                raise StorageError(f"refusing the archive {self.location}: {error}") from error
            self._checked = True

    # --- the local copy ----------------------------------------------------------------

    def refresh(self, *, fresh: bool = False) -> list[Finding]:
        wanted: dict[str, str] = {}
        foreign: list[str] = []
        start = len(self.prefix) + 1 if self.prefix else 0
        for key, etag in self.store.list(f"{self.prefix}/" if self.prefix else "").items():
            name = key[start:]
            if name == INDEX_NAME or _RUN_KEY.fullmatch(name):
                wanted[name] = etag
            elif not PurePosixPath(name).name.startswith(_PROBE):
                foreign.append(name)
        with self._cache_locked():
            manifest = self._manifest()
            for name, etag in wanted.items():
                if fresh or not self._cached(name, etag, manifest):
                    found = self.store.get(self.key(name))
                    if found is not None:
                        self._cache_write(name, found[0], found[1], manifest,
                                          read_only=name != INDEX_NAME)
            for name in self._local_names() - set(wanted):
                (self.folder / name).unlink(missing_ok=True)
                manifest.pop(name, None)
            for name in set(manifest) - set(wanted):
                manifest.pop(name, None)
            self._save_manifest(manifest)
        return [Finding("inserted", self.store.url(self.key(name)), "an object under the "
                        "archive's prefix that is not a run (YYYY/MM/<run>.ipynb) nor the "
                        "index") for name in sorted(foreign)]

    def describe(self) -> str:
        kept = "no retention configured"
        if self.retention is not None:
            kept = (f"new runs retained {self.retention.days} day(s) in "
                    f"{self.retention.mode} mode" if self._retention() else
                    "retain_days is set but the bucket has no Object Lock: runs are not "
                    "retained")
        return f"archive {self.location} (local copy {self.folder}; {kept})"

    def _cached(self, name: str, etag: str, manifest: dict[str, dict[str, str]]) -> bool:
        known = manifest.get(name)
        path = self.folder / name
        return bool(known and known.get("etag") == etag and path.is_file()
                    and sha256_file(path) == known.get("sha256"))

    def _local_names(self) -> set[str]:
        names = {path.relative_to(self.folder).as_posix() for path in self.folder.glob(RUN_GLOB)}
        return names | ({INDEX_NAME} if (self.folder / INDEX_NAME).exists() else set())

    def _cache_write(self, name: str, body: bytes, etag: str,
                     manifest: dict[str, dict[str, str]], *, read_only: bool) -> Path:
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        draft = target.with_name(f".{target.name}.{os.getpid()}.partial")
        draft.unlink(missing_ok=True)
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
        umask = os.umask(0)
        os.umask(umask)
        draft.chmod((0o444 if read_only else 0o644) & ~umask)
        draft.replace(target)
        manifest[name] = {"etag": etag, "sha256": _sha256(body)}
        return target

    def _manifest(self) -> dict[str, dict[str, str]]:
        try:
            data: Any = json.loads(self._manifest_path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict)} \
            if isinstance(data, dict) else {}

    def _save_manifest(self, manifest: dict[str, dict[str, str]]) -> None:
        draft = self._manifest_path.with_name(f".manifest.{os.getpid()}.partial")
        draft.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        draft.replace(self._manifest_path)

    @property
    def _manifest_path(self) -> Path:
        return self.folder.parent / "manifest.json"

    @contextlib.contextmanager
    def _cache_locked(self) -> Iterator[None]:
        """One writer of the local copy at a time (runs on this machine share it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.folder.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
