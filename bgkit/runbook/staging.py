"""Runs in progress: private files outside the archive, until they are scrubbed and published.

A run executes into ``<staging>/<run file name>`` (mode 0600, in a 0700 folder) beside a
small JSON state file naming its runner (pid and process start time, so a reused pid is
not mistaken for it). Only when the run ends is its notebook scrubbed of secrets and
published, write-once, into the archive. The staging folder sits beside the archive,
never inside it, so nothing that copies the archive (a CI artifact upload, a sync) ever
copies an unscrubbed record::

    runs/                    the archive (published, scrubbed, indexed runs)
    .runs-staging/           runs in progress; private to the user running bgkit

papermill saves the notebook after every cell; it does so through
:class:`PrivateOutput`, which scrubs every secret from each save before it reaches the disk,
so not even the private file ever holds one.

A run whose runner is gone (killed with SIGKILL, a crashed machine) stays here until the
next ``bgkit run``, ``bgkit release`` or ``bgkit runs list`` finalises it as
``interrupted``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["PRIVATE_SCHEME", "PrivateOutput", "StagedRun", "pending", "runner_alive", "stage",
           "staging_dir"]

_STATE_SUFFIX = ".state.json"
PRIVATE_SCHEME = "bgkit-private://"


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
        from bgkit.runbook.scrub import scrub_text

        text, count = scrub_text(buf, set(self.secrets))
        type(self).scrubbed = count
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
    notebook: str  # the private notebook file
    source: str  # the step notebook it executes
    config: str  # the bgkit.toml it runs with
    started_at: str
    runner_pid: int
    runner_started: int  # the runner's start time in clock ticks since boot (/proc)
    host: str

    @property
    def notebook_path(self) -> Path:
        return Path(self.notebook)

    @property
    def state_path(self) -> Path:
        return Path(self.notebook + _STATE_SUFFIX)

    def discard(self) -> None:
        """Remove the private files (after the run was published)."""
        self.notebook_path.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)


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
    notebook = folder / Path(archive_name).name
    descriptor = os.open(notebook, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)
    staged = StagedRun(run_id=run_id, step=step, archive_name=archive_name,
                       notebook=str(notebook), source=str(source), config=str(config),
                       started_at=started_at, runner_pid=os.getpid(),
                       runner_started=_start_ticks(os.getpid()) or 0,
                       host=socket.gethostname())
    descriptor = os.open(staged.state_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(asdict(staged), handle, indent=1)
    return staged


def pending(runs_dir: Path) -> list[StagedRun]:
    """Every staged run of this archive, oldest first (unreadable state files skipped)."""
    folder = staging_dir(runs_dir)
    found = []
    for state in sorted(folder.glob(f"*{_STATE_SUFFIX}")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, TypeError):
            found.append(StagedRun(**json.loads(state.read_text())))
    return sorted(found, key=lambda run: run.started_at)


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
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    if not fields or fields[0] == "Z":
        return None
    return int(fields[19])
