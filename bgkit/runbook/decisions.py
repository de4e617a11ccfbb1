"""Decisions that move traffic or deploy, taken from a notebook: pinned, once, archived.

- :func:`act_now` is the ``approve=True`` path: act on the preview, show and record the
  outcome.
- :func:`decision_button` is the operator's path in JupyterLab: a
  :class:`~bgkit.runbook.widgets.DecisionButton` labelled with what it will do
  ("Switch to green, hello-c-2.0.0-1a2b3c"), pinned to the preview: when the live pool
  is no longer the one the preview read, it refuses and says so.
- :func:`deploy_button` picks an artifact and deploys it to the idle pool, with per-host
  progress drawn from the kernel's main thread.

Every action taken outside ``bgkit run`` is archived as a run of its own when it completes
(:func:`bgkit.runbook.actions.archive_action`), from the kernel, whether or not the
browser tab is still open; its run id and outcome are written into the cell's output as
plain HTML (a display that the action updates), readable without widgets.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bgkit.config import Config
from bgkit.errors import BgkitError, DeployError, HookFailed
from bgkit.lb.base import LoadBalancer, other_pool
from bgkit.runbook.actions import archive_action, archive_switch, under_runner
from bgkit.runbook.record import record, record_outcome
from bgkit.runbook.widgets import DecisionButton, HostProgress

if TYPE_CHECKING:
    from bgkit.runbook.steps import Preview
    from bgkit.switch import SwitchOutcome

__all__ = ["act", "act_now", "decision_button", "deploy_button", "next_step",
           "outcome_html"]

Report = Callable[[str], None]


def act(config: Config, *, lb: LoadBalancer, preview: Preview,
        report: Report = print) -> SwitchOutcome:
    """Run the switch or rollback the operator was shown, if the load balancer still
    agrees with the preview (checked inside, after a killed run's change was converged);
    otherwise a ``refused`` outcome saying what changed."""
    from bgkit.switch import SwitchOutcome, rollback, switch

    if not preview.version:
        return SwitchOutcome(preview.action, "refused", (
            f"the preview found no release to {preview.action} to on {preview.target} "
            "(it says why above)"), preview.live, preview.target, preview.live)
    if preview.action == "switch":
        return switch(config, lb=lb, expected_version=preview.version, approve=True,
                      on_step=report, expected_live=preview.live,
                      release=preview.release or None,
                      canary=list(preview.canary) if preview.canary is not None else None)
    return rollback(config, lb=lb, approve=True, on_step=report,
                    expected_version=preview.version, expected_live=preview.live,
                    expected_release=preview.release or None)


def act_now(config: Config, *, lb: LoadBalancer, preview: Preview) -> SwitchOutcome:
    """The ``approve=True`` path: act, then show, record and (outside ``bgkit run``)
    archive the outcome."""
    from IPython.display import HTML, display

    started = datetime.now(UTC)
    outcome = act(config, lb=lb, preview=preview,
                  report=lambda step: print(step, flush=True))
    record_switch(outcome)
    run_id = None if under_runner() else _archive(config, preview, outcome, started).run_id
    display(HTML(outcome_html(outcome, run_id=run_id)))
    return outcome


def record_switch(outcome: SwitchOutcome) -> None:
    """Record a switch or rollback and make its outcome the run's."""
    record("switch", outcome.to_dict())
    if outcome.watch is not None:
        record("watch", outcome.watch.to_dict())
    record_outcome("succeeded" if outcome.exit_code == 0 else outcome.ended, outcome.reason)


def decision_button(config: Config, *, lb: LoadBalancer, preview: Preview) -> DecisionButton:
    """The button for ``preview``: enabled only on a passing verdict, acting once."""
    from IPython.display import HTML, display

    verb = "Switch to" if preview.action == "switch" else "Roll back to"
    label = f"{verb} {preview.target}, {preview.release or preview.version or '?'}"
    plain = display(HTML(_pending_html(preview)), display_id=True)

    def action(report: Callable[..., None]) -> tuple[str, str]:
        started = datetime.now(UTC)

        def step(text: str) -> None:
            report(text, config.switch.watch_s if "watching" in text else None)

        outcome = act(config, lb=lb, preview=preview, report=step)
        run_id = None if under_runner() else _archive(config, preview, outcome,
                                                      started).run_id
        if plain is not None:
            plain.update(HTML(outcome_html(outcome, run_id=run_id)))
        archived = f"; archived as run {run_id}" if run_id else ""
        report(f"{outcome.ended}: traffic is on {outcome.live_pool}{archived}")
        return outcome.ended, "done" if outcome.exit_code == 0 else "failed"

    status = ("review the evidence above, then click: it acts once" if preview.ok else
              f"disabled: the verdict above is not pass, so there is no {preview.action} "
              "to approve")
    button = DecisionButton(label=label, action=action, enabled=preview.ok, status=status)
    display(button)
    return button


def _pending_html(preview: Preview) -> str:
    return (f"<p><b>Decision:</b> {html.escape(preview.describe())} (the live pool is "
            f"{html.escape(preview.live)} now). Nothing has been done yet; the outcome "
            "will replace this line.</p>")


def _archive(config: Config, preview: Preview, outcome: SwitchOutcome,
             started: datetime) -> Any:
    return archive_switch(config, outcome, started=started, front_door="jupyterlab",
                          pins=preview.pins(), evidence=preview.result)


def outcome_html(outcome: SwitchOutcome, *, run_id: str | None = None) -> str:
    """The outcome as plain HTML: what happened, the watch, the run id, what to do next."""
    from bgkit.runbook.evidence import BAD, GOOD

    style = GOOD if outcome.exit_code == 0 else BAD
    lines = [outcome.reason, f"traffic is on {outcome.live_pool}"]
    if outcome.release:
        lines.append(f"release: {outcome.release}")
    if outcome.applied_s is not None:
        lines.append(f"the load balancer applied the change in {outcome.applied_s:.3f} s")
    if outcome.watch is not None:
        watch = outcome.watch
        p99 = "-" if watch.p99_ms is None else f"{watch.p99_ms:.1f} ms"
        lines.append(f"watch: {watch.samples} answers, {watch.errors} failed, "
                     f"{watch.wrong_version} from another release, p99 {p99}")
    from bgkit.canary import describe_step

    lines += [describe_step(step) for step in outcome.canary]
    if outcome.switch_back_applied_s is not None:
        lines.append(f"switched back in {outcome.switch_back_applied_s:.3f} s")
    if run_id:
        lines.append(f"archived as run {run_id} (bgkit runs show {run_id})")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (f'<div style="{style};padding:0.6em 0.8em;border-radius:4px">'
            f'<div style="font-size:1.3em"><b>{html.escape(outcome.action)}: '
            f"{html.escape(outcome.ended)}</b></div><ul>{items}</ul></div>"
            f"{hooks_html(outcome.hooks)}"
            f"<p><b>Next:</b> {html.escape(next_step(outcome))}</p>")


def hooks_html(hooks: Iterable[Mapping[str, Any]]) -> str:
    """The hooks that ran (``HookResult.to_dict()`` records) as HTML: one line each with
    its exit and duration, then the end of its output. Their output is data from the
    user's commands: always escaped, never markup. "" when none ran."""
    parts = []
    for hook in hooks:
        argv = " ".join(str(arg) for arg in hook.get("argv", ()))
        ended = "ok" if hook.get("ok") else str(hook.get("problem") or "failed")
        parts.append(f"<li><b>{html.escape(str(hook.get('name')))}</b> "
                     f"<code>{html.escape(argv)}</code>: {html.escape(ended)} in "
                     f"{float(hook.get('duration_s') or 0.0):.1f} s")
        tail = str(hook.get("output_tail") or "")
        if tail:
            parts.append(f'<pre style="max-height:12em;overflow:auto;margin:0.2em 0">'
                         f"{html.escape(tail)}</pre>")
        parts.append("</li>")
    return f"<p><b>Hooks</b></p><ul>{''.join(parts)}</ul>" if parts else ""


def next_step(outcome: SwitchOutcome) -> str:
    """What the operator should do after this outcome."""
    back = f"05_rollback moves traffic back to {outcome.from_pool} at once"
    texts = {
        "switched": f"watch your service's own metrics for a while; {back}.",
        "rolled back": (f"traffic is on {outcome.live_pool} again; find out what was wrong "
                        "with the release you left, then deploy, verify and switch a fix."),
        "already live": "nothing to do: the release already serves the traffic.",
        "switched back": (f"traffic is back on {outcome.live_pool}; read the watch above, fix "
                          "the release, then deploy and verify it again before switching."),
        "canary failed": (f"traffic is all on {outcome.live_pool} again; read what the canary "
                          "pool answered above, fix the release, then deploy and verify it "
                          "again."),
        "switch failed": (f"traffic stayed on {outcome.live_pool}; the reason above says what "
                          "the load balancer did; retry once it is healthy."),
        "needs attention": ("look at the load balancer now (bgkit status): bgkit could not "
                            "confirm where traffic is."),
        "refused": "nothing changed; the reason above says what to fix first.",
        "not approved": "nothing changed; approve when the evidence convinces you.",
        "inconclusive": "nothing changed; take more samples (03_verify) and decide again.",
    }
    return texts.get(outcome.ended, "see the reason above.")


def deploy_button(config: Config, *, lb: LoadBalancer) -> Any:
    """Pick a built artifact and deploy it to the idle pool (the pool idle now, pinned:
    a deploy is refused if it became live meanwhile); per-host progress as it goes."""
    import ipywidgets as widgets
    from IPython.display import HTML, display

    built = sorted(config.dist_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime,
                   reverse=True)
    idle = other_pool(lb.live_pool())
    picker = widgets.Dropdown(options=[(p.name, str(p)) for p in built],
                              description="artifact", layout=widgets.Layout(width="520px"))
    progress = HostProgress(f"deploy to {idle}: one row per host")
    plain: Any = None

    def action(report: Callable[..., None]) -> tuple[str, str]:
        from bgkit.deploy import deploy, hosts_table
        from bgkit.runbook.evidence import html_table

        started = datetime.now(UTC)
        artifact = Path(str(picker.value))
        picker.disabled = True
        report(f"deploying {artifact.name} to {idle}")
        try:
            result = deploy(config, artifact=artifact, pool=idle, lb=lb, progress=progress)
        except (DeployError, BgkitError) as error:
            progress.refresh()
            results = error.results if isinstance(error, DeployError) else ()
            table = hosts_table(results)
            hooks = [error.result.to_dict()] if isinstance(error, HookFailed) else []
            run = _archive_deploy(config, started, "failed", str(error), artifact,
                                  {"deploy": {"ok": False, "error": str(error),
                                              "hooks": hooks}, "hosts": table})
            _update(plain, f"deploy failed: {error}", html_table(table) + hooks_html(hooks),
                    run.run_id, ok=False)
            report(f"failed: {error}; archived as run {run.run_id}")
            return "deploy failed", "failed"
        progress.refresh()
        run = _archive_deploy(config, started, "succeeded", None, artifact,
                              {"deploy": result.record(), "hosts": result.table()})
        _update(plain, f"deployed {result.release} to the {result.pool} pool (live: "
                f"{result.live_pool})", html_table(result.table()) + hooks_html(result.hooks),
                run.run_id, ok=True)
        report(f"deployed {result.release}; archived as run {run.run_id}")
        return "deployed", "done"

    note = (f"Pick the artifact for the {idle} pool (idle now), then deploy." if built else
            "No artifact in dist/: run 01_build first.")
    button = DecisionButton(label=f"Deploy to {idle} (idle)", action=action,
                            enabled=bool(built), status=note)
    box = widgets.VBox([picker, button, progress.widget])
    display(box)
    plain = display(HTML("<p>No deploy yet: pick an artifact, then click.</p>"),
                    display_id=True)
    return box


def _archive_deploy(config: Config, started: datetime, outcome: str, reason: str | None,
                    artifact: Path, records: dict[str, object]) -> Any:
    return archive_action(config, step="02_deploy_green", front_door="jupyterlab",
                          started=started, outcome=outcome, reason=reason,
                          summary=f"deploy of {artifact.name}: {outcome}"
                          + (f" — {reason}" if reason else ""),
                          parameters={"release": str(artifact)}, records=records)


def _update(plain: Any, title: str, table: str, run_id: str, *, ok: bool) -> None:
    from IPython.display import HTML

    from bgkit.runbook.evidence import BAD, GOOD

    if plain is None:
        return
    plain.update(HTML(f'<div style="{GOOD if ok else BAD};padding:0.6em 0.8em;'
                      f'border-radius:4px"><b>{html.escape(title)}</b><br>archived as run '
                      f"{html.escape(run_id)}</div>{table}"))
