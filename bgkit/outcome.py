"""How a switch or rollback ended: the outcome word, its evidence, and what it took.

``SwitchOutcome.to_dict()`` is everything a record of the action needs (JSON-ready):
the verdict before it, the intent written into the lease, a lease taken over (and
what the re-run did about the change it left), the watch, and — when traffic went
back — the fault-to-revert timings of :class:`Revert`.

Outcome words and exit codes:

=================  ====  =========================================================
switched           0     traffic moved and the watch passed
rolled back        0     traffic moved back and the watch passed
already live       0     the live pool already serves the release, and a fresh
                         watch of it passed
refused            1     the gates failed (or the lease was lost): nothing changed
not approved       1     the gates passed, nobody approved: nothing changed
switched back      1     the watch (or the change) failed; traffic is back
switch failed      1     the change failed and was never applied or was undone
needs attention    1     bgkit could not bring traffic to a known, watched pool;
                         the reason says what to check (``live_pool`` may be unknown)
inconclusive       3     not enough evidence: a human must decide
=================  ====  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bgkit.lb.base import PoolName
from bgkit.verify import VerifyResult
from bgkit.watch import WatchResult
from bgkit.words import exit_code

__all__ = ["LivePool", "Revert", "SwitchOutcome"]

LivePool = Literal["blue", "green", "unknown"]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment is not None else None


def _between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True, slots=True)
class Revert:
    """From the first failing sample to traffic back on the previous pool.

    ``first_failure_at``: the watch's first failing sample (or the load balancer first
    reporting a server down); ``breached_at``: when the watch judged it a breach;
    ``started_at``: the switch-back call; ``applied_at``: the load balancer reporting the
    previous pool live again.
    """

    why: str
    first_failure_at: datetime | None
    breached_at: datetime | None
    started_at: datetime
    applied_at: datetime | None

    @property
    def fault_to_back_s(self) -> float | None:
        return _between(self.first_failure_at, self.applied_at)

    def to_dict(self) -> dict[str, Any]:
        return {"why": self.why, "first_failure_at": _iso(self.first_failure_at),
                "breached_at": _iso(self.breached_at), "started_at": _iso(self.started_at),
                "applied_at": _iso(self.applied_at),
                "detect_s": _between(self.first_failure_at, self.breached_at),
                "apply_s": _between(self.started_at, self.applied_at),
                "fault_to_back_s": self.fault_to_back_s}


@dataclass(frozen=True, slots=True)
class SwitchOutcome:
    """How a switch (or rollback) ended, with its evidence and timings.

    ``live_pool`` is where traffic is at the end, read back from the load balancer, or
    ``"unknown"`` when it could not be read (bgkit never guesses). ``takeover`` is the
    lease this run took over (who, why it was stale, its unfinished intent) and
    ``converged`` what the run found and did about that intent; ``intent`` is the last
    change this run recorded in its lease.
    """

    action: str  # "switch" | "rollback"
    ended: str  # how it ended, an Outcome word (bgkit.words): switched, refused...
    reason: str
    from_pool: PoolName
    to_pool: PoolName
    live_pool: LivePool
    evidence: VerifyResult | None = None
    applied_s: float | None = None
    watch: WatchResult | None = None
    switch_back_applied_s: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    version: str | None = None
    intent: dict[str, Any] | None = None
    takeover: dict[str, Any] | None = None
    converged: str = ""
    revert: Revert | None = None
    lb_state: str = ""
    release: str | None = None  # the release id the target pool serves, when known
    hooks: tuple[dict[str, Any], ...] = ()  # each hook that ran: exit code, output tail
    canary: tuple[dict[str, Any], ...] = ()  # each canary step held: CanaryHold.to_dict()
    recorded: dict[str, Any] | None = None  # last-live records written on the hosts

    @property
    def exit_code(self) -> int:
        return exit_code(self.ended)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action, "outcome": self.ended, "reason": self.reason,
            "exit_code": self.exit_code, "version": self.version, "release": self.release,
            "from_pool": self.from_pool, "to_pool": self.to_pool, "live_pool": self.live_pool,
            "applied_s": self.applied_s, "switch_back_applied_s": self.switch_back_applied_s,
            "watch": self.watch.to_dict() if self.watch else None, "timings": self.timings,
            "verdict": self.evidence.verdict.overall if self.evidence else None,
            "verdict_reasons": self.evidence.verdict.reasons() if self.evidence else [],
            "intent": self.intent, "takeover": self.takeover, "converged": self.converged,
            "revert": self.revert.to_dict() if self.revert else None,
            "lb_state": self.lb_state, "hooks": list(self.hooks),
            "canary": list(self.canary), "recorded": self.recorded,
        }
