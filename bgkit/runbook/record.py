"""``record(name, value)``: keep a named result inside the executed notebook.

The value is stored as a display output with its own MIME type, so it travels with
the archived notebook and ``bgkit runs show`` can read it back without executing
anything. DataFrames are stored as a list of row records.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from bgkit.errors import RecordError

__all__ = ["RECORD_MIME", "record", "record_outcome", "to_jsonable"]

RECORD_MIME = "application/vnd.bgkit.record+json"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")


def record(name: str, value: object, *, show: bool = True) -> Any:
    """Store ``value`` under ``name`` in the running notebook; return the stored JSON.

    Accepts JSON values, DataFrames and Series, dataclasses and pydantic models.
    Outside a notebook kernel nothing is stored and the JSON is only returned.

    Raises:
        RecordError: the name is not an identifier-like word, or the value cannot be
            stored as JSON (the message says which part).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RecordError(f"record name {name!r}: expected letters, digits, '_', '.' or '-', "
                          "starting with a letter or '_'")
    kind, payload = to_jsonable(value, where=name)
    stored: dict[str, Any] = {"name": name, "kind": kind, "value": payload}
    if kind == "table":
        # Notebook JSON is written with sorted keys: keep the column order separately.
        stored["columns"] = _columns(value)
    bundle = {RECORD_MIME: stored, "text/plain": f"recorded {name!r} ({kind})" if show else ""}
    _display(bundle)
    return payload


def record_outcome(outcome: str, reason: str | None = None) -> None:
    """Record how the step ended: ``succeeded``, or the word for why not (``failed``,
    ``not approved``...), with the reason. Every step notebook records one; a run that
    recorded none is archived as failed."""
    record("outcome", outcome)
    if reason is not None:
        record("outcome_reason", reason)


def to_jsonable(value: object, *, where: str = "value") -> tuple[str, Any]:
    """(kind, JSON value) for anything ``record`` accepts; kind is 'table' or 'value'."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        frame = value.reset_index() if _has_named_index(value) else value
        rows = json.loads(frame.to_json(orient="records", date_format="iso"))
        return "table", rows
    if isinstance(value, pd.Series):
        return "value", json.loads(value.to_json(date_format="iso"))
    if hasattr(value, "model_dump") and callable(value.model_dump):
        value = value.model_dump(mode="json")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    _check(value, where)
    return "value", json.loads(json.dumps(value))


def _columns(frame: Any) -> list[str]:
    shown = frame.reset_index() if _has_named_index(frame) else frame
    return [str(column) for column in shown.columns]


def _has_named_index(frame: Any) -> bool:
    return any(name is not None for name in frame.index.names)


def _check(value: object, where: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"{where}: {value} cannot be stored (JSON has no NaN or infinity)")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError(f"{where}: key {key!r} must be a string")
            _check(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]")
        return
    raise RecordError(f"{where}: a {type(value).__name__} cannot be recorded; expected JSON "
                      "values, a DataFrame, a dataclass or a pydantic model")


def _display(bundle: dict[str, Any]) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - ipykernel depends on IPython
        return
    if get_ipython() is None:
        return
    display(bundle, raw=True)
