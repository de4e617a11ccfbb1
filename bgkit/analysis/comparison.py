"""Idle versus live: latency ratios, error rates and a Mann-Whitney U test."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import stats

from bgkit.analysis._frame import Bools, Floats, _json_value, _quantile
from bgkit.samples import validate_samples

__all__ = ["Comparison", "compare"]

_EXACT_MWU_MAX: Final = 10_000  # above this many samples, ranks are computed here


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
