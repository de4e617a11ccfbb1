"""The summary table: one row per (pool, host), per pool and for the load balancer."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from bgkit.analysis._frame import Bools, Ints, _Arrays, _arrays, _present, _quantile
from bgkit.samples import ERROR_KINDS

__all__ = ["POOL_ROW", "SUMMARY_COLUMNS", "summarise"]

POOL_ROW: Final = "(pool)"
QUANTILES: Final = {"p50_ms": 0.50, "p90_ms": 0.90, "p95_ms": 0.95, "p99_ms": 0.99}
ERROR_COLUMNS: Final = tuple(f"err_{kind}" for kind in ERROR_KINDS)
SUMMARY_COLUMNS: Final = (
    "pool", "host", "target", "samples", "ok", "ok_ratio", *ERROR_COLUMNS,
    *QUANTILES, "max_ms", "mean_ms", "versions",
)


def _group_stats(arrays: _Arrays, groups: Ints, size: int, by_latency: Ints) -> dict[str, Any]:
    """Every summary column but the labels, over rows with ``groups >= 0``.

    ``by_latency`` indexes the answered rows in latency order; a stable sort by group
    (a radix sort on small integers) leaves each group's latencies in order.
    """
    chosen = groups >= 0
    group = groups[chosen]
    samples = np.bincount(group, minlength=size)
    out: dict[str, Any] = {"samples": samples}
    out["ok"] = np.bincount(group, weights=arrays.ok[chosen], minlength=size).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["ok_ratio"] = out["ok"] / samples
    kinds = len(ERROR_KINDS)
    failed = chosen & (arrays.error >= 0)
    cells = groups[failed] * kinds + arrays.error[failed]
    errors = np.bincount(cells, minlength=size * kinds).reshape(size, kinds)
    out.update({name: errors[:, i] for i, name in enumerate(ERROR_COLUMNS)})
    timed_groups = groups[by_latency]
    timed = by_latency[timed_groups >= 0]
    timed_groups = timed_groups[timed_groups >= 0]
    narrow = timed_groups.astype(np.int16 if size < 2**15 else np.intp)
    ordered = arrays.latency[timed[np.argsort(narrow, kind="stable")]]
    counts = np.bincount(timed_groups, minlength=size).astype(np.intp)
    starts = np.cumsum(counts) - counts
    out.update({name: _quantile(ordered, starts, counts, q) for name, q in QUANTILES.items()})
    out["max_ms"] = _quantile(ordered, starts, counts, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean_ms"] = np.bincount(timed_groups, arrays.latency[timed], size) / counts
    out["versions"] = _versions_by_group(arrays, chosen, groups, size)
    return out


def _versions_by_group(arrays: _Arrays, chosen: Bools, groups: Ints, size: int) -> list[str]:
    has = chosen & (arrays.version >= 0)
    width = max(len(arrays.versions), 1)
    pairs = _present(groups[has] * width + arrays.version[has], size * width)
    seen: list[list[str]] = [[] for _ in range(size)]
    for pair in pairs.tolist():  # distinct (group, version) pairs only: a handful
        seen[pair // width].append(arrays.versions[pair % width])
    return [", ".join(sorted(names)) for names in seen]


def _renumber(codes: Ints, present: Ints, size: int) -> Ints:
    """``codes`` as positions in ``present``; -1 stays -1."""
    position = np.full(size + 1, -1, dtype=np.intp)
    position[present] = np.arange(len(present))
    return position[codes]  # code -1 reads the last slot, which stays -1


def _summary(arrays: _Arrays) -> pd.DataFrame:
    answered = np.flatnonzero(arrays.answered)
    by_latency = answered[np.argsort(arrays.latency[answered])]
    hosts = len(arrays.hosts)
    pair = np.where(arrays.is_host, arrays.pool * hosts + arrays.host, -1)
    used = _present(pair[pair >= 0], len(arrays.pools) * hosts)
    dense = _renumber(pair, used, len(arrays.pools) * hosts)
    host_rows = pd.DataFrame(_group_stats(arrays, dense, len(used), by_latency))
    host_rows["_rank"] = np.arange(len(used))  # natural host order, from the codes
    host_rows.insert(0, "pool", [arrays.pools[p // hosts] for p in used.tolist()])
    host_rows.insert(1, "host", [arrays.hosts[p % hosts] for p in used.tolist()])
    pool_ids = _present(arrays.pool[arrays.is_host], len(arrays.pools))
    grouped = _renumber(np.where(arrays.is_host, arrays.pool, -1), pool_ids, len(arrays.pools))
    pool_rows = pd.DataFrame(_group_stats(arrays, grouped, len(pool_ids), by_latency))
    pool_rows.insert(0, "pool", [arrays.pools[p] for p in pool_ids.tolist()])
    pool_rows.insert(1, "host", POOL_ROW)
    parts = [host_rows.assign(_kind=0), pool_rows.assign(_kind=1, _rank=0)]
    if not arrays.is_host.all():
        lb = np.where(arrays.is_host, -1, 0)
        lb_rows = pd.DataFrame(_group_stats(arrays, lb, 1, by_latency))
        lb_pools = _present(arrays.pool[~arrays.is_host], len(arrays.pools))
        lb_rows.insert(0, "pool", ", ".join(n for i in lb_pools if (n := arrays.pools[i])))
        lb_rows.insert(1, "host", "lb")
        parts.append(lb_rows.assign(_kind=2, _rank=0))
    table = pd.concat(parts, ignore_index=True)
    table["target"] = np.where(table["_kind"] == 2, "lb", "host")
    table["_lb"] = table["_kind"] == 2
    table = table.sort_values(["_lb", "pool", "_kind", "_rank"], kind="stable")
    table = table.reset_index(drop=True)[list(SUMMARY_COLUMNS)]
    return table.astype({"pool": "str", "host": "str", "target": "str", "versions": "str"})


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (pool, host) of host samples, one per pool (host ``"(pool)"``), one
    for the load balancer if sampled; columns :data:`SUMMARY_COLUMNS`.

    Latency statistics cover answered samples (status not NA) and are NaN when none.
    Raises UsageError if ``df`` breaks the sample contract.
    """
    return _summary(_arrays(df))
