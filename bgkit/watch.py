"""After a switch: watch the public address and judge what the users get, as it happens.

``watch(config, lb=..., ...)`` samples the load balancer's public address at
``[switch].watch_rate_per_s`` for up to ``[switch].watch_s`` seconds and polls the load
balancer's view of the new pool every ``[switch].lb_poll_s``; it stops at the **first
breach**, so a failing pool is switched back after about one probe interval, not at the
end of the window. :class:`WatchJudge` (pure, one sample at a time) breaches on:

- an answer from another release (``wrong_version``): another version, another build
  (``<version>+<build>``, given the release id), or another pool by the load balancer's
  pool header;
- more failed samples than the error budget, ``floor(max_error_ratio x planned samples)``
  (with the default ratio of 0, the first failure);
- more than ``max_consecutive_failures`` failures in a row;
- p99 latency above ``max_p99_ms`` over the last :data:`P99_WINDOW` answers (sliding),
  and over every answer when the window ends with fewer;
- the load balancer reporting any server of the new pool not healthy.

``judge_watch`` replays a sample frame through the same judge. ``moved_s`` is when the
last answer from the old release came: from then on, every request met the new pool.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import pandas as pd

from bgkit.config import Config, GatesConfig
from bgkit.errors import LoadBalancerError
from bgkit.lb.base import BackendServer, LoadBalancer
from bgkit.probe import Reading, Target, frame_of, lb_target, pool_label, probe, run_coroutine
from bgkit.version_signal import VersionSource, build_of

__all__ = ["P99_WINDOW", "Judge", "WatchJudge", "WatchResult", "judge_watch", "judged_samples",
           "watch"]

P99_WINDOW = 100  # answers: p99 of 100 is robust to one outlier, and 2 s at 50/s


@dataclass(frozen=True, slots=True)
class WatchResult:
    """What the public address answered after a switch, and the judgement.

    ``breach`` is the first reason the watch stopped early (None if it ran its window);
    ``first_failure_at`` the first failing sample, ``breached_at`` when it was judged.
    """

    ok: bool
    reasons: tuple[str, ...]
    samples: int
    errors: int
    wrong_version: int
    p99_ms: float | None
    moved_s: float | None  # from the switch call to the last answer of the old release
    breach: str | None = None
    first_failure_at: datetime | None = None
    breached_at: datetime | None = None
    planned: int = 0
    lb_reads: int = 0
    lb_read_errors: int = 0
    duration_s: float = 0.0
    signal: str = ""  # what told the new release's answers from the old one's

    @property
    def detect_s(self) -> float | None:
        """From the first failing sample to the breach, when both happened."""
        if self.first_failure_at is None or self.breached_at is None:
            return None
        return max(0.0, (self.breached_at - self.first_failure_at).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reasons": list(self.reasons), "samples": self.samples,
                "errors": self.errors, "wrong_version": self.wrong_version,
                "p99_ms": self.p99_ms, "moved_s": self.moved_s, "breach": self.breach,
                "first_failure_at": _iso(self.first_failure_at),
                "breached_at": _iso(self.breached_at), "detect_s": self.detect_s,
                "planned": self.planned, "lb_reads": self.lb_reads,
                "lb_read_errors": self.lb_read_errors, "duration_s": self.duration_s,
                "signal": self.signal}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment is not None else None


@dataclass(slots=True)
class WatchJudge:
    """Judges a watch one sample (or one load-balancer read) at a time; pure."""

    gates: GatesConfig
    expected_version: str
    pool: str
    planned: int
    samples: int = 0
    errors: int = 0
    wrong: int = 0
    run: int = 0
    kinds: set[str] = field(default_factory=set)
    wrong_versions: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    window: deque[float] = field(default_factory=lambda: deque(maxlen=P99_WINDOW))
    breach: str | None = None
    first_failure_at: datetime | None = None
    breached_at: datetime | None = None
    lb_reads: int = 0
    lb_read_errors: int = 0

    @property
    def budget(self) -> int:
        return math.floor(self.gates.max_error_ratio * self.planned + 1e-9)

    def add(self, row: dict[str, Any]) -> str | None:
        """Judge one sample row (the probe's columns); the breach it causes, if any."""
        self.samples += 1
        at = row["timestamp"]
        if row["status"] is not None and not pd.isna(row["status"]):
            self.latencies.append(float(row["latency_ms"]))
            self.window.append(float(row["latency_ms"]))
        if row["ok"]:
            self.run = 0
            return self._p99_breach(at)
        self.first_failure_at = self.first_failure_at or at
        self.run += 1
        if row["error"] == "wrong_version":
            self.wrong += 1
            said = row.get("version")  # or, with version_from = none, the serving pool
            self.wrong_versions.add(str(said if said is not None and not pd.isna(said)
                                        else row.get("served_by")))
            return self._breached(at, self._wrong_reason())
        self.errors += 1
        self.kinds.add(str(row["error"]))
        if self.errors > self.budget:
            return self._breached(at, self._budget_reason())
        if self.run > self.gates.max_consecutive_failures:
            return self._breached(at, f"{self.run} requests failed in a row, more than "
                                      f"max_consecutive_failures = "
                                      f"{self.gates.max_consecutive_failures}")
        return self._p99_breach(at)

    def servers(self, servers: Sequence[BackendServer], at: datetime) -> str | None:
        """Judge one read of the load balancer's health checks of the new pool."""
        self.lb_reads += 1
        sick = [f"{s.name} ({s.address}:{s.port}) {s.status}" + (f": {s.detail}" if s.detail
                                                                  else "")
                for s in servers if s.pool == self.pool and not s.healthy]
        if not sick:
            return None
        self.first_failure_at = self.first_failure_at or at
        return self._breached(at, f"the load balancer reports {self.pool} server(s) not "
                                  f"healthy: {'; '.join(sick)}")

    def read_failed(self) -> None:
        self.lb_read_errors += 1

    def finish(self) -> tuple[str, ...]:
        """Every reason the watch fails, judged over all it saw (after the last sample)."""
        reasons = [self.breach] if self.breach else []
        if self.samples == 0 and self.breach is None:
            reasons.append("no answer was sampled after the switch")
        if self.wrong and self.breach != self._wrong_reason():
            reasons.append(self._wrong_reason())
        if self.errors > self.budget and self.breach != self._budget_reason():
            reasons.append(self._budget_reason())
        p99 = _p99(self.latencies)
        if self.breach is None and p99 is not None and p99 > self.gates.max_p99_ms:
            reasons.append(f"p99 latency {p99:.1f} ms over {len(self.latencies)} answers is "
                           f"above the {self.gates.max_p99_ms:g} ms gate")
        return tuple(dict.fromkeys(reasons))

    def _p99_breach(self, at: datetime) -> str | None:
        if len(self.window) < P99_WINDOW:
            return None
        p99 = _p99(self.window)
        if p99 is None or p99 <= self.gates.max_p99_ms:
            return None
        return self._breached(at, f"p99 latency {p99:.1f} ms over the last {P99_WINDOW} "
                                  f"answers is above the {self.gates.max_p99_ms:g} ms gate")

    def _breached(self, at: datetime, reason: str) -> str:
        if self.breach is None:
            self.breach, self.breached_at = reason, at
        return self.breach

    def _wrong_reason(self) -> str:
        return (f"answers after the switch came from another release "
                f"({', '.join(sorted(self.wrong_versions))}), expected {self.expected_version}")

    def _budget_reason(self) -> str:
        return (f"{self.errors} request(s) failed ({', '.join(sorted(self.kinds))}), over the "
                f"error budget of {self.budget} ({self.gates.max_error_ratio:.2%} of "
                f"{self.planned} planned samples)")


def _p99(values: Sequence[float] | deque[float]) -> float | None:
    """The 99th percentile with linear interpolation (as pandas' ``quantile``)."""
    if not values:
        return None
    ordered = sorted(values)
    position = 0.99 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _result(judge: WatchJudge, rows: pd.DataFrame, switched_at: datetime,
            duration_s: float) -> WatchResult:
    reasons = judge.finish()
    old = rows[rows["error"] == "wrong_version"] if len(rows) else rows
    moved_s = (old["timestamp"].max() - pd.Timestamp(switched_at)).total_seconds() \
        if len(old) else 0.0
    return WatchResult(ok=not reasons, reasons=reasons, samples=judge.samples,
                       errors=judge.errors, wrong_version=judge.wrong,
                       p99_ms=_p99(judge.latencies), moved_s=max(0.0, moved_s),
                       breach=judge.breach, first_failure_at=judge.first_failure_at,
                       breached_at=judge.breached_at, planned=judge.planned,
                       lb_reads=judge.lb_reads, lb_read_errors=judge.lb_read_errors,
                       duration_s=duration_s)


def judge_watch(samples: pd.DataFrame, gates: GatesConfig, *, expected_version: str,
                switched_at: datetime, applied_at: datetime, pool: str = "",
                planned: int | None = None) -> WatchResult:
    """Judge public-address samples taken after a switch was applied (pure): the samples
    from ``applied_at`` on, in time order, through :class:`WatchJudge`."""
    after = samples[samples["timestamp"] >= pd.Timestamp(applied_at)].sort_values(
        "timestamp", kind="stable")
    judge = WatchJudge(gates, expected_version, pool, planned or max(1, len(after)))
    for record in after.to_dict("records"):
        row = {str(key): value for key, value in record.items()}
        judge.add({**row, "timestamp": row["timestamp"].to_pydatetime()})
    return _result(judge, samples, switched_at, 0.0)


def watch(config: Config, *, lb: LoadBalancer, live_pool: str, expected_version: str,
          switched_at: datetime, applied_at: datetime,
          expected_release: str | None = None) -> tuple[WatchResult, pd.DataFrame]:
    """Sample the public address, judging each answer, until the window ends or the
    first breach; poll the load balancer's health checks of ``live_pool`` meanwhile.
    With ``expected_release``, an answer naming another build is from another release."""
    settings = config.switch
    planned = max(1, int(settings.watch_s * settings.watch_rate_per_s))
    judge = WatchJudge(config.gates, expected_version, live_pool, planned)
    signal = VersionSource.parse(config.service.version_source)
    target = lb_target(config, live_pool=live_pool,
                       expected_version=expected_version if signal.says_version else None,
                       expected_pool=pool_label(config, live_pool),
                       expected_build=build_of(expected_release, name=config.app.name,
                                               version=expected_version))
    reading = Reading(signal, config.lb.pool_header)
    began = time.monotonic()
    rows = run_coroutine(judged_samples(target, lb, judge, duration_s=settings.watch_s,
                                        rate_per_s=settings.watch_rate_per_s,
                                        lb_poll_s=settings.lb_poll_s, reading=reading))
    frame = frame_of(rows)
    result = _result(judge, frame, switched_at, time.monotonic() - began)
    return replace(result, signal=_signal_used(signal, config.lb.pool_header, frame)), frame


def _signal_used(signal: VersionSource, pool_header: str, samples: pd.DataFrame) -> str:
    """Which of the two signals the watch had: the version, the pool header, or neither."""
    said = []
    if signal.says_version:
        said.append(f"the version in {signal.describe()}")
    if "served_by" in samples.columns and samples["served_by"].notna().any():
        said.append(f"the pool in the load balancer's {pool_header} header")
    return " and ".join(said) or ("nothing: no version and no pool header on the wire, so "
                                  "only errors and latency were judged")


class Judge(Protocol):
    """What :func:`judged_samples` feeds: each sample, each read of the health checks."""

    def add(self, row: dict[str, Any]) -> str | None: ...

    def servers(self, servers: Sequence[BackendServer], at: datetime) -> str | None: ...

    def read_failed(self) -> None: ...


async def judged_samples(target: Target, lb: LoadBalancer, judge: Judge, *,
                         duration_s: float, rate_per_s: float, lb_poll_s: float,
                         reading: Reading) -> list[dict[str, Any]]:
    """Probe ``target`` at ``rate_per_s`` for ``duration_s`` and read the load balancer's
    health checks every ``lb_poll_s``, feeding ``judge`` each; stop at its first breach.
    Returns the sample rows."""
    rows: list[dict[str, Any]] = []
    breached = asyncio.Event()
    deadline = time.monotonic() + duration_s

    async def sample() -> None:
        interval = 1.0 / rate_per_s
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with httpx.AsyncClient(timeout=2.0, limits=limits) as client:
            due = time.monotonic()
            while due < deadline:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                row = await probe(client, target, reading=reading)
                rows.append(row)
                if judge.add(row):
                    breached.set()
                    return
                due = max(due + interval, time.monotonic() - interval)

    # Its own thread, never joined: a load-balancer read stuck in a slow API must not hold
    # up the switch-back once the probes have breached.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bgkit-watch-lb")

    async def poll() -> None:
        loop = asyncio.get_running_loop()
        while time.monotonic() < deadline:
            try:
                servers = await loop.run_in_executor(reader, lb.backend_health)
            except LoadBalancerError:
                judge.read_failed()
            else:
                if judge.servers(servers, datetime.now(UTC)):
                    breached.set()
                    return
            await asyncio.sleep(lb_poll_s)

    tasks = [asyncio.create_task(sample()), asyncio.create_task(poll())]
    stopper = asyncio.create_task(breached.wait())
    try:
        await asyncio.wait([tasks[0], stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        reader.shutdown(wait=False, cancel_futures=True)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return rows
