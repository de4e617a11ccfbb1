"""Filters over the run table of :func:`bgkit.runbook.archive.list_runs`.

Every filter is a pure function of the table (plus ``now`` for relative times), so
``bgkit runs list`` and the review notebook select runs the same way. The only I/O here
is :func:`with_pipeline`, which reads ``metadata.bgkit.pipeline_id`` from each notebook.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from bgkit.errors import UsageError

__all__ = ["PIPELINE_COLUMN", "SINCE_FORMS", "has_pipelines", "parse_since", "select_runs",
           "with_pipeline"]

PIPELINE_COLUMN = "pipeline"
_RELATIVE = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_FORMS = ("an ISO date or time (2026-11-26, 2026-11-26T14:00, 2026-11-26T14:00+01:00; "
               "UTC unless an offset is given) or an age such as 30m, 12h, 7d or 2w")


def parse_since(text: str, *, now: datetime | None = None) -> pd.Timestamp:
    """The UTC instant ``text`` names: an ISO date/time, or an age before ``now``.

    Raises:
        UsageError: ``text`` is neither; the message lists the accepted forms.
    """
    cleaned = text.strip().lower()
    relative = _RELATIVE.fullmatch(cleaned)
    if relative:
        amount, unit = int(relative[1]), _UNITS[relative[2]]
        return pd.Timestamp((now or datetime.now(UTC)) - timedelta(**{unit: amount}))
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: expected {SINCE_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return pd.Timestamp(moment).tz_convert("UTC")


def select_runs(runs: pd.DataFrame, *, step: str | None = None, outcome: str | None = None,
                release: str | None = None, since: pd.Timestamp | None = None,
                pipeline: str | None = None) -> pd.DataFrame:
    """The rows of ``runs`` that pass every given filter (``None`` means no filter).

    ``step`` matches the end of the step name (``switch`` matches ``04_switch``);
    ``outcome`` and ``pipeline`` match exactly; ``release`` matches a release name or a
    prefix ending at a ``-`` (``hello-1.2.0`` matches ``hello-1.2.0-3f2a1bc``, not
    ``hello-1.2.01-…``); ``since`` keeps runs started at or after that instant.
    """
    keep = pd.Series(True, index=runs.index)
    if step:
        keep &= _text(runs, "step").str.endswith(step)
    if outcome:
        keep &= _text(runs, "outcome") == outcome
    if release:
        names = _text(runs, "release")
        keep &= (names == release) | names.str.startswith(f"{release}-")
    if since is not None:
        started = pd.to_datetime(runs["time"], utc=True)
        keep &= (started >= since).fillna(False).astype(bool)
    if pipeline:
        keep &= _text(runs, PIPELINE_COLUMN) == pipeline
    return runs[keep]


def with_pipeline(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a ``pipeline`` column: each notebook's ``metadata.bgkit.pipeline_id``
    (None when it has none). A table that already has the column is returned as it is."""
    if PIPELINE_COLUMN in runs.columns:
        return runs
    table = runs.copy()
    table[PIPELINE_COLUMN] = pd.Series([_pipeline_id(Path(str(p))) for p in runs["path"]],
                                       index=runs.index, dtype=object)
    return table


def has_pipelines(runs: pd.DataFrame) -> bool:
    """True when any run carries a pipeline id."""
    return PIPELINE_COLUMN in runs.columns and bool(runs[PIPELINE_COLUMN].notna().any())


def _pipeline_id(path: Path) -> str | None:
    try:
        meta = json.loads(path.read_bytes()).get("metadata", {}).get("bgkit", {})
    except (OSError, ValueError, AttributeError):
        return None
    value = meta.get("pipeline_id") if isinstance(meta, dict) else None
    return str(value) if value not in (None, "") else None


def _text(runs: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as strings, missing values as "" so that no filter matches them."""
    if column not in runs.columns:
        return pd.Series("", index=runs.index, dtype=object)
    return runs[column].map(lambda value: "" if value is None or pd.isna(value) else str(value))
