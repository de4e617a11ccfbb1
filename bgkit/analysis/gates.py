"""The gates: judge the idle pool's samples before a switch, with reasons to act on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from bgkit.analysis._frame import Bools, _Arrays, _arrays, _json_value, _present
from bgkit.analysis._gate import GateResult, GateVerdict, listing
from bgkit.analysis.comparison import Comparison, _compare
from bgkit.analysis.served import HostRelease, release_gate, servers_gate
from bgkit.analysis.summary import POOL_ROW, _summary
from bgkit.config import GatesConfig
from bgkit.lb.base import BackendServer
from bgkit.samples import ERROR_KINDS
from bgkit.version_signal import answers_release

__all__ = ["GateResult", "GateVerdict", "Verdict", "evaluate"]

@dataclass(frozen=True, eq=False)
class Verdict:
    """The outcome of :func:`evaluate`: any fail fails; else any inconclusive; else pass."""

    overall: GateVerdict  # the verdict of all the gates together
    gates: tuple[GateResult, ...]
    summary: pd.DataFrame
    comparison: Comparison

    def with_gates(self, *extra: GateResult) -> Verdict:
        """This verdict with ``extra`` gates judged beside the sampled ones (e.g. parity),
        the overall verdict recomputed by the same rule."""
        gates = (*self.gates, *extra)
        return replace(self, overall=_overall(gates), gates=gates)

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
            "verdict": self.overall,
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
    expected_release: str | None = None,
    releases: Mapping[str, HostRelease] | None = None,
    drift: Sequence[str] | None = None,
) -> Verdict:
    """Judge the idle pool's host samples against ``gates`` before a switch.

    The idle hosts are those seen in ``df`` for ``idle_pool``, plus ``expected_hosts``
    if given (an expected host with no sample makes the samples gate inconclusive).
    With ``expected_release``, every idle host must serve that release id by
    ``releases`` (read over SSH, by host address); ``drift`` lists where the load
    balancer's servers and bgkit.toml's hosts differ (:mod:`bgkit.drift`).
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
        release_gate(expected_release=expected_release, expected_version=expected_version,
                     hosts=sorted({*idle.hosts.index.astype(str), *idle.unseen}),
                     releases=releases),
        _consecutive_gate(idle, gates), _lb_gate(idle_pool, lb_servers), servers_gate(drift),
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
                          f"{listing(short)}; sample for longer and verify again")
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
                          f"idle host(s) over the error budget: {listing(bad)}; check their "
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
    idle_p95 = float(idle.pool_row["p95_ms"]) if idle.pool_row is not None else float("nan")
    delta = idle_p95 - idle_p95 / ratio if ratio > 0 else float("nan")
    if ratio > limit and not delta <= gates.min_p95_delta_ms:
        return GateResult("p95_ratio", "fail", observed, threshold,
                          f"idle {idle.pool} p95 is {ratio:.2f}x live {live_pool} p95 "
                          f"({delta:.1f} ms slower), above {limit:g}x{test}")
    if ratio > limit:
        return GateResult("p95_ratio", "pass", observed, threshold,
                          f"idle {idle.pool} p95 is {ratio:.2f}x live {live_pool} p95 but only "
                          f"{delta:.2f} ms slower, within the {gates.min_p95_delta_ms:g} ms "
                          f"below which ratios are noise{test}")
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
        if any(not answers_release(version, version=expected, build=None)
               for version in answered):
            wrong.append(f"{host} answered {', '.join(answered)}")
        elif not answered:
            silent.append(host)
    observed = f"{len(wrong)} host(s) with another version"
    if wrong:
        return GateResult("version", "fail", observed, threshold,
                          f"idle host(s) not serving {expected}: {listing(wrong)}; "
                          "deploy the release to them again")
    if silent:
        return GateResult("version", "inconclusive", observed, threshold,
                          f"no answer to read a version from: {listing(silent)}")
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
                          f"idle host(s) failed repeatedly: {listing(long)}")
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
                          f"{listing(sick)}")
    blind = [s.name for s in mine if not s.monitored]
    if blind:
        return GateResult("lb_health", "pass", f"{observed}, {len(blind)} unmonitored",
                          "all healthy",
                          f"warning: the load balancer does not check {listing(blind)} "
                          "(no health monitor on the pool), so this gate has no "
                          "load-balancer view of them and only the samples vouch for them; "
                          "add a health monitor to the pool")
    return GateResult("lb_health", "pass", observed, "all healthy",
                      f"the load balancer sees all {len(mine)} {idle_pool} servers healthy")
