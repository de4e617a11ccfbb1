"""Reading and finishing notebook files: steps, parameters, records, final metadata."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from bgkit.errors import UsageError
from bgkit.runbook.record import RECORD_MIME

__all__ = [
    "available",
    "default_dir",
    "ensure_written",
    "finalise",
    "find",
    "parameter_names",
    "read",
    "read_records",
    "recorded_outcome",
]

FAILURE_TAG = "bgkit-failure"


def default_dir() -> Path:
    """./notebooks when it exists, else the runbooks shipped beside the bgkit package."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "notebooks"


def available(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.ipynb"))


def find(step: str, folder: Path | None = None) -> Path:
    """The notebook for ``step``: ``01_build`` or just ``build``.

    Raises:
        UsageError: no such step; the message lists the steps there are.
    """
    base = folder or default_dir()
    steps = available(base)
    for stem in steps:
        if step in (stem, stem.split("_", 1)[-1]) and not step.startswith(("/", ".")):
            return base / f"{stem}.ipynb"
    listing = ", ".join(steps) or "none"
    raise UsageError(f"no step named {step!r} in {base} (steps: {listing})")


def parameter_names(path: Path) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import papermill

    return list(papermill.inspect_notebook(str(path)))


def read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def read_records(nb: Any) -> dict[str, dict[str, Any]]:
    """Every ``record()`` in ``nb``, by name (a later record of a name wins)."""
    found: dict[str, dict[str, Any]] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(RECORD_MIME)
            if isinstance(payload, dict) and "name" in payload:
                found[payload["name"]] = {key: payload[key] for key in
                                          ("kind", "value", "columns") if key in payload}
    return found


def recorded_outcome(path: Path) -> tuple[str, str | None] | None:
    """A step's own verdict on itself (e.g. "not approved") and why, if it recorded
    ``outcome`` (and ``outcome_reason``)."""
    records = read_records(read(path))
    value = records.get("outcome", {}).get("value")
    if not (isinstance(value, str) and value):
        return None
    reason = records.get("outcome_reason", {}).get("value")
    return value, reason if isinstance(reason, str) else None


def ensure_written(path: Path, source: Path, metadata: dict[str, Any]) -> None:
    """Make sure ``path`` holds a notebook, even if execution never began."""
    if path.exists() and path.stat().st_size > 0:
        return
    nb = read(source)
    nb.metadata["bgkit"] = metadata
    nbformat.write(nb, path)


def finalise(path: Path, *, outcome: str, reason: str | None, duration_s: float,
             secrets: set[str] | None = None) -> None:
    """Write the run's outcome into the archived notebook, scrub ``secrets`` from all of
    it, then make it read-only."""
    from bgkit.runbook.scrub import scrub

    nb = read(path)
    meta = nb.metadata.setdefault("bgkit", {})
    meta.update(outcome=outcome, reason=reason, duration_s=round(duration_s, 3),
                finished_at=datetime.now(UTC).isoformat())
    if outcome != "succeeded":
        _add_banner(nb, outcome, reason)
    cleaned, count = scrub(dict(nb), secrets or set())
    nb = nbformat.from_dict(cleaned)
    nb.metadata["bgkit"]["secrets_scrubbed"] = count
    partial = path.with_name(f".{path.name}.partial")
    nbformat.write(nb, partial)
    partial.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    partial.replace(path)


def _add_banner(nb: Any, outcome: str, reason: str | None) -> None:
    if any(FAILURE_TAG in cell.metadata.get("tags", []) for cell in nb.cells):
        return
    text = f"**This run {outcome}.** {reason or ''}".strip()
    banner = nbformat.v4.new_markdown_cell(
        f'<span style="color:red;font-family:Helvetica">{text}</span>')
    banner.metadata["tags"] = [FAILURE_TAG]
    nb.cells.insert(0, banner)
