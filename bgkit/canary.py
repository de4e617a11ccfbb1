"""A canary hold: a share of live traffic on the idle pool, watched answer by answer.

The runbook asks for "a period of canary release where a small percentage of live
traffic is directed to Green". During a step the load balancer sends ``percent`` of the
requests to the idle pool (:meth:`bgkit.lb.base.LoadBalancer.split`); :func:`hold`
samples the public address for the step's hold and tells each answer's pool by the load
balancer's pool header (``[lb].pool_header``), else — when the two pools serve
different versions — by the version it names.

:class:`CanaryJudge` (pure, one sample at a time) judges the canary pool's answers by the
watch's rules (:class:`bgkit.watch.WatchJudge`: error budget, failures in a row, p99,
another release, the load balancer's health checks of the canary pool), and counts a
failure it cannot attribute (a refused connection, an error page the load balancer made
itself) against the canary: before the split the live pool answered without failing.
The live pool's answers are counted, not judged. After the hold, a canary pool that
received no request while it should have had at least :data:`MIN_EXPECTED` fails the
step: the split did not happen (e.g. haproxy.cfg lacks the canary lines).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from bgkit.config import Config
from bgkit.lb.base import LoadBalancer, PoolName
from bgkit.probe import Reading, frame_of, lb_target, pool_label, run_coroutine
from bgkit.version_signal import VersionSource
from bgkit.watch import WatchJudge, judged_samples

__all__ = ["MIN_EXPECTED", "CanaryHold", "CanaryJudge", "describe_step", "hold",
           "pool_summary"]

MIN_EXPECTED = 5  # answers the canary pool should get before "it got none" means something


@dataclass(slots=True)
class CanaryJudge:
    """Judges a canary hold one sample (or one load-balancer read) at a time; pure.

    ``canary``/``live``: the pools; ``labels`` what the pool header says for each;
    ``versions`` the version each pool serves (None when unknown or not on the wire).
    """

    judge: WatchJudge  # the canary pool's answers and the unattributed failures
    canary: PoolName
    live: PoolName
    labels: dict[PoolName, str]
    versions: dict[PoolName, str | None]
    percent: int
    counts: dict[str, int] = field(default_factory=lambda: {"canary": 0, "live": 0,
                                                            "unknown": 0, "live_failed": 0})

    def pool_of(self, row: dict[str, Any]) -> PoolName | None:
        """The pool that answered: by the pool header, else by a version only one serves."""
        served = row.get("served_by")
        if isinstance(served, str) and served:
            return next((pool for pool, label in self.labels.items() if label == served),
                        None)
        said = row.get("version")
        if isinstance(said, str) and self.versions[self.canary] != self.versions[self.live]:
            return next((pool for pool, version in self.versions.items()
                         if version == said), None)
        return None

    def add(self, row: dict[str, Any]) -> str | None:
        """Judge one sample row; the breach it causes, if any."""
        pool = self.pool_of(row)
        row["pool_answered"] = pool
        if pool == self.live:
            self.counts["live"] += 1
            self.counts["live_failed"] += not row["ok"]
            return None
        self.counts["canary" if pool == self.canary else "unknown"] += 1
        expected = self.versions[self.canary]
        said = row.get("version")
        if row["ok"] and expected is not None and isinstance(said, str) and said != expected:
            row = {**row, "ok": False, "error": "wrong_version"}
        if pool is None and row["ok"]:
            return None  # an answer of neither pool's version, without a header: not judged
        return self.judge.add(row)

    def servers(self, servers: Any, at: datetime) -> str | None:
        return self.judge.servers(servers, at)

    def read_failed(self) -> None:
        self.judge.read_failed()

    @property
    def expected(self) -> float:
        """How many answers the canary pool should have had so far at ``percent``."""
        attributed = self.counts["canary"] + self.counts["live"]
        return attributed * self.percent / 100

    def finish(self) -> tuple[str, ...]:
        reasons = list(self.judge.finish())
        if self.judge.breach is None and self.counts["canary"] == 0 and \
                self.expected >= MIN_EXPECTED:
            reasons.append(
                f"no request reached the {self.canary} pool during the canary: "
                f"{self.counts['live']} answers came from {self.live} while {self.percent}% "
                f"should have gone to {self.canary}; the load balancer did not split the "
                "traffic (HAProxy: does haproxy.cfg have the canary lines, README \"Canary\"?)")
        if self.judge.samples == 0 and self.counts["live"] > 0:
            reasons = [r for r in reasons if r != "no answer was sampled after the switch"]
        return tuple(dict.fromkeys(reasons))


@dataclass(frozen=True, eq=False)
class CanaryHold:
    """One canary step: its share, what each pool answered, and the judgement."""

    percent: int
    hold_s: float
    ok: bool
    reasons: tuple[str, ...]
    samples: int
    to_canary: int
    to_live: int
    unattributed: int
    errors: int  # failures judged against the canary (its own and unattributed ones)
    live_failed: int
    wrong_version: int
    p99_ms: float | None  # of the canary pool's answers
    breach: str | None
    first_failure_at: datetime | None
    breached_at: datetime | None
    duration_s: float
    summary: pd.DataFrame  # per pool that answered: pool_summary()

    @property
    def share(self) -> float | None:
        """The measured share of attributed answers from the canary pool, in percent."""
        attributed = self.to_canary + self.to_live
        return 100 * self.to_canary / attributed if attributed else None

    def describe(self) -> str:
        return describe_step(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"percent": self.percent, "hold_s": self.hold_s, "ok": self.ok,
                "reasons": list(self.reasons), "samples": self.samples,
                "to_canary": self.to_canary, "to_live": self.to_live,
                "unattributed": self.unattributed, "share": self.share,
                "errors": self.errors, "live_failed": self.live_failed,
                "wrong_version": self.wrong_version, "p99_ms": self.p99_ms,
                "breach": self.breach,
                "first_failure_at": _iso(self.first_failure_at),
                "breached_at": _iso(self.breached_at), "duration_s": self.duration_s,
                "summary": [{k: _plain(v) for k, v in row.items()}
                            for row in self.summary.to_dict("records")]}


def describe_step(step: dict[str, Any]) -> str:
    """One held step (:meth:`CanaryHold.to_dict`) in words."""
    share = "-" if step["share"] is None else f"{step['share']:.1f}%"
    text = (f"canary {step['percent']}%: {step['samples']} answers in "
            f"{step['duration_s']:.1f} s, {share} from the canary pool, {step['errors']} "
            "failed")
    return text + ("" if step["ok"] else f" — {'; '.join(step['reasons'])}")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def pool_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """Per pool that answered (``pool_answered``; "unknown" when not told): answers,
    failed, error ratio, p50/p95/p99 latency in ms."""
    columns = ["pool", "answers", "failed", "error_ratio", "p50_ms", "p95_ms", "p99_ms"]
    if samples.empty or "pool_answered" not in samples.columns:
        return pd.DataFrame(columns=columns)
    frame = samples.assign(pool=samples["pool_answered"].fillna("unknown"))
    rows = []
    for pool, group in frame.groupby("pool", sort=True):
        latency = group.loc[group["status"].notna(), "latency_ms"]
        failed = int((~group["ok"].astype(bool)).sum())
        rows.append({"pool": pool, "answers": len(group), "failed": failed,
                     "error_ratio": failed / len(group),
                     **{f"p{q}_ms": float(latency.quantile(q / 100)) if len(latency) else None
                        for q in (50, 95, 99)}})
    return pd.DataFrame(rows, columns=columns)


def hold(config: Config, *, lb: LoadBalancer, canary: PoolName, live: PoolName, percent: int,
         hold_s: float, versions: dict[PoolName, str | None]) -> tuple[CanaryHold, pd.DataFrame]:
    """Sample the public address for ``hold_s`` at ``[switch].watch_rate_per_s`` while
    ``percent`` of requests go to ``canary``; stop at the first breach. Returns the
    judgement and the samples (with ``pool_answered``)."""
    settings = config.switch
    planned = max(1, int(hold_s * settings.watch_rate_per_s * percent / 100))
    signal = VersionSource.parse(config.service.version_source)
    judge = CanaryJudge(WatchJudge(config.gates, versions[canary] or "", canary, planned),
                        canary, live, {pool: pool_label(config, pool) for pool in (canary, live)},
                        versions if signal.says_version else {canary: None, live: None},
                        percent)
    target = lb_target(config, live_pool=live, expected_version=None)
    began = time.monotonic()
    rows = run_coroutine(judged_samples(target, lb, judge, duration_s=hold_s,
                                        rate_per_s=settings.watch_rate_per_s,
                                        lb_poll_s=settings.lb_poll_s,
                                        reading=Reading(signal, config.lb.pool_header)))
    frame = frame_of(rows)
    reasons = judge.finish()
    inner = judge.judge
    result = CanaryHold(
        percent=percent, hold_s=hold_s, ok=not reasons, reasons=reasons, samples=len(rows),
        to_canary=judge.counts["canary"], to_live=judge.counts["live"],
        unattributed=judge.counts["unknown"], errors=inner.errors,
        live_failed=judge.counts["live_failed"], wrong_version=inner.wrong,
        p99_ms=_p99(frame, canary), breach=inner.breach,
        first_failure_at=inner.first_failure_at, breached_at=inner.breached_at,
        duration_s=time.monotonic() - began, summary=pool_summary(frame))
    return result, frame


def _p99(samples: pd.DataFrame, pool: PoolName) -> float | None:
    if samples.empty or "pool_answered" not in samples.columns:
        return None
    latency = samples.loc[(samples["pool_answered"] == pool) & samples["status"].notna(),
                          "latency_ms"]
    return float(latency.quantile(0.99)) if len(latency) else None
