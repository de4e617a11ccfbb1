"""Where the archive lives: a folder (the default) or S3-compatible object storage.

Either way bgkit *reads* a local folder (``folder``) with the same code (``list_runs``,
``find_run``, ``verify_archive``, the report notebook): for a folder archive that is the
archive itself; for ``[runs] url = "s3://bucket/prefix"`` it is a local copy that
``refresh`` brings up to date with the bucket (:mod:`bgkit.runbook.s3_archive`). Runs in
progress always execute into private files beside ``folder`` (see
:mod:`bgkit.runbook.staging`), and are published through :meth:`Archive.publish`:
write-once, then entered into the hash-chained index.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bgkit.runbook import index
from bgkit.runbook.index import Finding, IndexEntry
from bgkit.tarball import sha256_file

if TYPE_CHECKING:
    from bgkit.config import Config

__all__ = ["Archive", "LocalArchive", "open_archive"]


class Archive(Protocol):
    """A run archive bgkit publishes into and reads through a local folder."""

    location: str  # what users are shown: a folder, or s3://bucket/prefix
    folder: Path  # the local folder readers read

    def publish(self, name: str, text: str, *,
                release: str | None = None) -> tuple[Path, IndexEntry]:
        """Publish the final notebook ``text`` write-once at ``name`` (``YYYY/MM/x.ipynb``)
        and enter it into the index (naming ``release``, when given); its local path and
        index entry.

        Raises:
            FileExistsError: a run is archived under that name already.
        """
        ...

    def published_sha256(self, name: str) -> str | None:
        """The sha256 of the run archived at ``name``, or None when there is none."""
        ...

    def index_published(self, name: str) -> IndexEntry | None:
        """Enter the already published ``name`` into the index, unless it is there."""
        ...

    def refresh(self, *, fresh: bool = False) -> list[Finding]:
        """Bring ``folder`` up to date with the archive (``fresh``: read everything again,
        trusting no local copy); findings about what the folder cannot show."""
        ...

    def describe(self) -> str:
        """One line about where the archive is and how it is kept."""
        ...


class LocalArchive:
    """The archive as a folder: the folder is the archive."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def publish(self, name: str, text: str, *,
                release: str | None = None) -> tuple[Path, IndexEntry]:
        from bgkit.runbook.archive import publish

        path = publish(self.folder, name, text)
        return path, index.append(self.folder, path, release=release)

    def published_sha256(self, name: str) -> str | None:
        path = self.folder / name
        if not path.is_file():
            return None
        return sha256_file(path)

    def index_published(self, name: str) -> IndexEntry | None:
        if any(entry.path == name for entry in index.read_entries(self.folder)):
            return None
        return index.append(self.folder, self.folder / name)

    def refresh(self, *, fresh: bool = False) -> list[Finding]:
        return []

    def describe(self) -> str:
        return f"archive folder {self.folder}"


def open_archive(config: Config | None, *, runs_dir: Path | None = None) -> Archive:
    """The archive ``config`` names (``[runs] dir`` or ``url``); ``runs_dir`` (a folder
    given on the command line) wins."""
    if runs_dir is not None or config is None:
        return LocalArchive(runs_dir if runs_dir is not None else Path("runs"))
    url = config.runs_url
    if url is None:
        return LocalArchive(config.runs_dir)
    from bgkit.objectstore import Retention, StoreSettings, open_store
    from bgkit.runbook.s3_archive import S3Archive

    retention = Retention(mode=config.runs.retain_mode, days=config.runs.retain_days) \
        if config.runs.retain_days else None
    return S3Archive(url=url, store=open_store(url, StoreSettings.of(config.runs, config)),
                     folder=config.runs_dir, retention=retention)
