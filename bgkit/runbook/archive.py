"""Reading the run archive: a table of runs, and one run in detail."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from bgkit.errors import UsageError
from bgkit.runbook import notebooks
from bgkit.words import parse_run_name

__all__ = ["RUN_COLUMNS", "RunDetails", "find_run", "list_runs", "publish", "show_run"]

RUN_COLUMNS = ["time", "step", "run_id", "outcome", "duration_s", "operator", "release", "path"]


@dataclass(frozen=True, slots=True)
class RunDetails:
    """Everything a reviewer reads about one run."""

    path: Path
    metadata: dict[str, Any]
    parameters: dict[str, Any]
    records: dict[str, dict[str, Any]]

    @property
    def outcome(self) -> str:
        return _outcome(self.metadata)


def publish(runs_dir: Path, name: str, text: str) -> Path:
    """Write the final notebook ``text`` (its JSON, as :func:`nbformat.writes` gives it)
    into the archive at ``name`` (relative, POSIX), once.

    The file appears whole or not at all (written aside, then hard-linked into place) and
    is read-only, with the read bits the umask allows (no forced world-read).

    Raises:
        UsageError: ``name`` leaves the archive.
        FileExistsError: a run is archived under that name already (never overwritten).
    """
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or len(relative.parts) != 3:
        raise UsageError(f"{name!r} is not a run file name inside the archive")
    target = runs_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    draft = target.with_name(f".{target.name}.{os.getpid()}.partial")
    umask = os.umask(0)
    os.umask(umask)
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        draft.chmod(0o444 & ~umask)
        os.link(draft, target)
    finally:
        draft.unlink(missing_ok=True)
    return target


def list_runs(runs_dir: Path) -> pd.DataFrame:
    """One row per archived run, oldest first, with the columns in ``RUN_COLUMNS``."""
    rows = [_row(path) for path in sorted(runs_dir.glob("*/*/*.ipynb"))]
    table = pd.DataFrame([row for row in rows if row is not None], columns=RUN_COLUMNS)
    return table.sort_values("time", kind="stable").reset_index(drop=True)


def find_run(runs_dir: Path, run_id: str) -> Path:
    """The archived notebook of ``run_id`` (a unique prefix is enough).

    Raises:
        UsageError: no run, or more than one, matches.
    """
    if not run_id or "/" in run_id:
        raise UsageError(f"{run_id!r} is not a run id (see `bgkit runs list`)")
    matches = sorted(p for p in runs_dir.glob("*/*/*.ipynb")
                     if parse_run_name(p.stem).run_id.startswith(run_id))
    if not matches:
        raise UsageError(f"no run {run_id!r} in {runs_dir} (see `bgkit runs list`)")
    if len(matches) > 1:
        names = ", ".join(p.stem for p in matches)
        raise UsageError(f"run id {run_id!r} is ambiguous: {names}")
    return matches[0]


def show_run(path: Path) -> RunDetails:
    nb = notebooks.read(path)
    metadata = dict(nb.metadata.get("bgkit", {}))
    parameters = dict(nb.metadata.get("papermill", {}).get("parameters", {}))
    return RunDetails(path=path, metadata=metadata, parameters=parameters,
                      records=notebooks.read_records(nb))


def _outcome(metadata: dict[str, Any]) -> str:
    outcome = str(metadata.get("outcome", "unknown"))
    # "running" in a closed record means the runner itself was killed mid-run.
    return "interrupted" if outcome == "running" else outcome


def _row(path: Path) -> dict[str, Any] | None:
    try:
        details = show_run(path)
    except Exception:  # an unreadable file is still listed, never hidden
        name = parse_run_name(path.stem)
        return {"time": None, "step": name.step, "run_id": name.run_id,
                "outcome": "unreadable", "duration_s": None, "operator": None,
                "release": None, "path": str(path)}
    meta = details.metadata
    if not meta:
        return None
    return {
        "time": pd.Timestamp(meta["started_at"]) if meta.get("started_at") else None,
        "step": meta.get("step"),
        "run_id": meta.get("run_id"),
        "outcome": details.outcome,
        "duration_s": meta.get("duration_s"),
        "operator": meta.get("operator"),
        "release": _release(details),
        "path": str(path),
    }


def _release(details: RunDetails) -> str | None:
    """The release id a run was about: ``metadata.bgkit.release`` (bgkit writes it), else
    for runs archived before it did, a release record or the artifact parameter's name."""
    recorded = details.metadata.get("release")
    if isinstance(recorded, str) and recorded:
        return recorded
    for item in details.records.values():
        found = item.get("value")
        if isinstance(found, dict) and isinstance(found.get("release"), str) and \
                found["release"]:
            return str(found["release"])
    for name in ("artifact", "release"):
        value = details.parameters.get(name)
        if isinstance(value, str) and value:
            return Path(value).name.removesuffix(".tar.gz")
    return None
