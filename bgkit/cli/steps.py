"""The step commands: config check, build, run, deploy, host setup, status, verify, release,
switch and rollback. Each parses, calls one library function, and prints.

Inputs that take a file say ``--artifact`` (the built tarball); results name the
**release** it holds (its id, ``<name>-<version>-<shortsha>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bgkit.cli.app import Terminated
from bgkit.cli.render import (
    config_option,
    err,
    escape,
    json_option,
    now,
    out,
    print_frame,
    print_head,
    print_hooks,
    print_json,
    print_outcome,
    print_takeover,
    runs_in_progress,
)
from bgkit.errors import ConfigError, StepFailed, UsageError
from bgkit.words import POOLS, PoolName

if TYPE_CHECKING:
    from bgkit.config import Config

artifact_option = click.option(
    "--artifact", "artifact", type=click.Path(path_type=Path), default=None,
    help="The built artifact (tarball) whose release this is about (default: the newest in "
         "[app].dist_dir).")


def _load(config_path: Path | None) -> Config:
    from bgkit.config import load_config

    return load_config(config_path)


def _pool(value: str | None) -> PoolName | None:
    return next((pool for pool in POOLS if pool == value), None)


@click.group("config")
def config_group() -> None:
    """Check bgkit.toml."""


@config_group.command("check")
@click.argument("path", type=click.Path(path_type=Path), required=False)
def config_check(path: Path | None) -> None:
    """Validate bgkit.toml and print a summary of what it describes."""
    from rich.table import Table

    config = _load(path)
    table = Table(title=f"{config.path}: valid", show_header=False)
    table.add_row("app", f"{config.app.name} {config.app.version} from {config.source_dir}")
    table.add_row("service", f"port {config.service.port}, health {config.service.health_path},"
                  f" version from {config.service.version_source},"
                  f" drain {config.service.drain_timeout_s:g} s")
    for item in config.service.files:
        table.add_row("host file", f"{item.template} -> <root>/shared/{item.path} "
                      f"(mode {item.mode:04o})")
    for pool_name in POOLS:
        pool = config.pools.get(pool_name)
        hosts = ", ".join(f"{h.user + '@' if h.user else ''}{h.address}"
                          f"{':' + str(h.port) if h.port else ''}" for h in pool.hosts)
        table.add_row(f"pool {pool_name}", f"{len(pool.hosts)} host(s): {hosts}")
    table.add_row("load balancer", f"{config.lb.provider}, public {config.lb.public_url}")
    table.add_row("drain", f"a pool stays idle {config.deploy.min_idle_s:g} s after a switch, "
                  f"then up to {config.deploy.drain_timeout_s:g} s for open connections")
    gates = config.gates
    table.add_row("gates", f">= {gates.min_samples_per_host} samples/host, errors <= "
                  f"{gates.max_error_ratio:.2%}, p99 <= {gates.max_p99_ms:g} ms, "
                  f"p95 ratio <= {gates.max_p95_ratio:g}")
    table.add_row("runs", config.runs_url or str(config.runs_dir))
    table.add_row("lock", f"{config.lock_url} (TTL {config.lock.ttl_s:g} s)")
    out.print(table)


@click.command()
@click.argument("project_dir", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to write it (default: bgkit.toml in the project).")
def init(project_dir: Path, output: Path | None) -> None:
    """Write a commented bgkit.toml for the CMake project in PROJECT_DIR (default: here).

    The name and version come from project(), the executable from install(TARGETS ...);
    both pools get placeholder hosts to replace. An existing file is never replaced.
    """
    from bgkit.scaffold import write_config

    target, project = write_config(project_dir, output or project_dir / "bgkit.toml")
    out.print(f"wrote {target}: {escape(project.name)} {escape(project.version)}, executable "
              f"{escape(project.executable)}")
    out.print("next: replace the placeholder hosts and the load balancer settings, then "
              f"`bgkit config check {target}`")


@click.command()
@config_option
@click.option("--version", "version", default=None, help="Override [app].version.")
def build(config_path: Path | None, version: str | None) -> None:
    """Build, test and package the app into a reproducible release."""
    from bgkit.artifact import build_release

    config = _load(config_path)
    with err.status("building") as status:
        result = build_release(config, version=version,
                               on_progress=lambda stage: status.update(f"build: {stage}"))
    out.print(f"release  {result.release}")
    out.print(f"artifact {result.artifact}")
    out.print(f"sha256   {result.sha256}")
    out.print(f"built in {result.duration_s:.1f} s ({len(result.manifest['files'])} files)")


@click.command()
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

    config = _load(config_path)
    source = notebooks.find(step, notebooks_dir)
    values = cli_parameters(source, typed=list(parameters), raw=list(raw))
    try:
        result = run_step(step, config=config, parameters=values, notebooks_dir=notebooks_dir)
    except StepFailed as failure:
        print_head(failure.head, failure.keyed_head)
        raise
    out.print(f"{result.step} run {result.run_id} {result.outcome} in {result.duration_s:.1f} s")
    out.print(f"record: {result.path}")
    print_head(result.head, result.keyed_head)


@click.command()
@config_option
@artifact_option
@click.option("--release", "release_id", default=None, metavar="ID",
              help="Redeploy the release with this id: its artifact in [app].dist_dir if it "
                   "is there, else as every host of the pool keeps it under releases/<id> "
                   "(nothing is uploaded).")
@click.option("--pool", type=click.Choice(POOLS), default=None,
              help="Target pool; it must be the idle one (default: the idle one).")
@json_option
def deploy(config_path: Path | None, artifact: Path | None, release_id: str | None,
           pool: str | None, as_json: bool) -> None:
    """Deploy a release to every host of the idle pool; the live pool is never touched."""
    from bgkit.deploy import deploy as deploy_release
    from bgkit.deploy import hosts_table
    from bgkit.errors import DeployError, HookFailed
    from bgkit.progress import LiveProgress, progress_for
    from bgkit.release_check import artifact_for, check_release_name
    from bgkit.runbook.actions import archive_action

    config = _load(config_path)
    if artifact is not None and release_id is not None:
        raise UsageError("give --artifact (a file) or --release (an id), not both")
    release = None
    if release_id is not None:
        local = config.dist_dir / f"{check_release_name(f'{release_id}.tar.gz')}.tar.gz"
        if local.exists():
            release = artifact_for(config, local)
            out.print(f"{escape(release_id)}: its artifact is in {escape(str(config.dist_dir))}"
                      " (a host that has it installed is not sent it again)")
    else:
        release = artifact_for(config, artifact)
    name = release.release if release else str(release_id)
    display = progress_for(err, "deploy")
    started = now()
    parameters = {"release": name, **({"artifact": str(release.path)} if release else {})}
    try:
        with display if isinstance(display, LiveProgress) else nullcontext():
            result = deploy_release(config, release=release,
                                    kept=None if release else release_id, pool=_pool(pool),
                                    progress=display)
    except (DeployError, HookFailed) as error:
        table = hosts_table(error.results if isinstance(error, DeployError) else ())
        failed: dict[str, object] = {"ok": False, "error": str(error), "release": name}
        if isinstance(error, HookFailed):
            failed["hooks"] = [error.result.to_dict()]
        kept: dict[str, object] = {"deploy": failed}
        if len(table):  # none when it was refused before any host was touched
            kept["hosts"] = table
        run = archive_action(config, step="02_deploy_green", front_door="cli",
                             started=started, outcome="failed", reason=str(error),
                             summary=f"deploy failed: {error}", parameters=parameters,
                             records=kept)
        if as_json:
            print_json({"deploy": failed, "hosts": table.to_dict("records"),
                        "run_id": run.run_id})
        else:
            if len(table):
                print_frame(table, title="per-host result")
            print_hooks(failed.get("hooks", ()))
        err.print(f"archived as run {run.run_id} ({run.path})")
        raise
    records: dict[str, object] = {"deploy": result.record(), "hosts": result.table()}
    if config.service.files:
        records["files"] = result.files_table()
    if result.lock_takeover:
        print_takeover(result.lock_takeover)
        records["lock_takeover"] = result.lock_takeover
    run = archive_action(config, step="02_deploy_green", front_door="cli", started=started,
                         outcome="succeeded", reason=None,
                         summary=f"deployed {result.release} to the {result.pool} pool",
                         parameters=parameters, records=records)
    if as_json:
        print_json({"deploy": result.record(), "hosts": result.table().to_dict("records"),
                    "run_id": run.run_id})
        return
    print_frame(result.table(), title=f"{result.release} on the {result.pool} pool "
                f"(live: {result.live_pool})")
    if result.kept_on_hosts:
        out.print(f"{escape(result.release)} is kept on the hosts: deployed from "
                  "releases/<id> there, nothing uploaded")
    if result.cut:
        out.print(f"[yellow]{result.cut} connection(s) were still open when hosts restarted "
                  "([deploy].drain_timeout_s ran out): they were cut[/]")
    if config.service.files:
        print_frame(result.files_table(), title="host files (sha256; changed by this deploy)")
    print_hooks(result.hooks)
    out.print(f"archived as run {run.run_id} ({run.path})")


@click.group("host")
def host_group() -> None:
    """One-time, privileged setup of real servers (manager = "systemd")."""


@host_group.command("setup")
@config_option
@click.option("--pool", type=click.Choice(POOLS), default=None,
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

    config = _load(config_path)
    setups = host_setups(config, pool=_pool(pool), address=address)
    if out_dir is not None:
        for folder, setup in zip(write_setups(setups, out_dir), setups, strict=True):
            out.print(f"{escape(setup.host.label)}: {folder}")
        return
    if len(setups) > 1:
        raise UsageError(f"{len(setups)} hosts match: pass --pool and --host to print one "
                         "host's script, or --out DIR to write them all")
    click.echo(setups[0].script, nl=False)


@click.command()
@config_option
@json_option
def status(config_path: Path | None, as_json: bool) -> None:
    """Show the live pool (and any canary split), every host's release, service and
    health, and the release each pool last served live."""
    from bgkit.lb import get_provider
    from bgkit.runbook.backends import open_archive
    from bgkit.status import fleet_status

    config = _load(config_path)
    result = fleet_status(config, lb=get_provider(config))
    if as_json:
        print_json({"live_pool": result.live_pool,
                    "canary": {"percent": result.canary, "pool": result.canary_pool},
                    "hosts": result.table().to_dict("records"),
                    "last_live": result.pools_table().to_dict("records")})
        return
    print_frame(result.table(), title=result.headline())
    print_frame(result.pools_table(), title="last live, per pool (what a rollback goes back to)")
    runs_in_progress(open_archive(config))


@click.command()
@config_option
@artifact_option
@click.option("--samples", "samples", type=click.IntRange(min=1), default=None,
              help="Samples per host (default: twice [gates].min_samples_per_host).")
@click.option("--rate", type=click.FloatRange(min=1), default=200.0, show_default=True,
              help="Requests per second, all targets together.")
@json_option
def verify(config_path: Path | None, artifact: Path | None, samples: int | None,
           rate: float, as_json: bool) -> None:
    """Sample the idle and live pools and judge the idle one by the gates.

    Exit 0 on pass, 1 on fail, 3 on inconclusive.
    """
    from bgkit.lb import get_provider
    from bgkit.release_check import artifact_for
    from bgkit.verify import verify as run_verify

    config = _load(config_path)
    release = artifact_for(config, artifact)
    with err.status("sampling"):
        result = run_verify(config, lb=get_provider(config), expected_version=release.version,
                            samples_per_host=samples, rate_per_s=rate, release=release.release)
    if as_json:
        print_json({**result.to_dict(), "exit_code": result.exit_code})
        if result.exit_code:
            raise click.exceptions.Exit(result.exit_code)
        return
    summary = result.verdict.summary
    columns = ["pool", "host", "target", "samples", "ok_ratio", "p50_ms", "p95_ms", "p99_ms",
               "max_ms", "versions"]
    print_frame(summary.reindex(columns=columns).round(2),
                title=f"samples (idle: {result.idle_pool}, live: {result.live_pool}, "
                f"expected release {release.release})")
    print_frame(result.verdict.gate_table(), title="gates")
    colour = {"pass": "green", "fail": "red"}.get(result.verdict.overall, "yellow")
    out.print(f"verdict: [{colour}]{result.verdict.overall}[/]")
    for reason in result.verdict.reasons():
        out.print(f"  {escape(reason)}")
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)


@click.command("release")
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

    config = _load(config_path)
    result = release(config, approve=approve, version=version, notebooks_dir=notebooks_dir)
    out.print(f"pipeline {result.pipeline_id}")
    for run in result.runs:
        out.print(f"  {run.step:<16} [green]{run.outcome}[/] {run.duration_s:6.1f} s  {run.path}")
    if result.failed is not None:
        print_head(result.failed.head, result.failed.keyed_head)
        raise result.failed
    if result.runs:
        print_head(result.runs[-1].head, result.runs[-1].keyed_head)


@click.command("switch")
@config_option
@artifact_option
@click.option("--approve", is_flag=True, help="Switch if the gates pass (else: not approved).")
@click.option("--message", "-m", default="switch", help="Why, for the lock and the record.")
@click.option("--canary", "canary", type=click.IntRange(0, 99), multiple=True,
              metavar="PERCENT",
              help="Before the full switch, send PERCENT of requests to the idle pool for "
                   "[switch].canary_hold_s and watch each pool; repeat for steps "
                   "(--canary 5 --canary 25); --canary 0: none. Default: [switch].canary.")
@json_option
def switch_command(config_path: Path | None, artifact: Path | None, approve: bool,
                   message: str, canary: tuple[int, ...], as_json: bool) -> None:
    """Gate on fresh evidence, then move all traffic to the idle pool and watch it.

    Exit 0 switched (or already live), 1 refused / not approved / canary failed /
    switched back, 3 inconclusive.
    """
    from bgkit.lb import get_provider
    from bgkit.release_check import artifact_for
    from bgkit.switch import switch

    config = _load(config_path)
    release = artifact_for(config, artifact)
    started = now()
    steps = _canary_steps(canary)
    with err.status("sampling, switching, watching"), _archived_if_stopped(
            config, "04_switch", started, {"version": release.version,
                                           "release": release.release}):
        outcome = switch(config, lb=get_provider(config), expected_version=release.version,
                         approve=approve, message=message, release=release.release,
                         canary=steps)
    _show_outcome(config, outcome, started, as_json,
                  {"version": release.version, "release": release.release})


@contextmanager
def _archived_if_stopped(config: Config, step: str, started: Any,
                         pins: dict[str, str]) -> Iterator[None]:
    """A switch or rollback stopped by Ctrl-C, SIGTERM or an unexpected error still leaves
    a run (outcome ``interrupted`` or ``failed``) saying where the load balancer stands
    after its cleanup; an error raised before anything ran (bad usage, the lock held by
    another, the live pool unreadable) leaves none."""
    from bgkit.errors import LeaseLost, LoadBalancerError, LockHeld

    try:
        yield
    except (KeyboardInterrupt, Exception) as error:
        before = isinstance(error, UsageError | ConfigError | LoadBalancerError) or (
            isinstance(error, LockHeld) and not isinstance(error, LeaseLost))
        if before:
            raise
        from bgkit.runbook.actions import archive_action

        stopped = isinstance(error, KeyboardInterrupt)
        how = ("stopped by SIGTERM" if isinstance(error, Terminated) else
               "stopped by Ctrl-C") if stopped else f"stopped by an error: {error}"
        where = _lb_after(config)
        reason = f"{how}; after its cleanup the load balancer says: {where}"
        with suppress(Exception):
            run = archive_action(config, step=step, front_door="cli", started=started,
                                 outcome="interrupted" if stopped else "failed",
                                 reason=reason, summary=reason, parameters=pins,
                                 records={"stopped": {"how": how, "load_balancer": where}})
            err.print(f"archived as run {run.run_id} ({run.path})")
        raise


def _lb_after(config: Config) -> str:
    """The load balancer's state in words, or why it could not be read."""
    from bgkit.lb import get_provider

    try:
        return get_provider(config).state().describe()
    except Exception as error:  # said, never raised: the stop goes on
        return f"it could not be read ({error})"


def _canary_steps(percents: tuple[int, ...]) -> list[int] | None:
    """``--canary`` values as the switch takes them: None (the config's) when not given,
    [] for ``--canary 0``; rising percents otherwise.

    Raises:
        UsageError: 0 among other steps, or steps that do not rise.
    """
    if not percents:
        return None
    if percents == (0,):
        return []
    if 0 in percents or any(b <= a for a, b in pairwise(percents)):
        raise UsageError("--canary: give rising percents from 1 to 99 (--canary 5 --canary "
                         f"25), or --canary 0 alone for none; got "
                         f"{', '.join(map(str, percents))}")
    return list(percents)


def _show_outcome(config: Config, outcome: Any, started: Any, as_json: bool,
                  pins: dict[str, str]) -> None:
    """Print a switch or rollback, archive it (every one, from any front door, leaves a
    run), and exit with its outcome's code."""
    from bgkit.runbook.actions import archive_switch

    run = archive_switch(config, outcome, started=started, front_door="cli", pins=pins)
    if as_json:
        print_json({**outcome.to_dict(), "run_id": run.run_id, "head": run.head})
    else:
        print_outcome(outcome)
        out.print(f"  archived as run {run.run_id} ({run.path})")
        print_head(run.head, run.keyed_head)
    if outcome.exit_code:
        raise click.exceptions.Exit(outcome.exit_code)


@click.command("rollback")
@config_option
@click.option("--approve", is_flag=True, help="Roll back if the other pool is healthy.")
@click.option("--message", "-m", default="rollback", help="Why, for the lock and the record.")
@json_option
def rollback_command(config_path: Path | None, approve: bool, message: str,
                     as_json: bool) -> None:
    """Move all traffic back to the other pool, to the release it served when it was last
    live: refused when its hosts serve another one now, or when it is not healthy."""
    from bgkit.lb import get_provider
    from bgkit.switch import rollback

    config = _load(config_path)
    started = now()
    with err.status("sampling, switching back, watching"), _archived_if_stopped(
            config, "05_rollback", started, {}):
        outcome = rollback(config, lb=get_provider(config), approve=approve, message=message)
    _show_outcome(config, outcome, started, as_json,
                  {"release": outcome.release} if outcome.release else {})
