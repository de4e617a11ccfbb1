"""What the commands print with: the consoles, shared options, tables and outcome lines.

Text from hosts, load balancers and the archive is escaped for rich markup everywhere.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bgkit.cli.app import JSON_STATE

if TYPE_CHECKING:
    from bgkit.config import Config
    from bgkit.runbook.backends import Archive
    from bgkit.runbook.index import Finding

__all__ = ["archive_of", "cell", "config_if_any", "config_option", "err", "error_line",
           "escape", "json_option", "now", "out", "print_frame", "print_head", "print_hooks",
           "print_json", "print_outcome", "print_record", "print_takeover", "runs_dir_option",
           "runs_in_progress"]

# Piped output (CI logs, tests) gets wide lines instead of rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path), default=None,
    help="bgkit.toml to use (default: $BGKIT_CONFIG, then ./bgkit.toml).")
runs_dir_option = click.option(
    "--runs-dir", type=click.Path(path_type=Path), default=None,
    help="Archive folder (default: [runs].dir of bgkit.toml).")


def _json_asked(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    JSON_STATE["asked"] = JSON_STATE["asked"] or value
    return value


json_option = click.option(
    "--json", "as_json", is_flag=True, callback=_json_asked,
    help="Print one JSON object on stdout for machines (progress still goes to stderr); "
         "its shape is in README.md, 'JSON output'.")


def print_json(value: object) -> None:
    """``value`` as one line of JSON on stdout, nothing else."""
    click.echo(json.dumps(value, sort_keys=True, default=str))
    JSON_STATE["printed"] = True


def json_error(message: str, code: int, kind: str) -> None:
    """Under --json, an error that printed no object prints ``{"error", "exit_code",
    "kind"}`` on stdout: a machine always reads one object (the line on stderr stays)."""
    if JSON_STATE["asked"] and not JSON_STATE["printed"]:
        print_json({"error": message, "exit_code": code, "kind": kind})


def error_line(message: str) -> None:
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def now() -> datetime:
    return datetime.now(UTC)


def cell(value: object) -> str:
    return "" if value is None else escape(str(value))


def print_frame(frame: Any, *, title: str) -> None:
    """A DataFrame as a table, every cell escaped."""
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*(cell(value) for value in row))
    out.print(table)


def print_head(head: str | None, keyed_head: str | None) -> None:
    """The archive's head after a run: keep it elsewhere, check with --expect-head."""
    if head:
        out.print(f"archive head: {head}")
    if keyed_head:
        out.print(f"keyed head:   {keyed_head}")


def print_takeover(took: dict[str, Any]) -> None:
    err.print(f"[yellow]took over the deployment lock[/] of {escape(str(took.get('owner')))} "
              f"(pid {took.get('pid')} on {escape(str(took.get('host')))}): "
              f"{escape(str(took.get('reason')))}")


def print_hooks(hooks: Any) -> None:
    """One line per hook that ran (its exit and duration), then its output tail, indented;
    the tail is the command's text, printed as text (never as rich markup)."""
    for hook in hooks:
        colour = "green" if hook["ok"] else "red"
        ended = "ok" if hook["ok"] else hook["problem"]
        out.print(f"  hook {hook['name']}: [{colour}]{escape(ended)}[/] in "
                  f"{hook['duration_s']:.1f} s")
        for line in str(hook["output_tail"]).splitlines()[-10:]:
            out.print(f"    | {escape(line)}")


def print_outcome(outcome: Any) -> None:
    """A switch or rollback outcome: what happened, where traffic is, the watch."""
    from bgkit.canary import describe_step

    colour = "green" if outcome.exit_code == 0 else "red"
    if outcome.takeover:
        print_takeover(outcome.takeover)
    if outcome.converged:
        out.print(f"  converged: {escape(outcome.converged)}")
    out.print(f"{outcome.action}: [{colour}]{outcome.ended}[/] — {escape(outcome.reason)}")
    out.print(f"  traffic was on {outcome.from_pool}, now on {outcome.live_pool}")
    if outcome.release:
        out.print(f"  release: {escape(outcome.release)}")
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
    for step in outcome.canary:
        out.print(f"  {escape(describe_step(step))}")
    print_hooks(outcome.hooks)
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


def print_record(name: str, item: dict[str, Any]) -> None:
    """One ``record()`` of an archived run: a table, or indented JSON."""
    value = item["value"]
    if item["kind"] == "table" and isinstance(value, list) and value:
        table = Table(title=name)
        columns = item.get("columns") or list(value[0])
        for column in columns:
            table.add_column(str(column))
        for row in value:
            table.add_row(*(cell(row.get(column)) for column in columns))
        out.print(table)
    else:
        out.print(f"  {name}: {escape(json.dumps(value, indent=2))}")


def config_if_any(config_path: Path | None) -> Config | None:
    """The config when one is given or found, else None (for commands that can do without)."""
    from bgkit.config import load_config
    from bgkit.errors import ConfigError

    try:
        return load_config(config_path)
    except ConfigError:
        if config_path is not None:
            raise
        return None


def archive_of(config_path: Path | None, runs_dir: Path | None, *,
               fresh: bool = False) -> tuple[Archive, list[Finding]]:
    """The archive to read (``--runs-dir``, else bgkit.toml's: a folder or a bucket), its
    local folder brought up to date (``fresh``: every object read again); findings the
    folder cannot show."""
    from bgkit.runbook.backends import open_archive

    config = None
    if runs_dir is None:
        from bgkit.config import load_config

        config = load_config(config_path)
    archive = open_archive(config, runs_dir=runs_dir)
    return archive, archive.refresh(fresh=fresh)


def runs_in_progress(archive: Archive) -> None:
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
