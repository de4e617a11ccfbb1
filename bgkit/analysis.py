"""Pure analysis of the verify step: summarise samples, compare pools, judge the gates.

Input is the sample frame of :mod:`bgkit.samples`. Nothing here does I/O. The numbers
are computed once over integer codes with numpy, so a million samples take well under
a second; latency percentiles use linear interpolation, exactly as pandas does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from bgkit.config import GatesConfig
from bgkit.lb.base import BackendServer
from bgkit.samples import ERROR_KINDS, raise_value_problems, validate_samples

__all__ = [
    "POOL_ROW",
    "SUMMARY_COLUMNS",
    "Comparison",
    "GateResult",
    "GateVerdict",
    "Verdict",
    "compare",
    "evaluate",
    "natural_key",
    "summarise",
]

GateVerdict = Literal["pass", "fail", "inconclusive"]
POOL_ROW: Final = "(pool)"
QUANTILES: Final = {"p50_ms": 0.50, "p90_ms": 0.90, "p95_ms": 0.95, "p99_ms": 0.99}
ERROR_COLUMNS: Final = tuple(f"err_{kind}" for kind in ERROR_KINDS)
SUMMARY_COLUMNS: Final = (
    "pool", "host", "target", "samples", "ok", "ok_ratio", *ERROR_COLUMNS,
    *QUANTILES, "max_ms", "mean_ms", "versions",
)
_EXACT_MWU_MAX: Final = 10_000  # above this many samples, ranks are computed here

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]


# --- the samples as arrays -----------------------------------------------------------


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


def _present(codes: Ints, size: int) -> Ints:
    """The distinct non-negative codes, sorted (a counting pass, not a hash)."""
    return np.flatnonzero(np.bincount(codes, minlength=size)).astype(np.intp)


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


# --- idle versus live ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """Idle against live: latency ratios, error rates and a Mann-Whitney U test."""

    p50_ratio: float
    p95_ratio: float
    p99_ratio: float
    error_rate_idle: float
    error_rate_live: float
    error_rate_diff: float
    mann_whitney_u: float | None
    p_value_two_sided: float | None
    p_value_idle_slower: float | None
    idle_slower: bool
    idle_answered: int
    live_answered: int
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""
        return {name: _json_value(value) for name, value in asdict(self).items()}


def compare(idle: pd.DataFrame, live: pd.DataFrame, *, alpha: float = 0.01) -> Comparison:
    """Compare the idle pool's samples with the live pool's (both sample frames).

    Ratios are idle/live and NaN when live has no answered sample. Fewer than two
    answered samples on either side: no U test, ``idle_slower`` False.
    """
    sides = [validate_samples(frame) for frame in (idle, live)]
    latencies = [f["latency_ms"].to_numpy(np.float64)[f["status"].notna().to_numpy(bool)]
                 for f in sides]
    oks = [f["ok"].to_numpy(bool) for f in sides]
    return _compare(latencies[0], oks[0], latencies[1], oks[1], alpha)


def _compare(idle_ms: Floats, idle_ok: Bools, live_ms: Floats, live_ok: Bools,
             alpha: float) -> Comparison:
    idle_sorted, live_sorted = np.sort(idle_ms), np.sort(live_ms)
    ratios = {q: _ratio(_one_quantile(idle_sorted, q), _one_quantile(live_sorted, q))
              for q in (0.5, 0.95, 0.99)}
    rate_idle, rate_live = _error_rate(idle_ok), _error_rate(live_ok)
    u, p_two, p_greater = _mann_whitney(idle_sorted, live_sorted)
    return Comparison(
        p50_ratio=ratios[0.5], p95_ratio=ratios[0.95], p99_ratio=ratios[0.99],
        error_rate_idle=rate_idle, error_rate_live=rate_live,
        error_rate_diff=rate_idle - rate_live,
        mann_whitney_u=u, p_value_two_sided=p_two, p_value_idle_slower=p_greater,
        idle_slower=p_greater is not None and p_greater < alpha,
        idle_answered=len(idle_ms), live_answered=len(live_ms), alpha=alpha,
    )


def _one_quantile(ordered: Floats, q: float) -> float:
    starts, counts = np.zeros(1, np.intp), np.array([len(ordered)], np.intp)
    return float(_quantile(ordered, starts, counts, q)[0])


def _ratio(idle: float, live: float) -> float:
    if math.isnan(idle) or math.isnan(live):
        return math.nan
    if live <= 0:
        return 1.0 if idle <= 0 else math.inf
    return idle / live


def _error_rate(ok: Bools) -> float:
    return float(np.count_nonzero(~ok) / len(ok)) if len(ok) else math.nan


def _mann_whitney(idle: Floats, live: Floats) -> tuple[float | None, float | None, float | None]:
    """U of idle, two-sided p, one-sided p (idle greater); scipy's own rules.

    Small samples go to scipy (exact or asymptotic, as it chooses). Large ones, where
    scipy would use the tie-corrected normal approximation anyway, are ranked here from
    the already sorted arrays: same formula, a fraction of the time.
    """
    n1, n2 = len(idle), len(live)
    if n1 < 2 or n2 < 2:
        return None, None, None
    if n1 + n2 <= _EXACT_MWU_MAX or min(n1, n2) <= 8:
        two = stats.mannwhitneyu(idle, live, alternative="two-sided")
        greater = stats.mannwhitneyu(idle, live, alternative="greater")
        return float(two.statistic), float(two.pvalue), float(greater.pvalue)
    both = np.sort(np.concatenate([idle, live]), kind="stable")  # merges two sorted runs
    below = np.searchsorted(both, idle, side="left")
    upto = np.searchsorted(both, idle, side="right")
    rank_sum = float(np.sum((below + upto + 1) / 2.0))
    u1 = rank_sum - n1 * (n1 + 1) / 2.0
    edges = np.flatnonzero(np.diff(both)) + 1
    ties = np.diff(np.concatenate([[0], edges, [len(both)]])).astype(np.float64)
    n = n1 + n2
    spread = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - float(np.sum(ties**3 - ties)) / (n * (n - 1))))
    mean = n1 * n2 / 2.0

    def upper_tail(u: float) -> float:
        z = (u - mean - 0.5) / spread if spread > 0 else -math.inf
        return float(stats.norm.sf(z))

    p_two = min(1.0, 2.0 * upper_tail(max(u1, n1 * n2 - u1)))
    return u1, p_two, min(1.0, upper_tail(u1))


# --- the gates -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's judgement; ``reason`` is a sentence an operator can act on."""

    gate: str
    verdict: GateVerdict
    observed: str
    threshold: str
    reason: str


@dataclass(frozen=True, eq=False)
class Verdict:
    """The outcome of :func:`evaluate`: any fail fails; else any inconclusive; else pass."""

    verdict: GateVerdict
    gates: tuple[GateResult, ...]
    summary: pd.DataFrame
    comparison: Comparison

    def reasons(self) -> list[str]:
        """``"gate: reason"`` for every gate that did not pass (empty on a pass)."""
        return [f"{g.gate}: {g.reason}" for g in self.gates if g.verdict != "pass"]

    def gate_table(self) -> pd.DataFrame:
        """One row per gate: gate, verdict, observed, threshold, reason."""
        columns = ["gate", "verdict", "observed", "threshold", "reason"]
        return pd.DataFrame([asdict(g) for g in self.gates], columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``json.dumps(..., allow_nan=False)`` accepts it)."""
        return {
            "verdict": self.verdict,
            "reasons": self.reasons(),
            "gates": [asdict(g) for g in self.gates],
            "comparison": self.comparison.to_dict(),
            "summary": [{k: _json_value(v) for k, v in row.items()}
                        for row in self.summary.to_dict("records")],
        }


@dataclass(frozen=True, slots=True)
class _Idle:
    """What the gates look at: the idle pool's host rows (indexed by host) and more."""

    pool: str
    hosts: pd.DataFrame
    pool_row: pd.Series | None
    unseen: list[str]  # expected hosts without a single sample
    headless: dict[str, int]  # answered samples without a version header, per host
    runs: dict[str, int]  # longest run of consecutive failed samples, per host


def evaluate(
    df: pd.DataFrame,
    gates: GatesConfig,
    *,
    idle_pool: str,
    live_pool: str,
    expected_version: str | None,
    lb_servers: Sequence[BackendServer] | None = None,
    expected_hosts: Sequence[str] | None = None,
    alpha: float = 0.01,
) -> Verdict:
    """Judge the idle pool's host samples against ``gates`` before a switch.

    The idle hosts are those seen in ``df`` for ``idle_pool``, plus ``expected_hosts``
    if given (an expected host with no sample makes the samples gate inconclusive).
    Raises UsageError if ``df`` breaks the sample contract.
    """
    arrays = _arrays(df)
    summary = _summary(arrays)
    idle_mask, live_mask = (arrays.is_host & (arrays.pool == _code(arrays.pools, pool))
                            for pool in (idle_pool, live_pool))
    comparison = _compare(
        arrays.latency[idle_mask & arrays.answered], arrays.ok[idle_mask],
        arrays.latency[live_mask & arrays.answered], arrays.ok[live_mask], alpha)
    rows = summary[(summary["target"] == "host") & (summary["pool"] == idle_pool)]
    pool_rows = rows[rows["host"] == POOL_ROW]
    hosts = rows[rows["host"] != POOL_ROW].set_index("host")
    headless = np.bincount(arrays.host[idle_mask & arrays.answered & (arrays.version < 0)],
                           minlength=len(arrays.hosts))
    idle = _Idle(
        pool=idle_pool, hosts=hosts,
        pool_row=pool_rows.iloc[0] if len(pool_rows) else None,
        unseen=sorted(set(expected_hosts or ()) - set(hosts.index)),
        headless={arrays.hosts[i]: int(n) for i, n in enumerate(headless.tolist()) if n},
        runs=_longest_failure_runs(arrays, idle_mask),
    )
    results = (
        _samples_gate(idle, gates), _errors_gate(idle, gates),
        _p99_gate(idle, comparison.idle_answered, gates),
        _p95_ratio_gate(idle, comparison, gates, live_pool),
        _version_gate(idle, gates, expected_version),
        _consecutive_gate(idle, gates), _lb_gate(idle_pool, lb_servers),
    )
    return Verdict(_overall(results), results, summary, comparison)


def _code(names: list[str], name: str) -> int:
    return names.index(name) if name in names else -1


def _overall(results: Sequence[GateResult]) -> GateVerdict:
    verdicts = {r.verdict for r in results}
    for verdict in ("fail", "inconclusive"):
        if verdict in verdicts:
            return verdict
    return "pass"


def _longest_failure_runs(arrays: _Arrays, chosen: Bools) -> dict[str, int]:
    """Longest run of consecutive not-ok samples per host, in timestamp order."""
    rows = np.flatnonzero(chosen)
    stamps = arrays.frame["timestamp"].to_numpy(dtype="datetime64[ns]")[rows].view(np.int64)
    by_time = np.argsort(stamps, kind="stable")
    host = arrays.host[rows][by_time]
    order = by_time[np.argsort(host.astype(np.int32), kind="stable")]
    host, failed = arrays.host[rows][order], ~arrays.ok[rows][order]
    continues = np.zeros(len(order), dtype=bool)
    continues[1:] = failed[:-1] & (host[1:] == host[:-1])
    run_id = np.cumsum(failed & ~continues)  # each failure carries its run's number
    lengths = np.bincount(run_id[failed])
    longest = np.zeros(len(arrays.hosts), dtype=np.int64)
    starts = np.flatnonzero(failed & ~continues)
    np.maximum.at(longest, host[starts], lengths[run_id[starts]])
    seen = _present(host, len(arrays.hosts))
    return {arrays.hosts[h]: int(longest[h]) for h in seen.tolist()}


def _listing(items: Sequence[str], limit: int = 8) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _no_samples(gate: str, idle: _Idle, threshold: str) -> GateResult:
    return GateResult(gate, "inconclusive", "no samples", threshold,
                      f"no host samples from the idle pool {idle.pool}: probe it first")


def _samples_gate(idle: _Idle, gates: GatesConfig) -> GateResult:
    need = gates.min_samples_per_host
    threshold = f">= {need} per host"
    if idle.hosts.empty:
        return _no_samples("samples", idle, threshold)
    counts: dict[str, int] = {str(h): int(n) for h, n in idle.hosts["samples"].items()}
    counts.update(dict.fromkeys(idle.unseen, 0))
    fewest = min(counts, key=lambda host: (counts[host], host))
    observed = f"min {counts[fewest]} ({fewest}) over {len(counts)} hosts"
    short = [f"{host} ({n})" for host, n in sorted(counts.items()) if n < need]
    if short or idle.unseen:
        return GateResult("samples", "inconclusive", observed, threshold,
                          f"too few samples to judge {len(short)} idle host(s): "
                          f"{_listing(short)}; sample for longer and verify again")
    return GateResult("samples", "pass", observed, threshold,
                      f"all {len(counts)} idle hosts have at least {need} samples")


def _errors_gate(idle: _Idle, gates: GatesConfig) -> GateResult:
    limit = gates.max_error_ratio
    threshold = f"<= {limit:.2%} per host"
    if idle.hosts.empty:
        return _no_samples("errors", idle, threshold)
    hosts = idle.hosts
    ratios = (hosts["samples"] - hosts["ok"]) / hosts["samples"]
    worst = str(ratios.idxmax())
    observed = f"max {ratios[worst]:.2%} ({worst})"
    bad = []
    for host in ratios.index[ratios > limit]:
        row = hosts.loc[host]
        kinds = ", ".join(f"{kind} {row[f'err_{kind}']}" for kind in ERROR_KINDS
                          if row[f"err_{kind}"])
        failed = row["samples"] - row["ok"]
        what = "answered none" if failed == row["samples"] else f"failed {failed}"
        bad.append(f"{host} {what} of {row['samples']} probes ({ratios[host]:.2%}: {kinds})")
    if bad:
        return GateResult("errors", "fail", observed, threshold,
                          f"idle host(s) over the error budget: {_listing(bad)}; check their "
                          "service logs before switching")
    return GateResult("errors", "pass", observed, threshold,
                      f"every idle host is within the error budget of {limit:.2%}")


def _too_few(gate: str, observed: str, threshold: str, pool: str, answered: int,
             need: int) -> GateResult:
    return GateResult(gate, "inconclusive", observed, threshold,
                      f"only {answered} answered samples from {pool}; latency is judged on at "
                      f"least {need} ([gates] min_samples_per_host): sample for longer")


def _p99_gate(idle: _Idle, answered: int, gates: GatesConfig) -> GateResult:
    limit = gates.max_p99_ms
    threshold = f"<= {limit:g} ms"
    if idle.pool_row is None:
        return _no_samples("p99_latency", idle, threshold)
    p99 = float(idle.pool_row["p99_ms"])
    if math.isnan(p99):
        return GateResult("p99_latency", "inconclusive", "no answers", threshold,
                          f"no idle host of {idle.pool} answered, so latency cannot be judged")
    slowest = str(idle.hosts["p99_ms"].idxmax())
    worst = f"slowest host {slowest} p99 {float(idle.hosts['p99_ms'].max()):.1f} ms"
    observed = f"{p99:.1f} ms"
    if answered < gates.min_samples_per_host:
        return _too_few("p99_latency", observed, threshold, f"idle pool {idle.pool}", answered,
                        gates.min_samples_per_host)
    if p99 > limit:
        return GateResult("p99_latency", "fail", observed, threshold,
                          f"idle pool {idle.pool} p99 latency {p99:.1f} ms is above "
                          f"{limit:g} ms; {worst}")
    return GateResult("p99_latency", "pass", observed, threshold,
                      f"idle pool {idle.pool} p99 latency {p99:.1f} ms is within {limit:g} ms "
                      f"({worst})")


def _p95_ratio_gate(idle: _Idle, comparison: Comparison, gates: GatesConfig,
                    live_pool: str) -> GateResult:
    limit = gates.max_p95_ratio
    threshold = f"<= {limit:g}x live p95"
    if comparison.live_answered == 0:
        return GateResult("p95_ratio", "pass", "no live samples", threshold,
                          "no live samples to compare with (first deploy?)")
    if comparison.idle_answered == 0:
        return GateResult("p95_ratio", "inconclusive", "no idle answers", threshold,
                          f"no idle host of {idle.pool} answered, so latency cannot be compared")
    ratio = comparison.p95_ratio
    observed = f"{ratio:.2f}x"
    fewest, side = min((comparison.idle_answered, f"idle pool {idle.pool}"),
                       (comparison.live_answered, f"live pool {live_pool}"))
    if fewest < gates.min_samples_per_host:
        return _too_few("p95_ratio", observed, threshold, side, fewest,
                        gates.min_samples_per_host)
    test = ""
    if comparison.idle_slower:
        test = (f"; Mann-Whitney U={comparison.mann_whitney_u:.0f}: idle is slower than "
                f"live (one-sided p={comparison.p_value_idle_slower:.2g} < {comparison.alpha:g})")
    if ratio > limit:
        return GateResult("p95_ratio", "fail", observed, threshold,
                          f"idle {idle.pool} p95 is {ratio:.2f}x live {live_pool} p95, above "
                          f"{limit:g}x{test}")
    return GateResult("p95_ratio", "pass", observed, threshold,
                      f"idle {idle.pool} p95 is {ratio:.2f}x live {live_pool} p95{test}")


def _version_gate(idle: _Idle, gates: GatesConfig, expected: str | None) -> GateResult:
    if not gates.require_version:
        return GateResult("version", "pass", "-", "not required", "not required")
    if expected is None:
        return GateResult("version", "inconclusive", "-", "expected version", "[gates] "
                          "require_version is set but no expected version was given to check")
    threshold = f"only {expected}"
    if idle.hosts.empty:
        return _no_samples("version", idle, threshold)
    wrong, silent = [], []
    for label, row in idle.hosts.iterrows():
        host = str(label)
        answered = [v for v in str(row["versions"]).split(", ") if v]
        answered += ["(no version header)"] if idle.headless.get(host) else []
        if any(version != expected for version in answered):
            wrong.append(f"{host} answered {', '.join(answered)}")
        elif not answered:
            silent.append(host)
    observed = f"{len(wrong)} host(s) with another version"
    if wrong:
        return GateResult("version", "fail", observed, threshold,
                          f"idle host(s) not serving {expected}: {_listing(wrong)}; "
                          "deploy the release to them again")
    if silent:
        return GateResult("version", "inconclusive", observed, threshold,
                          f"no answer to read a version from: {_listing(silent)}")
    return GateResult("version", "pass", observed, threshold,
                      f"every idle host answered only {expected}")


def _consecutive_gate(idle: _Idle, gates: GatesConfig) -> GateResult:
    limit = gates.max_consecutive_failures
    threshold = f"<= {limit} in a row"
    if not idle.runs:
        return _no_samples("consecutive_failures", idle, threshold)
    worst = max(sorted(idle.runs), key=lambda host: idle.runs[host])
    observed = f"{idle.runs[worst]} ({worst})"
    long = [f"{host} failed {n} in a row" for host, n in sorted(idle.runs.items()) if n > limit]
    if long:
        return GateResult("consecutive_failures", "fail", observed, threshold,
                          f"idle host(s) failed repeatedly: {_listing(long)}")
    return GateResult("consecutive_failures", "pass", observed, threshold,
                      f"no idle host failed more than {limit} samples in a row")


def _lb_gate(idle_pool: str, servers: Sequence[BackendServer] | None) -> GateResult:
    if servers is None:
        return GateResult("lb_health", "pass", "-", "all healthy",
                          "load balancer view not checked")
    mine = [s for s in servers if s.pool == idle_pool]
    sick = [f"{s.name} ({s.address}:{s.port}) is {s.status}" for s in mine if not s.healthy]
    observed = f"{len(mine) - len(sick)}/{len(mine)} healthy"
    if not mine:
        return GateResult("lb_health", "fail", observed, "all healthy",
                          f"the load balancer lists no server in pool {idle_pool}")
    if sick:
        return GateResult("lb_health", "fail", observed, "all healthy",
                          f"the load balancer does not see idle servers as healthy: "
                          f"{_listing(sick)}")
    return GateResult("lb_health", "pass", observed, "all healthy",
                      f"the load balancer sees all {len(mine)} {idle_pool} servers healthy")


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
