"""Runs in progress: private files outside the archive, until they are scrubbed and published.

A run executes into ``<staging>/<run file name>`` (mode 0600, in a 0700 folder) beside a
small JSON state file naming its runner (pid and process start time, so a reused pid is
not mistaken for it). Only when the run ends is its notebook scrubbed of secrets and
published, write-once, into the archive. The staging folder sits beside the archive,
never inside it, so nothing that copies the archive (a CI artifact upload, a sync) ever
copies an unscrubbed record::

    runs/                    the archive (published, scrubbed, indexed runs)
    .runs-staging/           runs in progress; private to the user running bgkit

papermill saves the notebook after every cell, and bgkit every 2 s while a cell prints;
each save goes through :class:`PrivateOutput`, which scrubs every secret from it before
it reaches the disk, so not even the private file holds one.

A run whose runner is gone (killed with SIGKILL, a crashed machine) stays here until the
next ``bgkit run``, ``bgkit release`` or ``bgkit runs list`` finalises it as
``interrupted``. State files are trusted only so far: the paths they name are derived from
where they lie (never taken from their content), and with ``BGKIT_ARCHIVE_KEY`` set each
carries an HMAC without which it is ignored, so nobody without the key can have a run of
theirs indexed (and keyed) by the next command.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import socket
from dataclasses import asdict, dataclass, replace
from pathlib import Path

__all__ = ["PRIVATE_SCHEME", "PrivateOutput", "StagedRun", "ignored", "kernel_folder_prefix",
           "pending", "runner_alive", "stage", "staging_dir"]

_STATE_SUFFIX = ".state.json"
PRIVATE_SCHEME = "bgkit-private://"
_ARCHIVE_NAME = re.compile(r"\d{4}/\d{2}/\d{8}T\d{6}Z_[A-Za-z0-9_.-]+_[0-9a-f]{12}\.ipynb")


class PrivateOutput:
    """papermill I/O handler for ``bgkit-private://<path>``: each save of the running
    notebook is scrubbed of ``secrets`` and written into the existing 0600 file."""

    secrets: frozenset[str] = frozenset()
    scrubbed = 0  # secrets masked in the latest save (each save is of the whole notebook)

    @classmethod
    def register(cls, secrets: set[str]) -> None:
        """Use this handler, with these secrets, for ``bgkit-private://`` paths."""
        from papermill.iorw import papermill_io

        cls.secrets = frozenset(secrets)
        cls.scrubbed = 0
        if not any(scheme == PRIVATE_SCHEME for scheme, _ in papermill_io._handlers):
            papermill_io.register(PRIVATE_SCHEME, cls())

    def write(self, buf: str, path: str) -> None:
        from bgkit.runbook.scrub import notebook_scrub

        cleaned, count = notebook_scrub(json.loads(buf), set(self.secrets))
        type(self).scrubbed = count
        text = json.dumps(cleaned, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        target = _local(path)
        descriptor = os.open(target, os.O_WRONLY | os.O_TRUNC)  # exists, mode 0600
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)

    def read(self, path: str) -> str:
        return _local(path).read_text(encoding="utf-8")

    def listdir(self, path: str) -> list[str]:
        return [str(p) for p in _local(path).iterdir()]

    def pretty_path(self, path: str) -> str:
        return str(_local(path))


def _local(path: str) -> Path:
    return Path(path.removeprefix(PRIVATE_SCHEME))


@dataclass(frozen=True, slots=True)
class StagedRun:
    """One run in progress (or abandoned) and who runs it."""

    run_id: str
    step: str
    archive_name: str  # where it will be published, relative to the archive (POSIX)
    source: str  # the step notebook it executes
    config: str  # the bgkit.toml it runs with
    started_at: str
    runner_pid: int
    runner_started: int  # the runner's start time in clock ticks since boot (/proc)
    host: str
    folder: str  # the staging folder it lies in (derived, never read from the file)
    published_sha256: str = ""  # the final file's digest, once known (before publishing)

    @property
    def notebook_path(self) -> Path:
        return Path(self.folder) / Path(self.archive_name).name

    @property
    def state_path(self) -> Path:
        return Path(str(self.notebook_path) + _STATE_SUFFIX)

    def discard(self) -> None:
        """Remove the private files (after the run was published)."""
        self.notebook_path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)

    def with_digest(self, digest: str) -> StagedRun:
        """Record the digest of the file about to be published (so that a later command
        indexes that file, and no other, if this one dies in between)."""
        updated = replace(self, published_sha256=digest)
        _write_state(updated, exclusive=False)
        return updated


def kernel_folder_prefix(run_id: str) -> str:
    """The name prefix of a run's private kernel folder in the temp folder (IPC sockets and
    the connection file; kept short, as socket paths must stay under 108 bytes)."""
    return f"bgkit-k-{run_id}-"


def staging_dir(runs_dir: Path) -> Path:
    """``.<archive name>-staging`` beside the archive folder."""
    folder = runs_dir.resolve()
    return folder.parent / f".{folder.name}-staging"


def stage(runs_dir: Path, *, archive_name: str, run_id: str, step: str, source: Path,
          config: Path, started_at: str) -> StagedRun:
    """Reserve the private notebook file of a new run and record who runs it.

    Raises:
        FileExistsError: a staged run of that name exists already.
    """
    folder = staging_dir(runs_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    staged = StagedRun(run_id=run_id, step=step, archive_name=archive_name,
                       source=str(source), config=str(config), started_at=started_at,
                       runner_pid=os.getpid(), runner_started=_start_ticks(os.getpid()) or 0,
                       host=socket.gethostname(), folder=str(folder))
    descriptor = os.open(staged.notebook_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)
    _write_state(staged, exclusive=True)
    return staged


def _write_state(staged: StagedRun, *, exclusive: bool) -> None:
    fields = _fields(staged)
    mac = _mac(fields)
    if mac:
        fields["mac"] = mac
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(staged.state_path, flags, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(fields, handle, indent=1, sort_keys=True)


def _fields(staged: StagedRun) -> dict[str, object]:
    fields = asdict(staged)
    del fields["folder"]
    return fields


def _mac(fields: dict[str, object]) -> str | None:
    from bgkit.runbook.index import keyed

    body = json.dumps({k: v for k, v in fields.items() if k != "mac"}, sort_keys=True)
    return keyed(hashlib.sha256(body.encode()).hexdigest())


def pending(runs_dir: Path) -> list[StagedRun]:
    """Every trustworthy staged run of this archive, oldest first (see :func:`ignored`)."""
    found = [run for run, problem in _read_all(runs_dir) if run is not None and not problem]
    return sorted(found, key=lambda run: run.started_at)


def ignored(runs_dir: Path) -> list[tuple[Path, str]]:
    """State files in the staging folder that are not acted on, and why."""
    return [(path, problem) for path, (run, problem) in zip(
        _state_files(runs_dir), _read_all(runs_dir), strict=True) if problem]


def _state_files(runs_dir: Path) -> list[Path]:
    folder = staging_dir(runs_dir)
    return sorted(folder.glob(f"*{_STATE_SUFFIX}")) if folder.is_dir() else []


def _read_all(runs_dir: Path) -> list[tuple[StagedRun | None, str]]:
    return [_read(path) for path in _state_files(runs_dir)]


def _read(path: Path) -> tuple[StagedRun | None, str]:
    try:
        fields = json.loads(path.read_text())
        fields.pop("notebook", None)
        mac = fields.pop("mac", None)
        run = StagedRun(**fields, folder=str(path.parent))
    except (OSError, ValueError, TypeError) as error:
        return None, f"unreadable state file ({error})"
    if not _ARCHIVE_NAME.fullmatch(run.archive_name) or \
            run.notebook_path.name + _STATE_SUFFIX != path.name:
        return None, f"names {run.archive_name!r}, which is not this file's run"
    expected = _mac(_fields(run))
    if expected is not None and not (isinstance(mac, str) and
                                     hmac.compare_digest(mac, expected)):
        return None, ("no valid mac under BGKIT_ARCHIVE_KEY: not written by a runner "
                      "holding the key")
    return run, ""


def runner_alive(run: StagedRun) -> bool:
    """True while the process that started ``run`` still runs (same pid, same start time).

    A run staged on another host (a shared folder) is assumed alive: a pid says nothing
    across machines.
    """
    if run.host != socket.gethostname():
        return True
    ticks = _start_ticks(run.runner_pid)
    return ticks is not None and ticks == run.runner_started


def _start_ticks(pid: int) -> int | None:
    """A live (non-zombie) process's start time in clock ticks since boot, else None."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        if fields and fields[0] != "Z":
            return int(fields[19])
    return None
