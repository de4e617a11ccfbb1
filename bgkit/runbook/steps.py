"""One call per notebook step: do the work, show it, record it.

Each function shows its results as tables (``IPython.display``), records them with
``record()`` for the archive, and re-raises a failure after recording it, so an archived
run always holds the evidence of what happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bgkit.config import Config
from bgkit.errors import DeployError
from bgkit.lb.base import LoadBalancer, other_pool
from bgkit.runbook.record import record

__all__ = ["decide_step", "deploy_plan", "deploy_step", "release_picker", "rollback_preview",
           "switch_preview", "verify_step"]


def _show(value: Any) -> None:
    from IPython.display import display

    display(value)


def _png(data: bytes) -> Any:
    from IPython.display import Image

    return Image(data=data, format="png")


def deploy_plan(config: Config, *, lb: LoadBalancer) -> pd.DataFrame:
    """Which pool is live, which will receive the release, and its hosts; recorded."""
    live = lb.live_pool()
    idle = other_pool(live)
    print(f"live pool: {live} (serving traffic; bgkit will not touch it)")
    print(f"idle pool: {idle} (will receive the release)")
    plan = pd.DataFrame([
        {"pool": pool, "role": "live" if pool == live else "idle (target)",
         "host": host.address, "ssh_port": host.port, "user": host.user,
         "deploy_root": host.deploy_root}
        for pool in ("blue", "green") for host in config.pools.get(pool).hosts
    ])
    record("plan", {"live_pool": live, "target_pool": idle})
    return plan


def release_picker(config: Config, *, lb: LoadBalancer) -> Any:
    """Interactive: pick a built release and deploy it to the idle pool with one click."""
    import ipywidgets as widgets

    from bgkit.errors import BgkitError

    built = sorted(config.dist_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime,
                   reverse=True)
    idle = other_pool(lb.live_pool())
    picker = widgets.Dropdown(options=[(p.name, str(p)) for p in built],
                              description="release", layout=widgets.Layout(width="520px"))
    button = widgets.Button(description=f"Deploy to {idle} (idle)", disabled=not built,
                            button_style="primary", layout=widgets.Layout(width="260px"))
    output = widgets.Output()

    def clicked(_: Any) -> None:
        button.disabled = True
        with output:
            try:
                result = deploy_step(config, release=str(picker.value), lb=lb)
                _show(result.table())
                button.description = "deployed"
            except BgkitError as error:
                print(f"error: {error}")
                button.disabled = False

    button.on_click(clicked)
    note = widgets.HTML("<b>No release in dist/: run 01_build first.</b>" if not built else
                        f"<b>Pick the release for the {idle} pool, then deploy.</b>")
    box = widgets.VBox([note, picker, button, output])
    _show(box)
    return box


def deploy_step(config: Config, *, release: str = "", lb: LoadBalancer | None = None) -> Any:
    """Deploy to the idle pool with per-host progress; record the per-host table."""
    from bgkit.deploy import deploy, hosts_table
    from bgkit.progress import LineProgress

    try:
        result = deploy(config, release=Path(release) if release else None, lb=lb,
                        progress=LineProgress())
    except DeployError as error:
        table = hosts_table(error.results)
        record("deploy", {"ok": False, "error": str(error)})
        record("hosts", table)
        _show(table)
        raise
    record("deploy", {"ok": True, "release": result.release, "sha256": result.sha256,
                      "pool": result.pool, "live_pool": result.live_pool,
                      "moved": result.moved, "lock_takeover": result.lock_takeover})
    record("hosts", result.table())
    return result


def verify_step(config: Config, *, lb: LoadBalancer, release: str = "",
                samples_per_host: int = 0, outcome: bool = True) -> Any:
    """Sample, judge, show and record; with ``outcome``, a fail or inconclusive verdict
    becomes the run's outcome."""
    from bgkit.verify import expected_release_version

    expected = expected_release_version(config, Path(release) if release else None)
    live = lb.live_pool()
    print(f"live pool: {live}; idle pool: {other_pool(live)}; the idle pool must answer "
          f"version {expected}")
    return _verify_and_show(config, lb=lb, expected=expected,
                            samples_per_host=samples_per_host, outcome=outcome)


def rollback_preview(config: Config, *, lb: LoadBalancer) -> Any:
    """The previous pool's health, judged without a required version (it serves the
    previous release); shown and recorded, nothing changed."""
    live = lb.live_pool()
    print(f"live pool: {live}; a rollback would move traffic to {other_pool(live)}")
    lenient = config.model_copy(update={"gates": config.gates.model_copy(
        update={"require_version": False})})
    return _verify_and_show(lenient, lb=lb, expected=None,
                            samples_per_host=config.switch.samples_per_host, outcome=False)


def _verify_and_show(config: Config, *, lb: LoadBalancer, expected: str | None,
                     samples_per_host: int, outcome: bool) -> Any:
    from bgkit import plots
    from bgkit.runbook.display import styled_gates, styled_summary, verdict_banner
    from bgkit.verify import verify

    result = verify(config, lb=lb, expected_version=expected,
                    samples_per_host=samples_per_host or None)
    verdict = result.verdict
    record("verify", result.to_dict())
    record("summary", verdict.summary)
    record("gates", verdict.gate_table())
    record("lb_view", result.lb_table())
    record("samples", result.samples)
    _show(styled_summary(verdict.summary, config.gates, idle_pool=result.idle_pool))
    _show(result.lb_table())
    for figure in (plots.latency_cdf(result.samples, max_p99_ms=config.gates.max_p99_ms),
                   plots.latency_by_host(result.samples), plots.over_time(result.samples)):
        _show(_png(plots.figure_to_png(figure)))
    _show(styled_gates(verdict.gate_table()))
    _show(verdict_banner(verdict.verdict, verdict.reasons()))
    if outcome and verdict.verdict != "pass":
        record("outcome", "failed" if verdict.verdict == "fail" else "inconclusive")
        record("outcome_reason", "; ".join(verdict.reasons()))
    return result


def _record_outcome(outcome: Any) -> None:
    """Record a switch or rollback and make its outcome the run's (unless it succeeded)."""
    record("switch", outcome.to_dict())
    if outcome.watch is not None:
        record("watch", outcome.watch.to_dict())
    if outcome.exit_code != 0:
        record("outcome", outcome.outcome)
        record("outcome_reason", outcome.reason)


def _show_outcome(outcome: Any) -> None:
    from bgkit.runbook.display import banner

    details = [outcome.reason, f"traffic is on {outcome.live_pool}"]
    if outcome.applied_s is not None:
        details.append(f"the load balancer applied the change in {outcome.applied_s:.3f} s")
    style = "pass" if outcome.exit_code == 0 else "fail"
    _show(banner(f"{outcome.action}: {outcome.outcome}", style, details))


def switch_preview(config: Config, *, lb: LoadBalancer, release: str = "") -> Any:
    """What a switch would be judged on right now (no lock, no change): shown and recorded."""
    return verify_step(config, lb=lb, release=release,
                       samples_per_host=config.switch.samples_per_host, outcome=False)


def decide_step(config: Config, *, lb: LoadBalancer, action: str, preview_ok: bool,
                approve: bool, interactive: bool, release: str = "") -> Any:
    """The decision: a button (interactive), ``approve`` (headless), else "not approved".

    The switch itself always takes the lock and samples again before it moves traffic.
    """
    from bgkit.switch import rollback, switch
    from bgkit.verify import expected_release_version

    def run(on_step: Any) -> Any:
        if action == "rollback":
            return rollback(config, lb=lb, approve=True, on_step=on_step)
        expected = expected_release_version(config, Path(release) if release else None)
        return switch(config, lb=lb, expected_version=expected, approve=True, on_step=on_step)

    if approve:
        outcome = run(print)
        _record_outcome(outcome)
        _show_outcome(outcome)
        return outcome
    if interactive:
        return _approval_button(action, preview_ok, run)
    if not preview_ok:
        reason = f"the evidence above did not pass, so there is no {action} to approve"
        record("outcome", "refused")
        record("outcome_reason", reason)
        print(f"refused: {reason}")
        return None
    reason = "the gates passed; approve=True (-p approve True) was not given"
    record("outcome", "not approved")
    record("outcome_reason", reason)
    print(f"not approved: {reason}")
    return None


def _approval_button(action: str, preview_ok: bool, run: Any) -> Any:
    import ipywidgets as widgets

    label = "Approve the switch" if action == "switch" else "Confirm the rollback"
    button = widgets.Button(description=label, button_style="danger" if preview_ok else "",
                            disabled=not preview_ok, icon="exchange",
                            layout=widgets.Layout(width="260px"))
    output = widgets.Output()
    note = widgets.HTML("<b>Review the evidence above, then confirm.</b>" if preview_ok else
                        "<b>Disabled:</b> the verdict above is not <i>pass</i>.")

    def clicked(_: Any) -> None:
        from bgkit.errors import BgkitError

        button.disabled = True
        button.description = "working..."
        with output:
            try:
                outcome = run(lambda step: print(step, flush=True))
            except BgkitError as error:  # e.g. the lock is held: say so, leave it clickable
                print(f"error: {error}")
                button.disabled, button.description = False, label
                return
            _show_outcome(outcome)
        button.description = f"{outcome.outcome}"

    button.on_click(clicked)
    box = widgets.VBox([note, button, output])
    _show(box)
    return box
