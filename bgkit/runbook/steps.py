"""One call per notebook cell: do the work, show it, record it.

Each function shows its results (the verdict and its cause first, then compact tables,
then plots), records them with ``record()`` for the archive, records the step's outcome,
and re-raises a failure after recording it, so an archived run always holds the evidence
of what happened. The interactive halves (buttons) live in :mod:`bgkit.runbook.decisions`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bgkit.config import Config
from bgkit.errors import DeployError, HookFailed, UsageError
from bgkit.lb.base import LoadBalancer, PoolName, other_pool
from bgkit.runbook.record import record, record_outcome

if TYPE_CHECKING:
    from bgkit.verify import VerifyResult

__all__ = ["Preview", "build_step", "decide_step", "deploy_plan", "deploy_step",
           "open_config", "release_picker", "rollback_preview", "switch_preview",
           "verify_step"]

SANDBOX_CONFIG = Path(__file__).resolve().parents[2] / ".sandbox" / "bgkit.toml"


@dataclass(frozen=True, slots=True)
class Preview:
    """What the operator was shown before deciding, which the decision is pinned to.

    ``version`` and ``release`` are what the target pool must serve: a switch's artifact,
    or for a rollback the release the previous pool served when it was last live (both
    "" when there is none to go back to).
    """

    action: str  # "switch" | "rollback"
    result: VerifyResult
    live: PoolName
    target: PoolName
    version: str
    release: str  # the release id it goes to ("" when unknown)
    canary: tuple[int, ...] | None = None  # a switch's canary percents (None: the config's)

    @property
    def ok(self) -> bool:
        return self.result.verdict.overall == "pass" and bool(self.version)

    def describe(self) -> str:
        """"switch to green, hello-c-2.0.0-abc123" / "roll back to blue, hello-c-1.0.0-…",
        and a switch's canary steps ("after a canary of 5%, then 25%")."""
        what = self.release or self.version or "an unknown release"
        verb = "switch to" if self.action == "switch" else "roll back to"
        text = f"{verb} {self.target}, {what}"
        if self.canary:
            text += ", after a canary of " + "%, then ".join(map(str, self.canary)) + "%"
        return text

    def pins(self) -> dict[str, str]:
        pinned = {"action": self.action, "live_pool": self.live, "target_pool": self.target,
                  "version": self.version, "release": self.release}
        if self.canary is not None:
            pinned["canary"] = ",".join(map(str, self.canary)) or "none"
        return pinned


def open_config(config_path: str = "") -> Config:
    """The runbook's bgkit.toml: ``config_path`` if given, else ``$BGKIT_CONFIG``, else
    ./bgkit.toml, else the local sandbox's. In a notebook, bgkit's own errors from then on
    show as one line (what was wrong, what to do) instead of a traceback.

    Raises:
        ConfigError: the file is missing or invalid (the message names the key path).
    """
    import os

    from bgkit.config import CONFIG_ENV, DEFAULT_NAME, load_config

    _one_line_errors()
    if config_path:
        return load_config(config_path)
    if os.environ.get(CONFIG_ENV) or Path(DEFAULT_NAME).exists() or \
            not SANDBOX_CONFIG.exists():
        return load_config(None)
    return load_config(SANDBOX_CONFIG)


def _one_line_errors() -> None:
    """Show a BgkitError raised in a cell as ``ErrorName: message`` (the cell still fails)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel depends on IPython
        return
    shell = get_ipython()
    if shell is None:
        return
    from bgkit.errors import BgkitError

    def show(shell: Any, kind: type[BaseException], error: BaseException, _tb: Any,
             tb_offset: int | None = None) -> None:
        shell._showtraceback(kind, error, [f"{kind.__name__}: {error}"])

    shell.set_custom_exc((BgkitError,), show)


def build_step(config: Config, *, version: str = "") -> Any:
    """Build, test and package with progress lines; show and record the build and its
    files; record the outcome."""
    from bgkit.artifact import build_release
    from bgkit.runbook.display import build_progress

    result = build_release(config, version=version or None, on_progress=build_progress())
    record("build", result.summary())
    _show(result.summary_table())
    files = result.files_table()
    record("manifest", files)
    _show(files)
    record_outcome("succeeded")
    return result


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
    """Interactive: pick a built release and deploy it to the idle pool with one click
    (see :func:`bgkit.runbook.decisions.deploy_button`)."""
    from bgkit.runbook.decisions import deploy_button

    return deploy_button(config, lb=lb)


def deploy_step(config: Config, *, artifact: str = "", lb: LoadBalancer | None = None,
                interactive: bool = False) -> Any:
    """Deploy the release in ``artifact`` (default: the newest) to the idle pool with
    per-host progress; show and record the per-host table and the outcome.
    ``interactive``: show the artifact picker and its button instead."""
    from bgkit.deploy import deploy, hosts_table
    from bgkit.progress import LineProgress
    from bgkit.release_check import artifact_for

    if interactive:
        return release_picker(config, lb=lb or _provider(config))
    release = artifact_for(config, Path(artifact) if artifact else None)
    record("release", release.release)
    try:
        result = deploy(config, release=release, lb=lb, progress=LineProgress())
    except (DeployError, HookFailed) as error:
        failed: dict[str, object] = {"ok": False, "error": str(error)}
        if isinstance(error, HookFailed):  # stopped before any host was touched
            failed["hooks"] = [error.result.to_dict()]
            _show_hooks(failed["hooks"])
        else:
            table = hosts_table(error.results)
            record("hosts", table)
            _show(table)
        record("deploy", failed)
        record_outcome("failed", str(error))
        raise
    record("deploy", result.record())
    record("hosts", result.table())
    _show(result.table())
    _show_hooks(result.hooks)
    if result.cut:
        print(f"{result.cut} connection(s) were still open when hosts restarted "
              "([deploy].drain_timeout_s ran out): they were cut")
    if config.service.files:  # each host file's sha256, and whether this deploy changed it
        record("files", result.files_table())
        _show(result.files_table())
    record_outcome("succeeded")
    return result


def verify_step(config: Config, *, lb: LoadBalancer, artifact: str = "",
                samples_per_host: int = 0, outcome: bool = True) -> VerifyResult:
    """Sample, judge, show and record whether the idle pool serves the release in
    ``artifact`` (default: the newest); with ``outcome``, the verdict becomes the run's
    outcome (pass: succeeded)."""
    from bgkit.release_check import artifact_for

    release = artifact_for(config, Path(artifact) if artifact else None)
    record("release", release.release)
    return _verify_and_show(config, lb=lb, expected=release.version, release=release.release,
                            samples_per_host=samples_per_host, outcome=outcome, parity=True)


def switch_preview(config: Config, *, lb: LoadBalancer, artifact: str = "",
                   canary: int = -1) -> Preview:
    """What a switch to the release in ``artifact`` (default: the newest) would be judged on
    right now (no lock, no change): shown, recorded, and returned as the :class:`Preview`
    the decision is pinned to (the release is checked here, once). ``canary``: one canary
    step of that percent before the full switch; 0 none; -1 ``[switch].canary``.

    Raises:
        UsageError: ``canary`` outside -1..99, or a canary ``lb`` can never do.
    """
    from bgkit.release_check import artifact_for

    if not -1 <= canary <= 99:
        raise UsageError(f"canary: a percent from 1 to 99, 0 for none or -1 for "
                         f"[switch].canary; got {canary}")
    steps = tuple(p for p, _ in config.switch.canary_steps()) if canary == -1 else \
        ((canary,) if canary else ())
    refusal = lb.split_refusal() if steps else None
    if refusal:  # before any sampling: the switch would refuse it anyway
        raise UsageError(f"canary: {', '.join(f'{p}%' for p in steps)} was asked for, but "
                         f"{refusal}; nothing was changed")

    checked = artifact_for(config, Path(artifact) if artifact else None)
    record("release", checked.release)
    result = _verify_and_show(config, lb=lb, expected=checked.version, release=checked.release,
                              samples_per_host=config.switch.samples_per_host, outcome=False)
    preview = Preview("switch", result, result.live_pool, result.idle_pool,
                      checked.version, checked.release, steps)
    record("preview", preview.pins())
    return preview


def rollback_preview(config: Config, *, lb: LoadBalancer) -> Preview:
    """Where a rollback would go: the release the previous pool served when it was last
    live, if its hosts still serve it, judged by the gates for that very release; shown,
    recorded, nothing changed. When its hosts serve another release now, the preview says
    why and what to do, and its version is "" (nothing to roll back to)."""
    from bgkit.ledger import SshLedger, rollback_target

    live = lb.live_pool()
    target = rollback_target(SshLedger(config), other_pool(live))
    record("rollback_target", {"pool": target.pool, "release": target.release,
                               "version": target.version, "refusal": target.refusal})
    if not target.ok:
        print(f"no rollback to {target.pool}: {target.refusal}")
    else:
        print(f"a rollback goes back to {target.pool}, {target.release}: the release it "
              "served when it was last live")
    judged = config if target.ok else config.model_copy(update={  # its health, at least
        "gates": config.gates.model_copy(update={"require_version": False})})
    result = _verify_and_show(judged, lb=lb, expected=target.version or None, role="previous",
                              release=target.release or None,
                              samples_per_host=config.switch.samples_per_host, outcome=False)
    preview = Preview("rollback", result, result.live_pool, result.idle_pool,
                      target.version, target.release)
    record("preview", preview.pins())
    return preview


def _verify_and_show(config: Config, *, lb: LoadBalancer, expected: str | None,
                     samples_per_host: int, outcome: bool, role: str = "idle",
                     release: str | None = None, parity: bool | None = None) -> VerifyResult:
    from bgkit import plots
    from bgkit.runbook.display import html_block, styled_gates
    from bgkit.runbook.evidence import headline, summary_html
    from bgkit.verify import verify

    result = verify(config, lb=lb, expected_version=expected, release=release,
                    samples_per_host=samples_per_host or None, parity=parity)
    verdict = result.verdict
    top = headline(result, role=role)
    record("verify", result.to_dict())
    record("headline", {"verdict": top.verdict, "title": top.title, "cause": top.cause})
    record("summary", verdict.summary)
    record("gates", verdict.gate_table())
    record("lb_view", result.lb_table())
    record("samples", result.samples)
    _show(html_block(top.to_html()))
    _show(html_block(summary_html(verdict.summary, config.gates, idle_pool=result.idle_pool)))
    _show(styled_gates(verdict.gate_table()))
    _show(result.lb_table())
    if result.parity is not None:
        _show_parity(result.parity)
    for figure in (plots.latency_cdf(result.samples, max_p99_ms=config.gates.max_p99_ms),
                   plots.latency_by_host(result.samples), plots.over_time(result.samples)):
        _show(_png(plots.figure_to_png(figure)))
    if outcome:
        words = {"pass": "succeeded", "fail": "failed", "inconclusive": "inconclusive"}
        record_outcome(words[verdict.overall], top.cause or top.title)
    return result


def decide_step(config: Config, *, lb: LoadBalancer, preview: Preview, approve: bool,
                interactive: bool) -> Any:
    """The decision on ``preview``: a button (interactive), ``approve`` (headless), else
    "not approved". The action is pinned to the preview (the same live pool, the same
    release) and takes the lock and fresh samples again before it moves traffic.

    Outside ``bgkit run`` (JupyterLab), the action is archived as a run of its own when it
    completes; its id and outcome are shown as plain output.
    """
    from bgkit.runbook import decisions

    record("decision", {"preview": preview.pins(), "verdict": preview.result.verdict.overall,
                        "approve": approve, "interactive": interactive})
    if approve:
        return decisions.act_now(config, lb=lb, preview=preview)
    if interactive:
        return decisions.decision_button(config, lb=lb, preview=preview)
    if not preview.ok:
        reason = f"the evidence above did not pass, so there is no {preview.action} to approve"
        record_outcome("refused", reason)
        print(f"refused: {reason}")
        return None
    reason = "the gates passed; approve=True (-p approve true) was not given"
    record_outcome("not approved", reason)
    print(f"not approved: {reason}")
    return None


def _provider(config: Config) -> LoadBalancer:
    from bgkit.lb import get_provider

    return get_provider(config)


def _show(value: Any) -> None:
    from IPython.display import display

    display(value)


def _show_parity(report: Any) -> None:
    """Pool parity: the differences first (or that there are none), then every host."""
    from IPython.display import HTML, display

    from bgkit.runbook.evidence import html_table

    record("parity", report.to_dict())
    gate = report.gate()
    title = ("The pools' hosts match: same CPUs, memory, kernel, architecture and libc"
             if not report.differences else f"The pools differ ({gate.verdict}: "
             f"[gates] parity = \"{report.setting}\")")
    display(HTML(f"<h4>{html.escape(title)}</h4>"))
    if report.differences:
        display(HTML(html_table(report.differences_table())))
    if report.unread:
        display(HTML("<p>Not read: " + html.escape("; ".join(report.unread)) + "</p>"))
    display(HTML(html_table(report.table.drop(columns=["memory_gib"]))))


def _show_hooks(hooks: Any) -> None:
    """Show the hooks that ran (nothing when none did), their output escaped."""
    from IPython.display import HTML, display

    from bgkit.runbook.decisions import hooks_html

    if markup := hooks_html(hooks):
        display(HTML(markup))


def _png(data: bytes) -> Any:
    from IPython.display import Image

    return Image(data=data, format="png")
