"""The sample frame as integer codes, and the helpers every part of the analysis shares.

The numbers are computed once over integer codes with numpy, so a million samples take
well under a second; latency percentiles use linear interpolation, exactly as pandas does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from bgkit.samples import ERROR_KINDS, raise_value_problems, validate_samples

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Arrays:
    """The sample frame as integer codes, computed once per call."""

    frame: pd.DataFrame
    is_host: Bools
    pool: Ints
    pools: list[str]
    host: Ints
    hosts: list[str]
    error: Ints  # index into ERROR_KINDS, -1 when ok
    version: Ints  # -1 when no header
    versions: list[str]
    answered: Bools
    ok: Bools
    latency: Floats


def _codes(values: npt.NDArray[np.object_]) -> tuple[Ints, list[str]]:
    """Integer codes (-1 for missing) and the names, in natural order (.2 before .10)."""
    codes, uniques = pd.factorize(values)
    names = [str(value) for value in uniques]
    order = sorted(range(len(names)), key=lambda i: natural_key(names[i]))
    rank = np.empty(len(names) + 1, dtype=np.intp)
    rank[order] = np.arange(len(names))
    rank[-1] = -1  # code -1 (missing) reads the last slot
    return rank[codes], [names[i] for i in order]


def natural_key(text: str) -> list[str | int]:
    """Sort key that orders digit runs by value: 127.0.1.2 before 127.0.1.10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _text(frame: pd.DataFrame, name: str) -> npt.NDArray[np.object_]:
    return np.asarray(frame[name], dtype=object)


def _arrays(df: pd.DataFrame) -> _Arrays:
    """Encode the samples; raise UsageError on a contract breach (one scan per column)."""
    frame = validate_samples(df, check_values=False)
    pool, pools = _codes(_text(frame, "pool"))
    host, hosts = _codes(_text(frame, "host"))
    target = _text(frame, "target")
    is_host = target == "host"
    ok = frame["ok"].to_numpy(dtype=bool)
    error = np.full(len(frame), -1, dtype=np.intp)
    failed_codes, failed_kinds = _codes(_text(frame, "error")[~ok])
    raise_value_problems(
        missing=[name for name, codes in (("pool", pool), ("host", host), ("error",
                 failed_codes)) if (codes < 0).any()],
        targets=target[~is_host & (target != "lb")].tolist(),
        failed_errors=failed_kinds,
    )
    kind_index = np.array([ERROR_KINDS.index(kind) for kind in failed_kinds], dtype=np.intp)
    error[~ok] = kind_index[failed_codes] if len(failed_kinds) else -1
    version, versions = _codes(_text(frame, "version"))
    return _Arrays(
        frame=frame, is_host=is_host,
        pool=pool, pools=pools, host=host, hosts=hosts, error=error,
        version=version, versions=versions,
        answered=frame["status"].notna().to_numpy(dtype=bool), ok=ok,
        latency=frame["latency_ms"].to_numpy(dtype=np.float64),
    )


def _quantile(ordered: Floats, starts: Ints, counts: Ints, q: float) -> Floats:
    """Linear-interpolated quantile per group (pandas' rule); NaN for empty groups."""
    if len(ordered) == 0:
        return np.full(len(counts), np.nan)
    position = (counts - 1) * q
    below = np.floor(position).astype(np.intp)
    frac = position - below
    last = np.maximum(starts + counts - 1, 0)
    lo = np.minimum(starts + np.maximum(below, 0), last)
    hi = np.minimum(lo + 1, last)
    result = ordered[lo] + (ordered[hi] - ordered[lo]) * frac
    return np.where(counts > 0, result, np.nan)


def _present(codes: Ints, size: int) -> Ints:
    """The distinct non-negative codes, sorted (a counting pass, not a hash)."""
    return np.flatnonzero(np.bincount(codes, minlength=size)).astype(np.intp)


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value if isinstance(value, str | int | float | bool) else str(value)
