"""The sample DataFrame: the contract between ``bgkit.probe`` and ``bgkit.analysis``.

One row per HTTP sample; columns and dtypes are :data:`SAMPLE_COLUMNS`. ``error`` is
``""`` when the sample is ok, else one of :data:`ERROR_KINDS`. ``status`` is NA when no
HTTP answer came back; ``version`` is the ``X-App-Version`` header or None.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import pandas as pd
from pandas.api import types as ptypes

from bgkit.errors import UsageError

__all__ = [
    "ERROR_KINDS",
    "SAMPLE_COLUMNS",
    "TARGETS",
    "empty_samples",
    "raise_value_problems",
    "validate_samples",
]

SAMPLE_COLUMNS: Final[dict[str, str]] = {
    "timestamp": "datetime64[ns, UTC]",
    "pool": "str",
    "host": "str",
    "target": "str",
    "status": "Int64",
    "ok": "bool",
    "latency_ms": "float64",
    "version": "object",
    "error": "str",
}
ERROR_KINDS: Final = ("timeout", "refused", "reset", "bad_status", "wrong_version", "other")
TARGETS: Final = ("host", "lb")

_TEXT = ("pool", "host", "target", "error")


def empty_samples() -> pd.DataFrame:
    """A zero-row sample frame with the canonical dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in SAMPLE_COLUMNS.items()})


def validate_samples(df: pd.DataFrame, *, check_values: bool = True) -> pd.DataFrame:
    """``df`` with the canonical dtypes (extra columns are kept as they are).

    Raises UsageError naming every missing column, wrong dtype or bad value at once.
    Timestamps in any tz-aware unit become ns UTC; naive ones are refused.
    ``check_values=False`` skips the scans over text values, for callers that check
    them while encoding (``bgkit.analysis`` does, through :func:`value_problems`).
    """
    missing = [name for name in SAMPLE_COLUMNS if name not in df.columns]
    if missing:
        raise UsageError(f"sample frame is missing column(s): {', '.join(missing)}")
    problems = [f"{name}: {why}" for name in SAMPLE_COLUMNS if (why := _dtype_problem(df[name]))]
    if problems:
        raise UsageError("sample frame has wrong dtypes: " + "; ".join(problems))
    out = df.copy(deep=False)
    for name, dtype in SAMPLE_COLUMNS.items():
        if name != "version" and str(out[name].dtype) != dtype:
            out[name] = out[name].astype(dtype)  # type: ignore[call-overload]
    if out["version"].dtype != object:
        out["version"] = out["version"].astype(object).where(out["version"].notna(), None)
    if check_values:
        raise_value_problems(
            missing=[name for name in _TEXT if out[name].isna().any()],
            targets=out["target"].dropna().unique(),
            failed_errors=out["error"][~out["ok"]].dropna().unique(),
        )
    return out


def raise_value_problems(
    *, missing: Iterable[str], targets: Iterable[str], failed_errors: Iterable[str]
) -> None:
    """Raise UsageError if the text values break the contract (given distinct values)."""
    problems = [f"{name}: missing values" for name in missing]
    unknown = sorted({str(value) for value in targets} - set(TARGETS))
    if unknown:
        problems.append(f"target: unknown value(s) {unknown}, expected one of {list(TARGETS)}")
    unknown = sorted({str(value) for value in failed_errors} - set(ERROR_KINDS))
    if unknown:
        problems.append(f"error: failed samples with unknown kind(s) {unknown}, "
                        f"expected one of {list(ERROR_KINDS)}")
    if problems:
        raise UsageError("sample frame has bad values: " + "; ".join(problems))


def _dtype_problem(column: pd.Series) -> str:
    dtype = column.dtype
    name = column.name
    if name == "timestamp":
        tz_aware = isinstance(dtype, pd.DatetimeTZDtype)
        return "" if tz_aware else f"expected tz-aware datetime64 (UTC), got {dtype}"
    if name in (*_TEXT, "version"):
        ok = ptypes.is_string_dtype(dtype)
        return "" if ok else f"expected str, got {dtype}"
    if name == "status":
        ok = ptypes.is_integer_dtype(dtype) or (ptypes.is_float_dtype(dtype) and _integral(column))
        return "" if ok else f"expected Int64 (HTTP status or NA), got {dtype}"
    if name == "ok":
        ok = ptypes.is_bool_dtype(dtype) and not column.isna().any()
        return "" if ok else f"expected bool without NA, got {dtype}"
    return "" if ptypes.is_numeric_dtype(dtype) and not ptypes.is_bool_dtype(dtype) else (
        f"expected float64 milliseconds, got {dtype}"
    )


def _integral(column: pd.Series) -> bool:
    values = column.dropna()
    return bool((values == values.round()).all())
