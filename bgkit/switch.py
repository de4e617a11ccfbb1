"""The switch, written once. Providers only implement the load balancer primitives.

1. take the lease (owner, message, expiry renewed in the background while held)
2. read live/idle from the load balancer
3. fresh pre-switch sample of idle and live; pandas summary; evaluate the gates
4. refuse on ``fail``; stop for a human on ``inconclusive``; on ``pass`` ask approval
5. check the lease is still ours by writing the intended from/to into it; switch the
   load balancer; wait until the change is applied — and when the provider says it is
   still being applied (an OVH refresh task past ``timeout_s``), follow it for
   ``[switch].apply_grace_s`` more
6. watch the public address, judged continuously: the first breach ends it
7. on any failure after step 5: switch back automatically (the lease checked again
   first), and say why; when the state cannot be read, say "unknown" and leave the
   lease in place with its intent, so that nothing but a switch or rollback (which
   converge it) can take it over
8. release the lease; the previous pool keeps running, so rollback is one flip

**Recording what went live.** Once a watch passed, every host of the new live pool
records the release it serves and since when (``<root>/last-live``, :mod:`bgkit.ledger`),
and every host of the pool traffic left records when it left (a deploy leaves it alone
for ``[deploy].min_idle_s`` after that); a switch-back records that traffic left the
failing pool. The outcome names the release that went live and what was recorded.

**Converging.** A run that takes over a stale lease reads the intent its holder left
and the load balancer, then finishes or undoes what was started before anything else:
the target is live → it runs the watch the killed run never finished (or finishes its
switch-back) and switches back on a breach; only the killed run's change is staged,
unapplied → it discards it; a change is still being applied → it follows it first.
"Already live" is a verdict on fresh evidence too: the live pool is watched, and
switched back (if the other pool is healthy) or reported "needs attention" when it fails.

``rollback`` is the same algorithm aimed at the previous pool, and only to the release
that pool served when it was last live: its hosts must all still serve it (else it
refuses, naming what they serve now and the release to redeploy), and it must pass the
gates for that very release (errors, latency, the load balancer's view and servers).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from bgkit import lock as locking
from bgkit.analysis import evaluate
from bgkit.canary import hold as canary_hold
from bgkit.config import Config
from bgkit.errors import (
    ApplyPending,
    BgkitError,
    HookFailed,
    LeaseLost,
    LoadBalancerError,
    SplitUnsupported,
    UsageError,
)
from bgkit.hooks import HookName, HookResult, hook_environment, post_hook, pre_hook
from bgkit.lb.base import LbState, LoadBalancer, PoolName, other_pool
from bgkit.ledger import Ledger, SshLedger, rollback_target, stamp
from bgkit.outcome import LivePool, Revert, SwitchOutcome
from bgkit.verify import VerifyResult, verify
from bgkit.watch import WatchResult, watch
from bgkit.words import Outcome

__all__ = ["Revert", "SwitchOutcome", "rollback", "switch"]

Step = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def switch(config: Config, *, lb: LoadBalancer, expected_version: str, approve: bool,
           message: str = "switch", on_step: Step = _quiet,
           expected_live: PoolName | None = None, release: str | None = None,
           ledger: Ledger | None = None,
           canary: Sequence[int] | None = None) -> SwitchOutcome:
    """Move all traffic to the idle pool, which must serve ``expected_version`` (and, given
    ``release``, that very release id on every host).

    ``on_step`` hears each step as it starts (for progress displays). With
    ``expected_live`` (the live pool an operator was shown), a load balancer that no longer
    agrees is refused, after any killed run's change was converged. ``ledger`` reads and
    records what the hosts serve (default: over SSH). ``canary``: the percents of the
    canary steps, each held ``[switch].canary_hold_s`` (None: the configured
    ``[switch].canary``; empty: none).

    Raises:
        UsageError: a canary was asked for and ``lb`` can never split traffic (checked
            before anything runs, a ``pre_switch`` hook included).
        LockHeld: another deploy or switch is running.
        LoadBalancerError: the live pool could not even be read (nothing was changed).
    """
    steps = config.switch.canary_steps(canary)
    refusal = lb.split_refusal() if steps else None
    if refusal:
        shares = ", ".join(f"{percent}%" for percent, _ in steps)
        raise UsageError(f"a canary was asked for ({shares}, from [switch].canary or "
                         f"--canary), but {refusal}; nothing was changed")
    on_step("taking the deployment lock")
    with locking.held(locking.store_for(config), message=message, ttl_s=config.lock.ttl_s,
                      accept_intent=True) as lease:
        run = _Run(config, lb, lease, "switch", on_step, release=release,
                   ledger=ledger or SshLedger(config), canary_override=canary)
        ended = run.converge() or run.end_stray_split()
        if ended is not None:
            return ended
        if run.watched is not None and run.finished_intent(expected_version):
            return run.end(Outcome.ALREADY_LIVE, run.finished_note, run.watched_from,
                           run.watched_to, live=run.watched_to, watch=run.watched,
                           facts=_Facts(version=expected_version))
        live = lb.live_pool()
        idle = other_pool(live)
        if expected_live is not None and live != expected_live:
            return run.end(Outcome.REFUSED, _moved(expected_live, live), live, idle, live=live)
        on_step(f"sampling {idle} (idle) and {live} (live) before switching")
        evidence = _evidence(config, lb, expected_version=expected_version, live=live,
                             release=release, ledger=run.ledger)
        if _already_live(evidence, expected_version, release):
            return run.already_live(evidence, expected_version)
        return run.after(run.decide_and_move(live, idle, evidence, approve, expected_version))


def rollback(config: Config, *, lb: LoadBalancer, approve: bool,
             message: str = "rollback", on_step: Step = _quiet,
             expected_version: str | None = None,
             expected_live: PoolName | None = None,
             expected_release: str | None = None,
             ledger: Ledger | None = None) -> SwitchOutcome:
    """Move all traffic back to the other pool, only to the release it served when it was
    last live, if its hosts still serve it and it is healthy (and, with
    ``expected_release``/``expected_version`` and ``expected_live``, still what the
    operator was shown)."""
    on_step("taking the deployment lock")
    with locking.held(locking.store_for(config), message=message, ttl_s=config.lock.ttl_s,
                      accept_intent=True) as lease:
        run = _Run(config, lb, lease, "rollback", on_step, ledger=ledger or SshLedger(config))
        ended = run.converge() or run.end_stray_split()
        if ended is not None:
            return ended
        if run.watched is not None and run.finished_intent(None):
            return run.end(Outcome.ROLLED_BACK, run.finished_note, run.watched_from,
                           run.watched_to, live=run.watched_to, watch=run.watched)
        live = lb.live_pool()
        previous = other_pool(live)
        if expected_live is not None and live != expected_live:
            return run.end(Outcome.REFUSED, _moved(expected_live, live), live, previous, live=live)
        on_step(f"reading which release {previous} (the previous pool) served when it was "
                "last live")
        target = rollback_target(run.ledger, previous)
        refused = f"refusing to roll back to the {previous} pool: "
        if not target.ok:
            return run.end(Outcome.REFUSED, refused + target.refusal, live, previous, live=live)
        run.release = target.release
        shown = expected_release or expected_version
        if shown is not None and shown not in (target.release, target.version):
            return run.end(Outcome.REFUSED, f"{refused}it now goes back to {target.release}, "
                           f"not {shown} as when you decided", live, previous, live=live)
        on_step(f"checking that {previous} is healthy and serves {target.release}")
        evidence = _evidence(config, lb, expected_version=target.version, live=live,
                             release=target.release, ledger=run.ledger)
        if evidence.verdict.overall != "pass":
            return run.end(Outcome.REFUSED, refused + "; ".join(evidence.verdict.reasons()),
                           live, previous, live=live, facts=_Facts(evidence=evidence))
        return run.after(run.decide_and_move(live, previous, evidence, approve,
                                             target.version))


def _moved(expected: PoolName, live: PoolName) -> str:
    return (f"the live pool changed since the preview ({expected} then, {live} now): nothing "
            "was done; run the preview again to decide on fresh evidence")


def _lenient(config: Config) -> Config:
    """The gates for a pool that serves the previous release: any one version."""
    return config.model_copy(update={"gates": config.gates.model_copy(
        update={"require_version": False})})


def _evidence(config: Config, lb: LoadBalancer, *, expected_version: str | None,
              live: PoolName, release: str | None, ledger: Ledger) -> VerifyResult:
    """Fresh samples, judged; ``live`` was just read, and is not read again."""
    return verify(config, lb=lb, expected_version=expected_version,
                  samples_per_host=config.switch.samples_per_host,
                  rate_per_s=config.switch.sample_rate_per_s, live_pool=live, release=release,
                  ledger=ledger)


def _already_live(evidence: VerifyResult, expected_version: str, release: str | None) -> bool:
    if release is not None:  # the release itself, read over SSH, not its version label
        def serves(pool: PoolName) -> bool:
            hosts = [h for h in evidence.served if h.pool == pool]
            return bool(hosts) and all(h.release == release and not h.error for h in hosts)

        return serves(evidence.live_pool) and not serves(evidence.idle_pool)
    hosts = evidence.samples[evidence.samples["target"] == "host"]
    live = hosts[hosts["pool"] == evidence.live_pool]
    idle = hosts[hosts["pool"] == evidence.idle_pool]
    return bool(len(live)) and bool((live["version"] == expected_version).all()) and \
        not bool((idle["version"] == expected_version).all())


def _any_version(evidence: VerifyResult) -> pd.DataFrame:
    """The evidence's samples with answers from another version counted as answers: the
    idle pool was sampled expecting the new release, but serves the previous one."""
    samples = evidence.samples.copy()
    other = samples["error"] == "wrong_version"
    samples.loc[other, "ok"] = True
    samples.loc[other, "error"] = ""
    return samples


def _single(releases: list[str]) -> str | None:
    return releases[0] if len(releases) == 1 else None


def _live_version(evidence: VerifyResult) -> str | None:
    """The one version the live pool's hosts answered in the evidence (None: several)."""
    samples = evidence.samples
    versions = set(samples.loc[(samples["target"] == "host")
                               & (samples["pool"] == evidence.live_pool), "version"].dropna())
    return str(next(iter(versions))) if len(versions) == 1 else None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Facts:
    """What an outcome reports about the change being made: carried, not re-read."""

    evidence: VerifyResult | None = None
    version: str | None = None
    applied_s: float | None = None


NO_FACTS = _Facts()


@dataclass(slots=True)
class _Run:
    """One switch or rollback under one lease: the steps after the lease is taken."""

    config: Config
    lb: LoadBalancer
    lease: locking.Lease
    action: str
    on_step: Step
    ledger: Ledger
    started: float = field(default_factory=time.monotonic)
    takeover: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    intent: dict[str, Any] | None = None
    watched: WatchResult | None = None  # the watch of a killed run's change, if it passed
    watched_from: PoolName = "blue"
    watched_to: PoolName = "green"
    watched_intent: dict[str, Any] | None = None
    finished_note: str = ""
    release: str | None = None  # the release id being made live, when the caller knows it
    recorded: dict[str, Any] | None = None  # what was recorded on the hosts (last-live)
    hooks: list[dict[str, Any]] = field(default_factory=list)  # hooks that ran, as records
    canary_override: Sequence[int] | None = None  # the caller's canary percents
    canary_steps: list[dict[str, Any]] = field(default_factory=list)  # held, as records
    split_to: PoolName | None = None  # the pool a canary split this run made sends traffic to

    def __post_init__(self) -> None:
        took = self.lease.took_over
        if took:
            previous = locking.LeaseInfo.from_json(
                {k: v for k, v in took.items() if k != "reason"})
            self.takeover = {**previous.summary(), "reason": took.get("reason")}
            self.on_step(f"took over the deployment lock of {previous.owner} "
                         f"({took.get('reason')})")

    # --- the outcome --------------------------------------------------------------------

    def end(self, outcome: str, reason: str, from_pool: PoolName, to_pool: PoolName, *,
            facts: _Facts = NO_FACTS, live: LivePool | None = None,
            state: LbState | None = None, watch: WatchResult | None = None,
            back_s: float | None = None, revert: Revert | None = None) -> SwitchOutcome:
        evidence, version, applied_s = facts.evidence, facts.version, facts.applied_s
        if live is None:
            live = state.live if state is not None and state.settled and state.live else \
                "unknown"
        timings = {"total_s": time.monotonic() - self.started}
        if applied_s is not None:
            timings["applied_s"] = applied_s
        if watch is not None:
            timings["watch_s"] = watch.duration_s
        return SwitchOutcome(
            self.action, outcome, reason, from_pool, to_pool, live, evidence, applied_s,
            watch, back_s, timings, version=version, intent=self.intent,
            takeover=self.takeover, converged="; ".join(self.notes), revert=revert,
            lb_state=state.describe() if state is not None else "", release=self.release,
            recorded=self.recorded, hooks=tuple(self.hooks), canary=tuple(self.canary_steps))

    def needs_attention(self, why: str, from_pool: PoolName, to_pool: PoolName, *,
                        facts: _Facts = NO_FACTS, state: LbState | None = None,
                        watch: WatchResult | None = None) -> SwitchOutcome:
        """End without a known, watched pool: keep the lease (with its intent) in place."""
        self.on_step(f"needs attention: {why}")
        if state is None or not state.settled:
            self.lease.leave(f"a {self.action} could not bring traffic to a known pool: {why}")
            why += ("; the deployment lock is kept with the change it was making, so that "
                    "only `bgkit switch` or `bgkit rollback` (which finish or undo it) can "
                    "take it over; `bgkit lock status` shows it")
        return self.end(Outcome.NEEDS_ATTENTION, why, from_pool, to_pool, facts=facts, state=state,
                        watch=watch)

    # --- reading the load balancer, never guessing ---------------------------------------

    def state(self, *, wait_s: float = 0.0) -> LbState | str:
        """The load balancer's state, following applications in progress for up to
        ``wait_s``; a string saying why when it cannot be read."""
        try:
            state = self.lb.state()
            if state.applying and wait_s > 0:
                self.on_step(f"{state.applying}; following it for up to {wait_s:g} s")
                state = self.lb.state(wait_s=wait_s)
        except LoadBalancerError as error:
            return f"the load balancer cannot be read: {error}"
        if state.detail and state.settled:
            self.notes.append(state.detail)
        return state

    def record(self, intent: dict[str, Any] | None) -> None:
        """Write ``intent`` into the lease: the ownership check before every LB change."""
        self.lease.record_intent(intent)
        self.intent = intent

    def mark(self, *, went: PoolName | None, left: PoolName | None, went_at: datetime,
             left_at: datetime, release: str | None) -> None:
        """Record on the hosts that ``went`` went live at ``went_at`` (each host records the
        release it serves: ``release``, when known) and that traffic left ``left`` at
        ``left_at``. A host that cannot record it is noted, never a failure: a rollback to
        a pool without a truthful record is refused, and a deploy waits
        ``[deploy].min_idle_s`` from when it looks."""
        recorded: dict[str, Any] = {}
        problems: list[str] = []
        try:
            if left is not None:
                problems += self.ledger.left_live(left, at=left_at)
                recorded["left_live"] = {"pool": left, "at": stamp(left_at)}
            if went is not None:
                problems += self.ledger.went_live(went, at=went_at)
                recorded["went_live"] = {"pool": went, "release": release,
                                         "at": stamp(went_at)}
        except BgkitError as error:
            problems.append(str(error))
        if problems:
            recorded["problems"] = problems
            self.notes.append("could not record on every host which release went live and "
                              "when traffic left (a rollback there is refused until a switch "
                              "records it): " + "; ".join(problems))
        self.recorded = recorded

    # --- converging after a killed run -----------------------------------------------------

    def converge(self) -> SwitchOutcome | None:
        """Finish or undo what the holder of a taken-over lease left; None to go on."""
        took = self.lease.took_over or {}
        left = took.get("intent")
        if not left or left.get("action") not in ("switch", "rollback"):
            return None
        frm, to = left["from_pool"], left["to_pool"]
        who = f"{took.get('owner')}'s {left['action']} from {frm} to {to}"
        self.record(left)  # inherited: kept in the lease until it is resolved
        self.on_step(f"the lease it took over was in the middle of {who} "
                     f"({left.get('phase')}); reading the load balancer")
        state = self.state(wait_s=self.config.switch.apply_grace_s)
        if isinstance(state, str):
            return self.needs_attention(f"{who} was interrupted and {state}", frm, to)
        if state.canary and state.canary_pool is not None:
            self.split_to = state.canary_pool
            ended = self.end_split()
            if ended is not None:
                return self.needs_attention(f"{who} left a canary of {state.canary}% to "
                                            f"{state.canary_pool} and {ended}", frm, to,
                                            state=state)
            self.notes.append(f"{who} left a canary of {state.canary}% of requests to "
                              f"{state.canary_pool}; bgkit ended it")
        if state.live == frm:
            self.notes.append(f"{who} had not moved traffic: {frm} is live")
            self.record(None)
            return None
        if state.live == to:
            return self._finish_left_change(left, who, state)
        if not state.applying and state.staged == to and state.pending == 1:
            return self._discard_left_change(left, who, state)
        return self.needs_attention(
            f"{who} was interrupted and the load balancer's state is {state.describe()}; "
            "bgkit will not guess which pool serves traffic", frm, to, state=state)

    def _finish_left_change(self, left: dict[str, Any], who: str,
                            state: LbState) -> SwitchOutcome | None:
        frm, to, version = left["from_pool"], left["to_pool"], left.get("version")
        if left.get("phase") == "switching back":
            self.notes.append(f"{who} was switching back ({left.get('reason')}); "
                              "bgkit finished that switch-back")
            return self.switch_back(frm, to, f"finishing the switch-back of {who}: "
                                    f"{left.get('reason')}", None, _Facts(version=version))
        if not version:
            self.notes.append(f"{who} is live; its release is unknown, so it is not watched")
            self.record(None)
            return None
        self.on_step(f"{to} went live but its watch never finished; watching it now")
        self.record({**left, "phase": "watching", "since": _now().isoformat()})
        applied_at = _now()
        result, _ = watch(self.config, lb=self.lb, live_pool=to, expected_version=version,
                          switched_at=applied_at, applied_at=applied_at,
                          expected_release=left.get("release"))
        if not result.ok:
            self.notes.append(f"{who} went live unwatched; bgkit watched it and it failed")
            return self._back_if_healthy(frm, to, "the watch of the change the killed run "
                                         "never watched failed: " + "; ".join(result.reasons),
                                         result, _Facts(version=version))
        self.mark(went=to, left=frm, went_at=applied_at, left_at=applied_at,
                  release=left.get("release"))
        self.record(None)
        self.watched, self.watched_from, self.watched_to = result, frm, to
        self.watched_intent = left
        self.finished_note = (f"{who} went live but was never watched; bgkit watched it: "
                              "the watch passed")
        self.notes.append(self.finished_note)
        return None

    def end_stray_split(self) -> SwitchOutcome | None:
        """End a canary split no lease speaks for (the run that made it ended without
        ending it), before anything else: every switch and rollback starts with all traffic
        on the live pool. None to go on (noted when a split was ended); an outcome when
        it could not be ended. Skipped for a load balancer that can never split."""
        if self.lb.split_refusal() is not None:
            return None
        state = self.state()  # notes any repair the provider made (a split half-ended)
        if isinstance(state, str):
            return None  # the live pool's read, next, says why
        if not state.canary or state.canary_pool is None:
            return None
        stray = f"a canary split of {state.canary}% of requests to {state.canary_pool}"
        self.split_to = state.canary_pool
        ended = self.end_split()
        if ended is not None:
            return self.needs_attention(f"{stray} was left in place and {ended}",
                                        state.live or "blue", state.canary_pool, state=state)
        self.notes.append(f"{stray} was left in place by a run that did not end it; bgkit "
                          "ended it before anything else")
        return None

    def _discard_left_change(self, left: dict[str, Any], who: str,
                             state: LbState) -> SwitchOutcome | None:
        frm, to = left["from_pool"], left["to_pool"]
        self.on_step(f"{who} staged {to} without applying it; undoing that staged change")
        try:
            self.record({**left, "phase": "undoing", "since": _now().isoformat()})
            after = self.lb.discard_staged(frm)
        except LeaseLost as lost:
            return self.needs_attention(str(lost), frm, to, state=state)
        except LoadBalancerError as error:
            return self.needs_attention(f"{who} left {to} staged and undoing it failed: "
                                        f"{error}", frm, to, state=state)
        self.notes.append(f"{who} had staged {to} without applying it (its only pending "
                          f"change); bgkit undid it: {after.describe()}")
        self.record(None)
        return None

    def finished_intent(self, version: str | None) -> bool:
        """Whether the converged change is what this run was asked to do."""
        left = self.watched_intent or {}
        if left.get("action") != self.action:
            return False
        return version is None or left.get("version") == version

    # --- already live: a verdict on fresh evidence ------------------------------------------

    def already_live(self, evidence: VerifyResult, version: str) -> SwitchOutcome:
        live, other = evidence.live_pool, evidence.idle_pool
        self.on_step(f"{live} already serves {version}; watching it before saying so")
        now = _now()
        result, _ = watch(self.config, lb=self.lb, live_pool=live, expected_version=version,
                          switched_at=now, applied_at=now, expected_release=self.release)
        facts = _Facts(evidence=evidence, version=version)
        if result.ok:
            self.release = self.release or _single(evidence.releases(live))
            self.mark(went=live, left=None, went_at=now, left_at=now, release=self.release)
            return self.end(Outcome.ALREADY_LIVE, f"the live pool {live} already serves {version} "
                            "and a fresh watch of it passed", live, live, live=live,
                            facts=facts, watch=result)
        why = f"the live pool {live} serves {version} but fails: " + "; ".join(result.reasons)
        fallback = evaluate(_any_version(evidence), _lenient(self.config).gates,
                            idle_pool=other, live_pool=live, expected_version=None,
                            lb_servers=evidence.lb_servers)
        if fallback.overall != "pass":
            return self.needs_attention(
                f"{why}; the other pool {other} is not healthy enough to switch back to ("
                + "; ".join(fallback.reasons()) + ")", live, other,
                facts=facts, state=LbState(live=live), watch=result)
        return self.switch_back(other, live, why, result, facts)

    # --- deciding and moving -----------------------------------------------------------------

    def decide_and_move(self, live: PoolName, target: PoolName, evidence: VerifyResult,
                        approve: bool, version: str) -> SwitchOutcome:
        verdict = evidence.verdict.overall
        reasons = "; ".join(evidence.verdict.reasons())
        facts = _Facts(evidence=evidence, version=version)
        if verdict == "fail":
            return self.end(Outcome.REFUSED, f"the gates failed: {reasons}", live, target,
                            live=live, facts=facts)
        if verdict == "inconclusive":
            return self.end(Outcome.INCONCLUSIVE, f"not enough evidence, a human must decide: "
                            f"{reasons}", live, target, live=live, facts=facts)
        if not approve:
            return self.end(Outcome.NOT_APPROVED, f"the gates passed but the {self.action} "
                            "was not approved (--approve on the command line, approve=True "
                            "in a notebook, or its button)", live, target, live=live,
                            facts=facts)
        if self.action == "switch":
            environment = hook_environment(self.config, "pre_switch", pool=target,
                                           live_pool=live, release=self.release or "",
                                           version=version)
            try:
                self.ran(pre_hook(self.config, "pre_switch", environment))
            except HookFailed as failed:
                self.ran(failed.result)
                return self.end(Outcome.REFUSED, str(failed), live, target, live=live,
                                facts=facts)
            try:
                stopped = self.run_canary(live, target, evidence, version)
            except BaseException:  # interrupted between steps (a lease write, a progress
                self.end_split()  # line): never leave the split behind
                raise
            if stopped is not None:
                return stopped
        try:
            outcome = self.move(live, target, evidence, version)
        except BaseException:  # interrupted before the switch: never leave the split behind
            self.end_split()
            raise
        if self.split_to is not None and outcome.ended == Outcome.REFUSED:  # refused right
            # before the switch, after the canary's split: end the split too
            return self.canary_stopped(outcome.reason.replace("; nothing was changed", ""),
                                       live, target, facts, ended=outcome.ended,
                                       live_now=outcome.live_pool)
        return outcome

    # --- the canary ---------------------------------------------------------------------------

    def run_canary(self, live: PoolName, target: PoolName, evidence: VerifyResult,
                   version: str) -> SwitchOutcome | None:
        """Each canary step: split its share to ``target``, hold and judge; None when every
        step passed (the split stays until the full switch ends it), else the outcome."""
        steps = self.config.switch.canary_steps(self.canary_override)
        if not steps:
            return None
        facts = _Facts(evidence=evidence, version=version)
        disagreement = self.still_live(live, target, facts)
        if disagreement is not None:
            return disagreement
        versions = {target: version, live: _live_version(evidence)}
        for percent, hold_s in steps:
            try:
                self.record({"action": self.action, "from_pool": live, "to_pool": target,
                             "version": version, "release": self.release, "phase": "canary",
                             "percent": percent, "since": _now().isoformat()})
            except LeaseLost as lost:
                return self.canary_stopped(f"{lost}", live, target, facts)
            self.on_step(f"canary: {percent}% of requests to {target} for {hold_s:g} s")
            self.split_to = target  # before the call: whatever happens in it, the split ends
            try:
                self.lb.split(target, percent, timeout_s=self.config.switch.timeout_s)
            except SplitUnsupported as error:
                return self.canary_stopped(f"a canary was asked for, but {error}", live,
                                           target, facts, ended=Outcome.REFUSED)
            except LoadBalancerError as error:
                return self.canary_stopped(f"the load balancer failed to split {percent}% "
                                           f"to {target}: {error}", live, target, facts)
            except BaseException as error:  # interrupted (or refused) mid-split
                self.canary_stopped(f"the canary stopped ({type(error).__name__})", live,
                                    target, facts)
                raise
            try:
                held, _ = canary_hold(self.config, lb=self.lb, canary=target, live=live,
                                      percent=percent, hold_s=hold_s, versions=versions)
            except BaseException as error:  # interrupted: never leave a split behind
                self.canary_stopped(f"the canary stopped ({type(error).__name__})", live,
                                    target, facts)
                raise
            self.canary_steps.append(held.to_dict())
            self.on_step(held.describe())
            if not held.ok:
                return self.canary_stopped(f"the canary of {percent}% to {target} failed: "
                                           + "; ".join(held.reasons), live, target, facts)
        return None

    def canary_stopped(self, why: str, live: PoolName, target: PoolName, facts: _Facts, *,
                       ended: str = Outcome.CANARY_FAILED,
                       live_now: LivePool | None = None) -> SwitchOutcome:
        """End the split (all traffic back on the live pool: ``live``, or ``live_now`` when
        the load balancer said another) and end the run as ``ended``, saying why."""
        live_now = live_now or live
        failed = self.end_split()
        if failed is not None:
            return self.needs_attention(f"{why}; {failed}", live, target, facts=facts,
                                        state=LbState(live=live_now)
                                        if live_now != "unknown" else None)
        with contextlib.suppress(LeaseLost):  # the split is ended; the lease is not ours
            self.record(None)
        back = f"all traffic is on {live_now} again" if live_now != "unknown" else \
            "all traffic is on the live pool again"
        return self.end(ended, f"{why}; the canary was ended: {back}", live, target,
                        live=live_now, facts=facts)

    def end_split(self) -> str | None:
        """Set the canary share back to 0 if this run split traffic; None once done (or
        nothing to do), else why it could not (tried three times)."""
        if self.split_to is None:
            return None
        error: LoadBalancerError | None = None
        for _ in range(3):
            try:
                self.lb.split(self.split_to, 0, timeout_s=self.config.switch.timeout_s)
            except LoadBalancerError as failed:
                error = failed
                continue
            self.split_to = None
            return None
        return f"ending the canary split failed: {error}"

    def ran(self, hook: HookResult | None) -> None:
        """Keep a hook's result for the outcome (``None``: no such hook is set)."""
        if hook is not None:
            self.hooks.append(hook.to_dict())

    def after(self, outcome: SwitchOutcome) -> SwitchOutcome:
        """Run ``post_switch`` / ``post_rollback`` after a change that went live and was
        watched; its failure is recorded and reported, the change stands."""
        names: dict[str, HookName] = {Outcome.SWITCHED: "post_switch",
                                      Outcome.ROLLED_BACK: "post_rollback"}
        name = names.get(outcome.ended)
        if name is None or outcome.live_pool == "unknown":
            return outcome
        environment = hook_environment(self.config, name, pool=outcome.to_pool,
                                       live_pool=outcome.live_pool,
                                       release=outcome.release or "",
                                       version=outcome.version or "")
        self.ran(post_hook(self.config, name, environment))
        return replace(outcome, hooks=tuple(self.hooks))

    def move(self, live: PoolName, target: PoolName, evidence: VerifyResult,
             version: str) -> SwitchOutcome:
        facts = _Facts(evidence=evidence, version=version)
        disagreement = self.still_live(live, target, facts)
        if disagreement is not None:
            return disagreement
        intent = {"action": self.action, "from_pool": live, "to_pool": target,
                  "version": version, "release": self.release, "phase": "switching",
                  "since": _now().isoformat()}
        try:
            self.record(intent)
        except LeaseLost as lost:
            return self.end(Outcome.REFUSED, f"{lost}; nothing was changed", live, target,
                            live=live, facts=facts)
        self.on_step(f"switching the load balancer from {live} to {target}")
        switched_at = _now()
        started = time.monotonic()
        try:
            applied_s = self.lb.switch(target, timeout_s=self.config.switch.timeout_s).applied_s
        except ApplyPending as pending:
            settled = self.settle_pending(live, target, str(pending), facts)
            if isinstance(settled, SwitchOutcome):
                return settled
            applied_s = time.monotonic() - started
        except LoadBalancerError as error:
            return self.after_failed_change(live, target, f"the load balancer failed "
                                            f"mid-switch: {error}", facts)
        except BaseException as error:  # interrupted mid-switch: never leave it unwatched
            self.after_failed_change(live, target, f"the switch was interrupted "
                                     f"({type(error).__name__})", facts)
            raise
        return self.watch_new(live, target, switched_at, applied_s, evidence, version)

    def still_live(self, live: PoolName, target: PoolName,
                   facts: _Facts) -> SwitchOutcome | None:
        """The load balancer read once more, right before acting: a refusal when it no
        longer says ``live`` (someone switched while bgkit sampled), else None."""
        try:
            now_live = self.lb.live_pool()
        except LoadBalancerError as error:
            return self.end(Outcome.REFUSED, f"the load balancer could not be read right before "
                            f"the switch ({error}); nothing was changed", live, target,
                            facts=facts, live="unknown")
        if now_live == live:
            return None
        return self.end(Outcome.REFUSED, f"the load balancer changed while bgkit sampled: "
                        f"{now_live} is live now, not {live}; nothing was changed", live,
                        target, live=now_live, facts=facts)

    def settle_pending(self, live: PoolName, target: PoolName, why: str,
                       facts: _Facts) -> SwitchOutcome | None:
        """The change is still being applied: follow it; None once ``target`` is live."""
        grace = self.config.switch.apply_grace_s
        self.on_step(f"the change is still being applied after "
                     f"{self.config.switch.timeout_s:g} s; following it for up to {grace:g} s")
        state = self.state(wait_s=grace)
        if isinstance(state, LbState) and state.live == target:
            self.notes.append(f"the change took longer than [switch].timeout_s; bgkit "
                              f"followed it until {target} was live")
            return None
        return self.after_failed_change(live, target, why, facts, known=state)

    def watch_new(self, live: PoolName, target: PoolName, switched_at: datetime,
                  applied_s: float, evidence: VerifyResult | None,
                  version: str) -> SwitchOutcome:
        facts = _Facts(evidence=evidence, version=version, applied_s=applied_s)
        applied_at = _now()
        assert self.intent is not None
        # From here on an interrupt (SIGTERM in a notebook lands anywhere, a progress print
        # included) switches back: the new pool is never left unwatched.
        try:
            ended = self.end_split()  # the canary's share went to target, now live: all of it
            if ended is not None:
                self.notes.append(f"{target} is live; {ended}")
            try:
                self.record({**self.intent, "phase": "watching",
                             "since": applied_at.isoformat()})
            except LeaseLost as lost:
                return self.needs_attention(f"{target} is live but {lost}; it is not watched",
                                            live, target, facts=facts,
                                            state=LbState(live=target))
            self.on_step(f"applied in {applied_s:.3f} s; watching the public address for up "
                         f"to {self.config.switch.watch_s:g} s")
            result, _ = watch(self.config, lb=self.lb, live_pool=target,
                              expected_version=version, switched_at=switched_at,
                              applied_at=applied_at, expected_release=self.release)
        except BaseException as error:  # interrupted or broken watch: never leave it unwatched
            self.switch_back(live, target, f"the watch stopped ({type(error).__name__}: "
                             f"{error})", None, facts)
            raise
        if not result.ok:
            self.on_step(f"the watch failed ({result.breach or result.reasons[0]}); "
                         f"switching back to {live}")
            return self.switch_back(live, target, "the post-switch watch failed: "
                                    + "; ".join(result.reasons), result, facts)
        if evidence is not None:
            self.release = self.release or _single(evidence.releases(target))
        self.mark(went=target, left=live, went_at=applied_at, left_at=switched_at,
                  release=self.release)
        self.record(None)
        done = Outcome.SWITCHED if self.action == "switch" else Outcome.ROLLED_BACK
        return self.end(done, f"traffic moved from {live} to {target} in {applied_s:.3f} s; "
                        "the watch passed", live, target, live=target, watch=result,
                        facts=facts)

    # --- when it goes wrong ------------------------------------------------------------------

    def after_failed_change(self, live: PoolName, target: PoolName, why: str,
                            facts: _Facts, *,
                            known: LbState | str | None = None) -> SwitchOutcome:
        """Step 7 after a failed change: read what happened, then undo it if it is safe."""
        ended = self.end_split()
        if ended is not None:
            why += f"; {ended}"
        state = known if known is not None else \
            self.state(wait_s=self.config.switch.apply_grace_s)
        if isinstance(state, str):
            return self.needs_attention(f"{why}; then {state}", live, target, facts=facts)
        if state.live == live:
            self.record(None)
            return self.end(Outcome.SWITCH_FAILED, f"{why}; traffic is on {live}", live, target,
                            state=state, facts=facts)
        if state.live == target:
            return self.switch_back(live, target, why, None, facts)
        if not state.applying and state.staged == target and state.pending == 1:
            try:
                after = self.lb.discard_staged(live)
            except LoadBalancerError as error:
                return self.needs_attention(f"{why}; undoing the staged change failed: {error}",
                                            live, target, state=state, facts=facts)
            self.record(None)
            return self.end(Outcome.SWITCH_FAILED, f"{why}; bgkit undid the staged change; "
                            f"traffic is on {live}", live, target, state=after, facts=facts)
        return self.needs_attention(f"{why}; the load balancer's state is "
                                    f"{state.describe()}", live, target, state=state,
                                    facts=facts)

    def _back_if_healthy(self, back_to: PoolName, failing: PoolName, why: str,
                         result: WatchResult, facts: _Facts) -> SwitchOutcome:
        try:
            sick = [f"{s.name} {s.status}" for s in self.lb.backend_health()
                    if s.pool == back_to and not s.healthy]
        except LoadBalancerError as error:
            sick = [f"its health cannot be read ({error})"]
        if sick:
            return self.needs_attention(f"{why}; {back_to} is not healthy in the load "
                                        f"balancer either ({'; '.join(sick)})", back_to,
                                        failing, state=LbState(live=failing), watch=result,
                                        facts=facts)
        return self.switch_back(back_to, failing, why, result, facts)

    def switch_back(self, back_to: PoolName, failing: PoolName, why: str,
                    result: WatchResult | None, facts: _Facts) -> SwitchOutcome:
        """Put traffic back on ``back_to`` (the pool that served before), and say so."""
        started_at = _now()
        ended = self.end_split()
        if ended is not None:
            why += f"; {ended}"
        try:
            self.record({"action": self.action, "from_pool": back_to, "to_pool": failing,
                         "version": facts.version, "phase": "switching back",
                         "reason": why, "since": started_at.isoformat()})
        except LeaseLost as lost:
            return self.needs_attention(f"{why}; not switching back: {lost}", back_to, failing,
                                        state=LbState(live=failing), watch=result,
                                        facts=facts)
        self.on_step(f"switching back to {back_to}")
        back_s: float | None = None
        try:
            back_s = self.lb.switch(back_to, timeout_s=self.config.switch.timeout_s).applied_s
        except LoadBalancerError as error:
            state = self.state(wait_s=self.config.switch.apply_grace_s
                               if isinstance(error, ApplyPending) else 0.0)
            if not isinstance(state, LbState) or state.live != back_to:
                said = state if isinstance(state, str) else state.describe()
                return self.needs_attention(f"{why}; then switching back to {back_to} failed "
                                            f"({error}); the load balancer's state is {said}",
                                            back_to, failing, watch=result,
                                            state=state if isinstance(state, LbState) else None,
                                            facts=facts)
        applied_at = _now()
        state = self.state()
        self.mark(went=back_to, left=failing, went_at=applied_at, left_at=applied_at,
                  release=None)
        self.record(None)
        revert = Revert(why, result.first_failure_at if result else None,
                        result.breached_at if result else None, started_at, applied_at)
        return self.end(Outcome.SWITCHED_BACK, f"{why}; traffic is back on {back_to}", back_to,
                        failing, state=state if isinstance(state, LbState) else None,
                        live=None if isinstance(state, LbState) else "unknown",
                        watch=result, back_s=back_s, revert=revert, facts=facts)
