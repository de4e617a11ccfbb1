"""The switch, written once. Providers only implement the load balancer primitives.

1. acquire the lock (owner, message, TTL)
2. read live/idle from the load balancer
3. fresh pre-switch sample of idle and live; pandas summary; evaluate the gates
4. refuse on ``fail``; stop for a human on ``inconclusive``; on ``pass`` ask approval
5. switch the load balancer; wait until the change is applied
6. watch the public address: every answer from the new release, errors and latency
   within the gates
7. on any failure after step 5: switch back automatically, and say why
8. release the lock; the previous pool keeps running, so rollback is one flip

``rollback`` is the same algorithm aimed at the previous pool: it checks that pool's
health (errors, latency and the load balancer's view; any single version it answers),
and refuses with the reason when it is not healthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bgkit import lock as locking
from bgkit.config import Config
from bgkit.errors import LoadBalancerError
from bgkit.lb.base import LoadBalancer, PoolName, other_pool
from bgkit.verify import VerifyResult, verify
from bgkit.watch import WatchResult, watch

__all__ = ["OUTCOME_EXIT_CODES", "SwitchOutcome", "rollback", "switch"]

OUTCOME_EXIT_CODES = {"switched": 0, "rolled back": 0, "already live": 0, "refused": 1,
                      "not approved": 1, "switched back": 1, "switch failed": 1,
                      "needs attention": 1, "inconclusive": 3}


@dataclass(frozen=True, slots=True)
class SwitchOutcome:
    """How a switch (or rollback) ended, with its evidence and timings."""

    action: str  # "switch" | "rollback"
    outcome: str  # a key of OUTCOME_EXIT_CODES
    reason: str
    from_pool: PoolName
    to_pool: PoolName
    live_pool: PoolName  # where traffic is at the end, read back from the load balancer
    evidence: VerifyResult | None = None
    applied_s: float | None = None
    watch: WatchResult | None = None
    switch_back_applied_s: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return OUTCOME_EXIT_CODES[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action, "outcome": self.outcome, "reason": self.reason,
            "from_pool": self.from_pool, "to_pool": self.to_pool, "live_pool": self.live_pool,
            "applied_s": self.applied_s, "switch_back_applied_s": self.switch_back_applied_s,
            "watch": self.watch.to_dict() if self.watch else None, "timings": self.timings,
            "verdict": self.evidence.verdict.verdict if self.evidence else None,
        }


Step = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def switch(config: Config, *, lb: LoadBalancer, expected_version: str, approve: bool,
           message: str = "switch", on_step: Step = _quiet) -> SwitchOutcome:
    """Move all traffic to the idle pool, which must serve ``expected_version``.

    ``on_step`` hears each step as it starts (for progress displays).

    Raises:
        LockHeld: another deploy or switch is running.
        LoadBalancerError: the live pool could not even be read (nothing was changed).
    """
    on_step("taking the deployment lock")
    with locking.held(config.lock_path, message=message, ttl_s=config.lock.ttl_s):
        live = lb.live_pool()
        idle = other_pool(live)
        on_step(f"sampling {idle} (idle) and {live} (live) before switching")
        evidence = _evidence(config, lb, expected_version=expected_version)
        if _already_live(evidence, expected_version):
            return SwitchOutcome("switch", "already live", f"the live pool {live} already "
                                 f"serves {expected_version}; nothing to switch", live, live,
                                 live, evidence)
        return _decide_and_move(config, lb, "switch", live, idle, evidence, approve,
                                expected_version, on_step)


def rollback(config: Config, *, lb: LoadBalancer, approve: bool,
             message: str = "rollback", on_step: Step = _quiet,
             expected_version: str | None = None) -> SwitchOutcome:
    """Move all traffic back to the other pool, if it is healthy (and, with
    ``expected_version``, still serves that version: what the operator was shown)."""
    on_step("taking the deployment lock")
    with locking.held(config.lock_path, message=message, ttl_s=config.lock.ttl_s):
        live = lb.live_pool()
        previous = other_pool(live)
        on_step(f"checking that {previous} (the previous pool) is healthy")
        # The previous pool serves the previous release: any one version, not a given one.
        lenient = config.model_copy(update={"gates": config.gates.model_copy(
            update={"require_version": False})})
        evidence = _evidence(lenient, lb, expected_version=None)
        version = _single_version(evidence)
        if evidence.verdict.verdict != "pass" or version is None:
            reasons = "; ".join(evidence.verdict.reasons()) or \
                f"the {previous} pool does not answer one single version"
            return SwitchOutcome("rollback", "refused", f"refusing to roll back to the "
                                 f"{previous} pool: {reasons}", live, previous, live, evidence)
        if expected_version is not None and version != expected_version:
            return SwitchOutcome("rollback", "refused", f"refusing to roll back to the "
                                 f"{previous} pool: it now answers {version}, not "
                                 f"{expected_version} as when you decided", live, previous,
                                 live, evidence)
        return _decide_and_move(config, lb, "rollback", live, previous, evidence, approve,
                                version, on_step)


def _evidence(config: Config, lb: LoadBalancer, *, expected_version: str | None) -> VerifyResult:
    return verify(config, lb=lb, expected_version=expected_version,
                  samples_per_host=config.switch.samples_per_host,
                  rate_per_s=config.switch.sample_rate_per_s)


def _already_live(evidence: VerifyResult, expected_version: str) -> bool:
    hosts = evidence.samples[evidence.samples["target"] == "host"]
    live = hosts[hosts["pool"] == evidence.live_pool]
    idle = hosts[hosts["pool"] == evidence.idle_pool]
    return bool(len(live)) and bool((live["version"] == expected_version).all()) and \
        not bool((idle["version"] == expected_version).all())


def _single_version(evidence: VerifyResult) -> str | None:
    hosts = evidence.samples[(evidence.samples["target"] == "host")
                             & (evidence.samples["pool"] == evidence.idle_pool)]
    versions = set(hosts["version"].dropna())
    return next(iter(versions)) if len(versions) == 1 else None


def _decide_and_move(config: Config, lb: LoadBalancer, action: str, live: PoolName,
                     target: PoolName, evidence: VerifyResult, approve: bool,
                     version: str, on_step: Step) -> SwitchOutcome:
    verdict = evidence.verdict.verdict
    reasons = "; ".join(evidence.verdict.reasons())
    if verdict == "fail":
        return SwitchOutcome(action, "refused", f"the gates failed: {reasons}", live, target,
                             live, evidence)
    if verdict == "inconclusive":
        return SwitchOutcome(action, "inconclusive", f"not enough evidence, a human must "
                             f"decide: {reasons}", live, target, live, evidence)
    if not approve:
        return SwitchOutcome(action, "not approved", "the gates passed but the switch was "
                             "not approved (approve=True, or the button)", live, target, live,
                             evidence)
    return _move(config, lb, action, live, target, evidence, version, on_step)


def _move(config: Config, lb: LoadBalancer, action: str, live: PoolName, target: PoolName,
          evidence: VerifyResult, version: str, on_step: Step) -> SwitchOutcome:
    on_step(f"switching the load balancer from {live} to {target}")
    switched_at = datetime.now(UTC)
    started = time.monotonic()
    try:
        applied = lb.switch(target, timeout_s=config.switch.timeout_s)
    except LoadBalancerError as error:
        return _switch_back(config, lb, action, live, target, evidence, None,
                            f"the load balancer failed mid-switch: {error}", started)
    applied_at = datetime.now(UTC)
    on_step(f"applied in {applied.applied_s:.3f} s; watching the public address for "
            f"{config.switch.watch_s:g} s")
    try:
        result, _ = watch(config, live_pool=target, expected_version=version,
                          switched_at=switched_at, applied_at=applied_at)
    except BaseException as error:  # interrupted or broken watch: never leave traffic unwatched
        _switch_back(config, lb, action, live, target, evidence, None,
                     f"the watch stopped ({type(error).__name__}: {error})", started,
                     applied_s=applied.applied_s)
        raise
    timings = {"applied_s": applied.applied_s, "watch_s": time.monotonic() - started}
    if not result.ok:
        on_step(f"the watch failed; switching back to {live}")
        return _switch_back(config, lb, action, live, target, evidence, result,
                            "the post-switch watch failed: " + "; ".join(result.reasons),
                            started, applied_s=applied.applied_s)
    done = "switched" if action == "switch" else "rolled back"
    return SwitchOutcome(action, done, f"traffic moved from {live} to {target} in "
                         f"{applied.applied_s:.3f} s; the watch passed", live, target,
                         target, evidence, applied.applied_s, result, timings=timings)


def _switch_back(config: Config, lb: LoadBalancer, action: str, live: PoolName,
                 target: PoolName, evidence: VerifyResult, result: WatchResult | None,
                 why: str, started: float, *, applied_s: float | None = None) -> SwitchOutcome:
    """Step 7: put traffic back on the pool that served before, and say so."""
    back_s: float | None = None
    outcome = "switch failed"
    try:
        if lb.live_pool() != live:
            outcome = "switched back"
            back_s = lb.switch(live, timeout_s=config.switch.timeout_s).applied_s
        now_live = lb.live_pool()
    except LoadBalancerError as error:
        return SwitchOutcome(action, "needs attention", f"{why}; then the load balancer could "
                             f"not be read or switched back: {error}", live, target, live,
                             evidence, applied_s, result, back_s,
                             {"total_s": time.monotonic() - started})
    return SwitchOutcome(action, outcome, f"{why}; traffic is on {now_live}", live,
                         target, now_live, evidence, applied_s, result, back_s,
                         {"total_s": time.monotonic() - started})
