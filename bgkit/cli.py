"""The ``bgkit`` command: parse, call one library function, map errors to exit codes.

Exit codes: 0 success, 1 the step failed, 2 bad usage or config, 3 inconclusive (verify).
"""

from __future__ import annotations

import json
import re
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bgkit import __version__
from bgkit.config import Config, load_config
from bgkit.errors import BgkitError, ConfigError, StepFailed, UsageError
from bgkit.lb.base import PoolName

if TYPE_CHECKING:
    from bgkit.runbook.backends import Archive
    from bgkit.runbook.index import Finding

__all__ = ["EXIT_CODES", "app", "exit_code_for", "main"]

# Piped output (CI logs, tests) gets wide lines instead of rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path), default=None,
    help="bgkit.toml to use (default: $BGKIT_CONFIG, then ./bgkit.toml).")
runs_dir_option = click.option(
    "--runs-dir", type=click.Path(path_type=Path), default=None,
    help="Archive folder (default: [runs].dir of bgkit.toml).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bgkit")
def app() -> None:
    """Zero-downtime blue-green deployments of compiled C services."""


def _register_subgroups() -> None:
    from bgkit.lb.ovh_cli import ovh_group
    from bgkit.sandbox.cli import sandbox_group

    app.add_command(sandbox_group)
    app.add_command(ovh_group)


@app.group("config")
def config_group() -> None:
    """Check bgkit.toml."""


@config_group.command("check")
@click.argument("path", type=click.Path(path_type=Path), required=False)
def config_check(path: Path | None) -> None:
    """Validate bgkit.toml and print a summary of what it describes."""
    config = load_config(path)
    table = Table(title=f"{config.path}: valid", show_header=False)
    table.add_row("app", f"{config.app.name} {config.app.version} from {config.source_dir}")
    table.add_row("service", f"port {config.service.port}, health {config.service.health_path},"
                  f" version from {config.service.version_source},"
                  f" drain {config.service.drain_timeout_s:g} s")
    for item in config.service.files:
        table.add_row("host file", f"{item.template} -> <root>/shared/{item.path} "
                      f"(mode {item.mode:04o})")
    for pool_name in ("blue", "green"):
        pool = config.pools.get(pool_name)
        hosts = ", ".join(f"{h.user + '@' if h.user else ''}{h.address}"
                          f"{':' + str(h.port) if h.port else ''}" for h in pool.hosts)
        table.add_row(f"pool {pool_name}", f"{len(pool.hosts)} host(s): {hosts}")
    table.add_row("load balancer", f"{config.lb.provider}, public {config.lb.public_url}")
    gates = config.gates
    table.add_row("gates", f">= {gates.min_samples_per_host} samples/host, errors <= "
                  f"{gates.max_error_ratio:.2%}, p99 <= {gates.max_p99_ms:g} ms, "
                  f"p95 ratio <= {gates.max_p95_ratio:g}")
    table.add_row("runs", config.runs_url or str(config.runs_dir))
    table.add_row("lock", f"{config.lock_url} (TTL {config.lock.ttl_s:g} s)")
    out.print(table)


@app.command()
@config_option
@click.option("--version", "version", default=None, help="Override [app].version.")
def build(config_path: Path | None, version: str | None) -> None:
    """Build, test and package the app into a reproducible release."""
    from bgkit.artifact import build_release

    config = load_config(config_path)
    with err.status("building") as status:
        result = build_release(config, version=version,
                               on_progress=lambda stage: status.update(f"build: {stage}"))
    out.print(f"release  {result.release}")
    out.print(f"artifact {result.artifact}")
    out.print(f"sha256   {result.sha256}")
    out.print(f"built in {result.duration_s:.1f} s ({len(result.manifest['files'])} files)")


@app.command()
@click.argument("step")
@click.option("--parameter", "-p", "parameters", type=(str, str), multiple=True,
              metavar="NAME VALUE", help="Set a notebook parameter, converted to its declared "
              "type: bool takes true/false, int/float parse strictly, str keeps the text "
              "(repeatable).")
@click.option("--raw", "-r", "raw", type=(str, str), multiple=True, metavar="NAME VALUE",
              help="Set a text (str) parameter to VALUE exactly as typed (repeatable).")
@config_option
@click.option("--notebooks", "notebooks_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of step notebooks (default ./notebooks).")
def run(step: str, parameters: tuple[tuple[str, str], ...], raw: tuple[tuple[str, str], ...],
        config_path: Path | None, notebooks_dir: Path | None) -> None:
    """Execute the STEP notebook with papermill and archive it under runs/.

    Exit 0 when the step succeeded, 1 when it did not (the archive says why), 2 for bad
    parameters or configuration (nothing runs), 3 when a verify was inconclusive.
    """
    from bgkit.runbook import notebooks
    from bgkit.runbook.runner import cli_parameters, run_step

    config = load_config(config_path)
    source = notebooks.find(step, notebooks_dir)
    values = cli_parameters(source, typed=list(parameters), raw=list(raw))
    try:
        result = run_step(step, config=config, parameters=values, notebooks_dir=notebooks_dir)
    except StepFailed as failure:
        _print_head(failure.head, failure.keyed_head)
        raise
    out.print(f"{result.step} run {result.run_id} {result.outcome} in {result.duration_s:.1f} s")
    out.print(f"record: {result.path}")
    _print_head(result.head, result.keyed_head)


def _print_head(head: str | None, keyed_head: str | None) -> None:
    """The archive's head after a run: keep it elsewhere, check with --expect-head."""
    if head:
        out.print(f"archive head: {head}")
    if keyed_head:
        out.print(f"keyed head:   {keyed_head}")


@app.command()
@config_option
@click.option("--release", "release", type=click.Path(path_type=Path), default=None,
              help="Release tarball (default: the newest in [app].dist_dir).")
@click.option("--pool", type=click.Choice(["blue", "green"]), default=None,
              help="Target pool; it must be the idle one (default: the idle one).")
def deploy(config_path: Path | None, release: Path | None, pool: str | None) -> None:
    """Deploy a release to every host of the idle pool; the live pool is never touched."""
    from bgkit.deploy import deploy as deploy_release
    from bgkit.deploy import hosts_table
    from bgkit.errors import DeployError
    from bgkit.progress import LiveProgress, progress_for
    from bgkit.runbook.actions import archive_action
    from bgkit.runbook.steps import deploy_record

    config = load_config(config_path)
    target: PoolName | None = "blue" if pool == "blue" else "green" if pool == "green" else None
    display = progress_for(err, "deploy")
    started = _now()
    parameters = {"release": str(release)} if release else {}
    try:
        with display if isinstance(display, LiveProgress) else nullcontext():
            result = deploy_release(config, release=release, pool=target, progress=display)
    except DeployError as error:
        table = hosts_table(error.results)
        _print_frame(table, title="per-host result")
        run = archive_action(config, step="02_deploy_green", front_door="cli",
                             started=started, outcome="failed", reason=str(error),
                             summary=f"deploy failed: {error}", parameters=parameters,
                             records={"deploy": {"ok": False, "error": str(error)},
                                      "hosts": table})
        err.print(f"archived as run {run.run_id} ({run.path})")
        raise
    _print_frame(result.table(), title=f"{result.release} on the {result.pool} pool "
                 f"(live: {result.live_pool})")
    records: dict[str, object] = {"deploy": deploy_record(result), "hosts": result.table()}
    if config.service.files:
        _print_frame(result.files_table(), title="host files (sha256; changed by this deploy)")
        records["files"] = result.files_table()
    if result.lock_takeover:
        _print_takeover(result.lock_takeover)
        records["lock_takeover"] = result.lock_takeover
    run = archive_action(config, step="02_deploy_green", front_door="cli", started=started,
                         outcome="succeeded", reason=None,
                         summary=f"deployed {result.release} to the {result.pool} pool",
                         parameters=parameters, records=records)
    out.print(f"archived as run {run.run_id} ({run.path})")


def _print_takeover(took: dict[str, Any]) -> None:
    err.print(f"[yellow]took over the deployment lock[/] of {escape(str(took.get('owner')))} "
              f"(pid {took.get('pid')} on {escape(str(took.get('host')))}): "
              f"{escape(str(took.get('reason')))}")


def _print_frame(frame: Any, *, title: str) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(value) for value in row))
    out.print(table)


@app.group("host")
def host_group() -> None:
    """One-time, privileged setup of real servers (manager = "systemd")."""


@host_group.command("setup")
@config_option
@click.option("--pool", type=click.Choice(["blue", "green"]), default=None,
              help="Only hosts of this pool (default: both).")
@click.option("--host", "address", default=None, help="Only the host with this address.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Write each host's setup.sh, unit and sudoers file under this folder.")
def host_setup(config_path: Path | None, pool: str | None, address: str | None,
               out_dir: Path | None) -> None:
    """Print the script an administrator runs as root, once, on a host.

    It installs the systemd unit bgkit.toml renders for the host and a sudoers file that
    lets the deploy user only restart, stop and query that unit and read its journal.
    Deploys never install the unit; they refuse a host whose unit differs.
    """
    from bgkit.host_setup import host_setups, write_setups

    config = load_config(config_path)
    chosen: PoolName | None = "blue" if pool == "blue" else "green" if pool == "green" else None
    setups = host_setups(config, pool=chosen, address=address)
    if out_dir is not None:
        for folder, setup in zip(write_setups(setups, out_dir), setups, strict=True):
            out.print(f"{escape(setup.host.label)}: {folder}")
        return
    if len(setups) > 1:
        raise UsageError(f"{len(setups)} hosts match: pass --pool and --host to print one "
                         "host's script, or --out DIR to write them all")
    click.echo(setups[0].script, nl=False)


@app.command()
@config_option
def status(config_path: Path | None) -> None:
    """Show the live pool and every host's release, service and health."""
    from bgkit.lb import get_provider
    from bgkit.runbook.backends import open_archive
    from bgkit.status import fleet_status

    config = load_config(config_path)
    result = fleet_status(config, lb=get_provider(config))
    _print_frame(result.table(), title=f"live pool: {result.live_pool}")
    _runs_in_progress(open_archive(config))


@app.command()
@config_option
@click.option("--release", "release", type=click.Path(path_type=Path), default=None,
              help="Release the idle pool should serve (default: the newest in dist/).")
@click.option("--samples", "samples", type=click.IntRange(min=1), default=None,
              help="Samples per host (default: twice [gates].min_samples_per_host).")
@click.option("--rate", type=click.FloatRange(min=1), default=200.0, show_default=True,
              help="Requests per second, all targets together.")
def verify(config_path: Path | None, release: Path | None, samples: int | None,
           rate: float) -> None:
    """Sample the idle and live pools and judge the idle one by the gates.

    Exit 0 on pass, 1 on fail, 3 on inconclusive.
    """
    from bgkit.lb import get_provider
    from bgkit.verify import expected_release_version
    from bgkit.verify import verify as run_verify

    config = load_config(config_path)
    expected = expected_release_version(config, release)
    with err.status("sampling"):
        result = run_verify(config, lb=get_provider(config), expected_version=expected,
                            samples_per_host=samples, rate_per_s=rate)
    summary = result.verdict.summary
    columns = ["pool", "host", "target", "samples", "ok_ratio", "p50_ms", "p95_ms", "p99_ms",
               "max_ms", "versions"]
    _print_frame(summary.reindex(columns=columns).round(2),
                 title=f"samples (idle: {result.idle_pool}, live: {result.live_pool}, "
                 f"expected version {expected})")
    _print_frame(result.verdict.gate_table(), title="gates")
    colour = {"pass": "green", "fail": "red"}.get(result.verdict.verdict, "yellow")
    out.print(f"verdict: [{colour}]{result.verdict.verdict}[/]")
    for reason in result.verdict.reasons():
        out.print(f"  {escape(reason)}")
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)


def _print_outcome(outcome: Any) -> None:
    colour = "green" if outcome.exit_code == 0 else "red"
    if outcome.takeover:
        _print_takeover(outcome.takeover)
    if outcome.converged:
        out.print(f"  converged: {escape(outcome.converged)}")
    out.print(f"{outcome.action}: [{colour}]{outcome.outcome}[/] — {escape(outcome.reason)}")
    out.print(f"  traffic was on {outcome.from_pool}, now on {outcome.live_pool}")
    if outcome.lb_state and outcome.live_pool == "unknown":
        out.print(f"  load balancer: {escape(outcome.lb_state)}")
    if outcome.applied_s is not None:
        out.print(f"  the load balancer applied the change in {outcome.applied_s:.3f} s")
    if outcome.watch is not None:
        watched = outcome.watch
        p99 = watched.p99_ms if watched.p99_ms is None else round(watched.p99_ms, 2)
        out.print(f"  watch: {watched.samples} answers of {watched.planned} planned, "
                  f"{watched.errors} failed, {watched.wrong_version} from another release, "
                  f"p99 {p99} ms")
        if watched.breach:
            out.print(f"  stopped at the first breach: {escape(watched.breach)}")
    if outcome.revert is not None:
        revert = outcome.revert.to_dict()
        detect, apply, total = (revert[key] for key in ("detect_s", "apply_s",
                                                         "fault_to_back_s"))
        out.print(f"  switched back: first failure to breach {_seconds(detect)}, switch-back "
                  f"applied in {_seconds(apply)}, first failure to traffic back "
                  f"{_seconds(total)}")
    elif outcome.switch_back_applied_s is not None:
        out.print(f"  switched back in {outcome.switch_back_applied_s:.3f} s")


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f} s"


@app.command("release")
@config_option
@click.option("--approve", is_flag=True, help="Let the switch step switch when its gates pass.")
@click.option("--version", "version", default="", help="Override [app].version for the build.")
@click.option("--notebooks", "notebooks_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of step notebooks (default ./notebooks).")
def release_command(config_path: Path | None, approve: bool, version: str,
                    notebooks_dir: Path | None) -> None:
    """Build, deploy, verify and switch, one archived run per step, tied by a pipeline id.

    Stops at the first step that does not succeed; exits with that step's code.
    """
    from bgkit.pipeline import release

    config = load_config(config_path)
    result = release(config, approve=approve, version=version, notebooks_dir=notebooks_dir)
    out.print(f"pipeline {result.pipeline_id}")
    for run in result.runs:
        out.print(f"  {run.step:<16} [green]{run.outcome}[/] {run.duration_s:6.1f} s  {run.path}")
    if result.failed is not None:
        _print_head(result.failed.head, result.failed.keyed_head)
        raise result.failed
    if result.runs:
        _print_head(result.runs[-1].head, result.runs[-1].keyed_head)


@app.command("switch")
@config_option
@click.option("--release", "release", type=click.Path(path_type=Path), default=None,
              help="Release the idle pool must serve (default: the newest in dist/).")
@click.option("--approve", is_flag=True, help="Switch if the gates pass (else: not approved).")
@click.option("--message", "-m", default="switch", help="Why, for the lock and the record.")
def switch_command(config_path: Path | None, release: Path | None, approve: bool,
                   message: str) -> None:
    """Gate on fresh evidence, then move all traffic to the idle pool and watch it.

    Exit 0 switched (or already live), 1 refused / not approved / switched back,
    3 inconclusive.
    """
    from bgkit.lb import get_provider
    from bgkit.switch import switch
    from bgkit.verify import expected_release_version

    config = load_config(config_path)
    expected = expected_release_version(config, release)
    started = _now()
    with err.status("sampling, switching, watching"):
        outcome = switch(config, lb=get_provider(config), expected_version=expected,
                         approve=approve, message=message)
    _print_outcome(outcome)
    _archive_outcome(config, outcome, started, {"version": expected})
    if outcome.exit_code:
        raise click.exceptions.Exit(outcome.exit_code)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _archive_outcome(config: Config, outcome: Any, started: Any,
                     pins: dict[str, str]) -> None:
    """Every switch and rollback, from any front door, leaves a run in the archive."""
    from bgkit.runbook.actions import archive_switch

    run = archive_switch(config, outcome, started=started, front_door="cli", pins=pins)
    out.print(f"  archived as run {run.run_id} ({run.path})")
    _print_head(run.head, run.keyed_head)


@app.command("rollback")
@config_option
@click.option("--approve", is_flag=True, help="Roll back if the other pool is healthy.")
@click.option("--message", "-m", default="rollback", help="Why, for the lock and the record.")
def rollback_command(config_path: Path | None, approve: bool, message: str) -> None:
    """Move all traffic back to the other pool, after checking it is healthy."""
    from bgkit.lb import get_provider
    from bgkit.switch import rollback

    config = load_config(config_path)
    started = _now()
    with err.status("sampling, switching back, watching"):
        outcome = rollback(config, lb=get_provider(config), approve=approve, message=message)
    _print_outcome(outcome)
    _archive_outcome(config, outcome, started, {})
    if outcome.exit_code:
        raise click.exceptions.Exit(outcome.exit_code)


@app.group("lock")
def lock_group() -> None:
    """The deployment lock shared by operators and CI."""


@lock_group.command("status")
@config_option
def lock_status(config_path: Path | None) -> None:
    """Who holds the lock, why, and until when."""
    from bgkit.lock import read_lock, store_for

    store = store_for(load_config(config_path))
    info = read_lock(store)
    if info is None:
        out.print(f"free: nobody holds {escape(store.location)}")
        return
    stale = info.stale()
    out.print(f"{escape(store.location)}: {escape(info.describe())}")
    if info.renewed_at:
        out.print(f"  renewed every {info.ttl_s / 3:g} s while held; TTL {info.ttl_s:g} s")
    unfinished = info.unfinished()
    if stale and unfinished:
        out.print(f"  stale: {escape(stale)}; its holder left {escape(unfinished)} "
                  "unfinished: only `bgkit switch` or `bgkit rollback` take it over (they "
                  "finish or undo it)")
    elif stale:
        out.print(f"  stale: {escape(stale)} (the next deploy or switch takes it over)")
    if info.took_over:
        out.print(f"  it took over a stale lock of {escape(str(info.took_over.get('owner')))}"
                  f" ({escape(str(info.took_over.get('reason')))})")


@lock_group.command("release")
@config_option
@click.option("--force", is_flag=True, help="Release even if this process does not hold it.")
def lock_release(config_path: Path | None, force: bool) -> None:
    """Release the lock (with --force: whoever holds it)."""
    from bgkit.lock import force_release, read_lock, store_for

    store = store_for(load_config(config_path))
    info = read_lock(store)
    if info is None:
        out.print("the lock was free")
        return
    if not force and info.stale() is None:
        raise UsageError(f"the lock is {info.describe()}; pass --force to release it anyway")
    unfinished = info.unfinished()
    if not force and unfinished:
        raise UsageError(f"the lock was left in the middle of {unfinished}; run `bgkit switch` "
                         "or `bgkit rollback` to finish or undo it, or pass --force to drop "
                         "that record")
    force_release(store)
    out.print(f"released the lock {escape(store.location)}, {escape(info.describe())}")


def _archive(config_path: Path | None, runs_dir: Path | None, *,
             fresh: bool = False) -> tuple[Archive, list[Finding]]:
    """The archive to read (``--runs-dir``, else bgkit.toml's), its local folder brought up
    to date (``fresh``: every object read again); findings the folder cannot show."""
    from bgkit.runbook.backends import open_archive

    config = None if runs_dir is not None else load_config(config_path)
    archive = open_archive(config, runs_dir=runs_dir)
    return archive, archive.refresh(fresh=fresh)


@app.group("runs")
def runs_group() -> None:
    """Read the archive of executed runbooks."""


@runs_group.command("list")
@config_option
@runs_dir_option
@click.option("--step", default=None, help="Only runs of this step.")
@click.option("--outcome", default=None, help="Only runs with this outcome.")
@click.option("--release", default=None,
              help="Only runs of this release (a name, or its prefix up to a '-').")
@click.option("--since", default=None,
              help="Only runs started since an ISO date/time (UTC unless an offset is "
              "given) or an age: 30m, 12h, 7d, 2w.")
@click.option("--pipeline", "pipeline", default=None, help="Only runs of this pipeline id.")
def runs_list(config_path: Path | None, runs_dir: Path | None, step: str | None,
              outcome: str | None, release: str | None, since: str | None,
              pipeline: str | None) -> None:
    """Print the archive as a table, oldest first."""
    from bgkit.runbook.archive import list_runs
    from bgkit.runbook.filters import has_pipelines, parse_since, select_runs, with_pipeline
    since_time = parse_since(since) if since is not None else None
    archive, _ = _archive(config_path, runs_dir)
    folder = archive.folder
    _runs_in_progress(archive)
    everything = with_pipeline(list_runs(folder))
    runs = select_runs(everything, step=step, outcome=outcome, release=release,
                       since=since_time, pipeline=pipeline)
    if runs.empty:
        matching = " match" if len(everything) else ""
        out.print(f"no runs in {escape(archive.location)}{matching}")
        return
    pipelines = has_pipelines(runs)
    table = Table(title=f"runs in {escape(archive.location)}")
    for column in ("time", "step", "run id", "outcome", "duration", "operator", "release"):
        table.add_column(column)
    if pipelines:
        table.add_column("pipeline")
    for row in runs.to_dict(orient="records"):
        colour = "green" if row["outcome"] == "succeeded" else "red"
        duration = "" if pd_isna(row["duration_s"]) else f"{row['duration_s']:.1f} s"
        when = "" if pd_isna(row["time"]) else row["time"].strftime("%Y-%m-%d %H:%M:%SZ")
        cells = [when, str(row["step"]), str(row["run_id"]),
                 f"[{colour}]{escape(str(row['outcome']))}[/]", duration,
                 _cell(None if pd_isna(row["operator"]) else row["operator"]),
                 _cell(None if pd_isna(row["release"]) else row["release"])]
        if pipelines:
            cells.append("" if pd_isna(row["pipeline"]) else escape(str(row["pipeline"])))
        table.add_row(*cells)
    out.print(table)


def _runs_in_progress(archive: Archive) -> None:
    """Archive runs whose runner was killed (as interrupted), and name those still running."""
    from bgkit.runbook.runner import recover_interrupted
    from bgkit.runbook.staging import pending

    folder = archive.folder
    recovery = recover_interrupted(archive)
    for recovered in recovery.archived:
        err.print(f"[yellow]finalised[/] {recovered.step} run {recovered.run_id} as "
                  f"interrupted: {escape(recovered.reason or '')}")
    for problem in recovery.skipped:
        err.print(f"[yellow]left alone[/] in the staging folder: {escape(problem)}")
    for running in pending(folder):
        err.print(f"[yellow]in progress[/] {escape(running.step)} run "
                  f"{escape(running.run_id)} since {escape(running.started_at)} (runner pid "
                  f"{running.runner_pid} on {escape(running.host)})")


def pd_isna(value: object) -> bool:
    import pandas as pd

    return bool(value is None or pd.isna(value))  # type: ignore[call-overload]


@runs_group.command("show")
@click.argument("run_id")
@config_option
@runs_dir_option
def runs_show(run_id: str, config_path: Path | None, runs_dir: Path | None) -> None:
    """Print one run's parameters, outcome and recorded results."""
    from bgkit.runbook.archive import find_run, show_run

    details = show_run(find_run(_archive(config_path, runs_dir)[0].folder, run_id))
    meta = details.metadata
    out.print(f"[bold]{meta.get('step')} run {meta.get('run_id')}[/]  {details.path}")
    for key in ("outcome", "reason", "operator", "started_at", "finished_at", "duration_s",
                "bgkit_version"):
        value = details.outcome if key == "outcome" else meta.get(key)
        if value is not None:
            out.print(f"  {key:<14}{escape(str(value))}")
    git = meta.get("git") or {}
    out.print(f"  {'git':<14}{git.get('commit')}{' (dirty)' if git.get('dirty') else ''}")
    out.print("[bold]parameters[/]")
    for name, value in details.parameters.items():
        out.print(f"  {name} = {escape(repr(value))}")
    out.print("[bold]records[/]")
    for name, item in details.records.items():
        _print_record(name, item)


@runs_group.command("verify")
@config_option
@runs_dir_option
@click.option("--expect-head", "expect_head", default=None, metavar="HASH",
              help="A head printed by an earlier run (or its keyed head): fail unless that "
              "entry is still in the chain, unchanged.")
def runs_verify(config_path: Path | None, runs_dir: Path | None,
                expect_head: str | None) -> None:
    """Check every archived notebook against the hash-chained index runs/index.jsonl.

    Reports notebooks changed, deleted or added since they were indexed, and index lines
    edited, removed or reordered; with --expect-head, an archive truncated or rewritten
    since that head was printed; with BGKIT_ARCHIVE_KEY set, entries not written with
    that key. Exit 0 when all is in order, 1 otherwise.
    """
    from bgkit.runbook.index import keyed, verify_archive

    if expect_head is not None and not re.fullmatch(r"[0-9a-f]{64}", expect_head):
        raise UsageError(f"--expect-head {expect_head!r}: expected the 64 hex digits a run "
                         "printed as its archive head")
    archive, outside = _archive(config_path, runs_dir, fresh=True)
    check = verify_archive(archive.folder, expect_head=expect_head)
    findings = [*outside, *check.findings]
    for finding in findings:
        out.print(f"[red]{finding.kind}[/] {escape(finding.subject)}: {escape(finding.detail)}")
    state = "[green]in order[/]" if not findings else f"[red]{len(findings)} problem(s)[/]"
    out.print(f"{escape(archive.location)}: {state}; {check.entries} indexed run(s), "
              f"{check.notebooks} notebook(s); index head {check.head or '(empty)'}")
    if archive.location != str(archive.folder):
        out.print(escape(archive.describe()), soft_wrap=True)
    keyed_head = keyed(check.head) if check.head else None
    if keyed_head:
        out.print(f"keyed head {keyed_head}")
    if findings:
        raise click.exceptions.Exit(1)


@runs_group.command("html")
@click.argument("run_id")
@config_option
@runs_dir_option
@click.option("--no-input", is_flag=True, help="Hide code and the injected parameters cell.")
@click.option("--output", "-o", "output", type=click.Path(path_type=Path), default=None,
              help="Where to write (default: reports/<run file>.html beside the runs folder).")
def runs_html(run_id: str, config_path: Path | None, runs_dir: Path | None, no_input: bool,
              output: Path | None) -> None:
    """Render one archived run to a self-contained HTML report that needs no network."""
    from bgkit.runbook.archive import find_run
    from bgkit.runbook.backends import open_archive
    from bgkit.runbook.html import default_report_path, external_sources, write_report
    from bgkit.runbook.scrub import archive_secrets

    config = _config_if_any(config_path) if runs_dir is None or config_path else None
    archive = open_archive(config, runs_dir=runs_dir)
    archive.refresh()
    folder = archive.folder
    path = find_run(folder, run_id)
    target = write_report(path, output or default_report_path(folder, path),
                          no_input=no_input, runs_dir=folder,
                          secrets=archive_secrets(config))
    out.print(f"report: {target}")
    for source in external_sources(target.read_text(encoding="utf-8")):
        err.print(f"[yellow]warning:[/] the run's own output loads {escape(source)}; "
                  "it will not show offline")


def _config_if_any(config_path: Path | None) -> Config | None:
    """The config when one is given or found, else None (for commands that can do without)."""
    try:
        return load_config(config_path)
    except ConfigError:
        if config_path is not None:
            raise
        return None


def _print_record(name: str, item: dict[str, Any]) -> None:
    value = item["value"]
    if item["kind"] == "table" and isinstance(value, list) and value:
        table = Table(title=name)
        columns = item.get("columns") or list(value[0])
        for column in columns:
            table.add_column(str(column))
        for row in value:
            table.add_row(*(_cell(row.get(column)) for column in columns))
        out.print(table)
    else:
        out.print(f"  {name}: {escape(json.dumps(value, indent=2))}")


def _cell(value: object) -> str:
    return "" if value is None else escape(str(value))


EXIT_CODES: tuple[tuple[type[BgkitError], int], ...] = (
    (UsageError, 2),
    (ConfigError, 2),
    (BgkitError, 1),
)


def exit_code_for(error: BgkitError) -> int:
    """The exit code of an error family: the first row of ``EXIT_CODES`` it belongs to.

    A step whose run ended ``inconclusive`` (a verify without enough evidence) exits 3,
    as ``bgkit verify`` does.
    """
    if isinstance(error, StepFailed) and error.outcome == "inconclusive":
        return 3
    return next(code for family, code in EXIT_CODES if isinstance(error, family))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    _register_subgroups()
    try:
        # Without standalone mode click returns (not raises) a command's Exit code.
        code = app.main(args=argv, prog_name="bgkit", standalone_mode=False)
    except BgkitError as error:
        err.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        return exit_code_for(error)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.Abort:
        err.print("aborted")
        return 130
    except click.ClickException as error:
        error.show()
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
