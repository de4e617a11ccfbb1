"""After a switch: watch the public address and judge what the users got.

``watch(config, ...)`` samples the load balancer's public address for ``[switch].watch_s``
seconds; ``judge_watch`` (pure) passes only if every answer came from the new release
and the error ratio and p99 latency stay within ``[gates]``. ``moved_s`` is when the
last answer from the old release came: from then on, every request met the new pool.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import pandas as pd

from bgkit.config import Config, GatesConfig
from bgkit.probe import lb_target, pool_label, sample
from bgkit.version_signal import VersionSource

__all__ = ["WatchResult", "judge_watch", "watch"]


@dataclass(frozen=True, slots=True)
class WatchResult:
    """What the public address answered after a switch, and the judgement."""

    ok: bool
    reasons: tuple[str, ...]
    samples: int
    errors: int
    wrong_version: int
    p99_ms: float | None
    moved_s: float | None  # from the switch call to the last answer of the old release
    signal: str = ""  # what told the new release's answers from the old one's

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "reasons": list(self.reasons), "samples": self.samples,
                "errors": self.errors, "wrong_version": self.wrong_version,
                "p99_ms": self.p99_ms, "moved_s": self.moved_s, "signal": self.signal}


def judge_watch(samples: pd.DataFrame, gates: GatesConfig, *, expected_version: str,
                switched_at: datetime, applied_at: datetime) -> WatchResult:
    """Judge public-address samples taken after a switch was applied (pure)."""
    after = samples[samples["timestamp"] >= pd.Timestamp(applied_at)]
    total = len(after)
    wrong = int((after["error"] == "wrong_version").sum())
    failed = int((~after["ok"]).sum()) - wrong
    answered = after.loc[after["status"].notna(), "latency_ms"]
    p99 = float(answered.quantile(0.99)) if len(answered) else None
    reasons = []
    if total == 0:
        reasons.append("no answer was sampled after the switch")
    if wrong:
        column = "version" if after.loc[after["error"] == "wrong_version", "version"].notna() \
            .any() or "served_by" not in after.columns else "served_by"
        versions = sorted({str(v) for v in after.loc[after["error"] == "wrong_version",
                                                      column]})
        reasons.append(f"{wrong} of {total} answers after the switch came from another "
                       f"release ({', '.join(versions)}), expected {expected_version}")
    if total and failed / total > gates.max_error_ratio:
        kinds = after.loc[~after["ok"] & (after["error"] != "wrong_version"), "error"]
        reasons.append(f"{failed} of {total} requests failed ({', '.join(sorted(set(kinds)))})"
                       f", above the {gates.max_error_ratio:.2%} allowed")
    if p99 is not None and p99 > gates.max_p99_ms:
        reasons.append(f"p99 latency {p99:.1f} ms is above the {gates.max_p99_ms:g} ms gate")
    old = samples[(samples["error"] == "wrong_version")]
    moved_s = (old["timestamp"].max() - pd.Timestamp(switched_at)).total_seconds() \
        if len(old) else 0.0
    return WatchResult(ok=not reasons, reasons=tuple(reasons), samples=total, errors=failed,
                       wrong_version=wrong, p99_ms=p99, moved_s=max(0.0, moved_s))


def watch(config: Config, *, live_pool: str, expected_version: str, switched_at: datetime,
          applied_at: datetime) -> tuple[WatchResult, pd.DataFrame]:
    """Sample the public address for the watch window and judge it."""
    settings = config.switch
    signal = VersionSource.parse(config.service.version_source)
    target = lb_target(config, live_pool=live_pool,
                       expected_version=expected_version if signal.says_version else None,
                       expected_pool=pool_label(config, live_pool))
    samples = sample([target], duration_s=settings.watch_s,
                     rate_per_s=settings.watch_rate_per_s, version_from=signal,
                     pool_header=config.lb.pool_header)
    result = judge_watch(samples, config.gates, expected_version=expected_version,
                         switched_at=switched_at, applied_at=applied_at)
    return replace(result, signal=_signal_used(signal, config.lb.pool_header, samples)), samples


def _signal_used(signal: VersionSource, pool_header: str, samples: pd.DataFrame) -> str:
    """Which of the two signals the watch had: the version, the pool header, or neither."""
    said = []
    if signal.says_version:
        said.append(f"the version in {signal.describe()}")
    if "served_by" in samples.columns and samples["served_by"].notna().any():
        said.append(f"the pool in the load balancer's {pool_header} header")
    return " and ".join(said) or ("nothing: no version and no pool header on the wire, so "
                                  "only errors and latency were judged")
