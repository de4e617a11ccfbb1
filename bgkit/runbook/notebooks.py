"""Reading and finishing notebook files: steps, records, completeness, the final record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from bgkit.errors import UsageError
from bgkit.runbook.record import RECORD_MIME

__all__ = [
    "FAILURE_TAG",
    "available",
    "cell_label",
    "default_dir",
    "finalise",
    "find",
    "incomplete_reason",
    "ran",
    "read",
    "read_records",
    "recorded_outcome",
    "without_papermill_markers",
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


def recorded_outcome(nb: Any) -> tuple[str, str | None] | None:
    """The step's own word on how it ended (``succeeded``, ``not approved``...) and why,
    if it recorded ``outcome`` (and ``outcome_reason``); None if it recorded none."""
    records = read_records(nb)
    value = records.get("outcome", {}).get("value")
    if not (isinstance(value, str) and value):
        return None
    reason = records.get("outcome_reason", {}).get("value")
    return value, reason if isinstance(reason, str) else None


def release_of(nb: Any) -> str | None:
    """The release id a run was about: its own ``release`` record, else the one a build,
    deploy, verify, preview or switch record names."""
    records = read_records(nb)
    candidates = [records.get("release", {}).get("value")]
    for name in ("switch", "preview", "verify", "deploy", "build"):
        value = records.get(name, {}).get("value")
        if isinstance(value, dict):
            candidates.append(value.get("release"))
    return next((str(found) for found in candidates if isinstance(found, str) and found), None)


def cell_label(nb: Any, index: int) -> str:
    """``cell 6 of 8``: a cell's position as a reader counts it (from 1)."""
    return f"cell {index + 1} of {len(nb.cells)}"


def incomplete_reason(nb: Any) -> str | None:
    """Why not every code cell of an executed notebook ran, or None when all did.

    A cell ran when papermill started it and it completed (papermill itself marks cells it
    never started "completed" when execution stops early without an error). A cell that
    raised ``SystemExit`` (``sys.exit()``, which papermill counts as success) and the
    first cell after it that never ran are named.
    """
    code = [(index, cell) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    missing = [index for index, cell in code if not ran(cell)]
    if not missing:
        return None
    ended = [index for index, cell in code if _status(cell) == "failed"]
    never = [index for index in missing if index not in ended]
    if not ended:
        return f"{cell_label(nb, never[0])} never ran"
    where = ended[-1]
    how = _error_name(nb.cells[where])
    if not never:
        return f"{cell_label(nb, where)} ended with {how}"
    return (f"{cell_label(nb, never[0])} never ran: the notebook stopped early in "
            f"{cell_label(nb, where)} ({how})")


def ran(cell: Any) -> bool:
    """True when papermill started the cell, the kernel executed it and it completed."""
    meta = cell.metadata.get("papermill", {})
    executed = cell.get("execution_count") is not None or not str(cell.source).strip()
    return bool(meta.get("start_time")) and meta.get("status") == "completed" and executed


PAPERMILL_MARKER = "papermill-error-cell-tag"


def without_papermill_markers(nb: Any) -> Any:
    """``nb`` without the cells papermill inserts around an error (bgkit's banner says it),
    so cell numbers are those of the cells that ran."""
    nb.cells = [cell for cell in nb.cells
                if PAPERMILL_MARKER not in cell.metadata.get("tags", [])]
    return nb


def mark_unstarted_pending(nb: Any) -> None:
    """Give cells that never started the status they have: pending (papermill marks them
    completed when execution stops early without an error)."""
    for cell in nb.cells:
        meta = cell.metadata.get("papermill")
        if cell.cell_type == "code" and meta and not meta.get("start_time"):
            meta["status"] = "pending"
        elif cell.cell_type == "code" and meta and not ran(cell) and \
                meta.get("status") == "completed":
            meta["status"] = "pending"  # started but never executed (a skipped cell)


def _status(cell: Any) -> str | None:
    status = cell.metadata.get("papermill", {}).get("status")
    return str(status) if status is not None else None


def _error_name(cell: Any) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = str(output.get("evalue", ""))
            return f"{output.get('ename')}: {value}" if value else str(output.get("ename"))
    return "an error"


def finalise(nb: Any, *, outcome: str, reason: str | None, duration_s: float | None,
             secrets: set[str] | None = None, already_scrubbed: int = 0) -> Any:
    """The final record of a run: ``nb`` with its outcome and reason in
    ``metadata.bgkit``, a banner on top when it did not succeed, and every secret in
    ``secrets`` scrubbed from all of it; ``secrets_scrubbed`` counts these and the
    ``already_scrubbed`` ones masked while it ran. ``nb`` itself is not changed."""
    from bgkit.runbook.scrub import notebook_scrub

    final = without_papermill_markers(nbformat.from_dict(nb))
    mark_unstarted_pending(final)
    meta = final.metadata.setdefault("bgkit", {})
    meta.update(outcome=outcome, reason=reason, finished_at=datetime.now(UTC).isoformat())
    release = release_of(final)
    if release:
        meta["release"] = release
    if duration_s is not None:
        meta["duration_s"] = round(duration_s, 3)
    if outcome != "succeeded":
        _add_banner(final, outcome, reason)
    cleaned, count = notebook_scrub(final, secrets or set())
    result = nbformat.from_dict(cleaned)
    result.metadata["bgkit"]["secrets_scrubbed"] = count + already_scrubbed
    return result


def _add_banner(nb: Any, outcome: str, reason: str | None) -> None:
    """Put the outcome on top of the first cell, a markdown cell in every run (the engine
    adds a title cell when a notebook starts with code), so cell numbers stay as run."""
    from bgkit.runbook.html import markdown_text

    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "markdown":
        first = nbformat.v4.new_markdown_cell("")
        nb.cells.insert(0, first)
    tags = first.metadata.setdefault("tags", [])
    if FAILURE_TAG in tags:
        return
    text = f"**This run {markdown_text(outcome)}.** {markdown_text(reason or '')}".strip()
    first.source = f"> {text}\n\n{first.source}".rstrip() + "\n"
    tags.append(FAILURE_TAG)
