"""``bgkit runs list | show | verify | html``: read the archive of executed runbooks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from bgkit.cli.render import (
    archive_of,
    cell,
    config_if_any,
    config_option,
    err,
    escape,
    out,
    print_record,
    runs_dir_option,
    runs_in_progress,
)
from bgkit.errors import UsageError


@click.group("runs")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines for machines.")
def runs_list(config_path: Path | None, runs_dir: Path | None, step: str | None,
              outcome: str | None, release: str | None, since: str | None,
              pipeline: str | None, as_json: bool) -> None:
    """Print the archive as a table, oldest first."""
    from rich.table import Table

    from bgkit.runbook.archive import list_runs
    from bgkit.runbook.filters import has_pipelines, parse_since, select_runs, with_pipeline

    since_time = parse_since(since) if since is not None else None
    archive, _ = archive_of(config_path, runs_dir)
    folder = archive.folder
    runs_in_progress(archive)
    everything = with_pipeline(list_runs(folder))
    runs = select_runs(everything, step=step, outcome=outcome, release=release,
                       since=since_time, pipeline=pipeline)
    if as_json:
        for row in json.loads(runs.to_json(orient="records", date_format="iso")):
            click.echo(json.dumps(row, sort_keys=True))
        return
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
        duration = "" if _missing(row["duration_s"]) else f"{row['duration_s']:.1f} s"
        when = "" if _missing(row["time"]) else row["time"].strftime("%Y-%m-%d %H:%M:%SZ")
        cells = [when, str(row["step"]), str(row["run_id"]),
                 f"[{colour}]{escape(str(row['outcome']))}[/]", duration,
                 cell(None if _missing(row["operator"]) else row["operator"]),
                 cell(None if _missing(row["release"]) else row["release"])]
        if pipelines:
            cells.append("" if _missing(row["pipeline"]) else escape(str(row["pipeline"])))
        table.add_row(*cells)
    out.print(table)


def _missing(value: object) -> bool:
    import pandas as pd

    return bool(value is None or pd.isna(value))  # type: ignore[call-overload]


@runs_group.command("show")
@click.argument("run_id")
@config_option
@runs_dir_option
def runs_show(run_id: str, config_path: Path | None, runs_dir: Path | None) -> None:
    """Print one run's parameters, outcome and recorded results."""
    from bgkit.runbook.archive import find_run, show_run

    details = show_run(find_run(archive_of(config_path, runs_dir)[0].folder, run_id))
    meta = details.metadata
    out.print(f"[bold]{escape(str(meta.get('step')))} run {escape(str(meta.get('run_id')))}[/]"
              f"  {details.path}")
    for key in ("outcome", "reason", "release", "operator", "front_door", "started_at",
                "finished_at", "duration_s", "bgkit_version"):
        value = details.outcome if key == "outcome" else meta.get(key)
        if value is not None:
            out.print(f"  {key:<14}{escape(str(value))}")
    git = meta.get("git") or {}
    out.print(f"  {'git':<14}{git.get('commit')}{' (dirty)' if git.get('dirty') else ''}")
    out.print("[bold]parameters[/]")
    for name, value in details.parameters.items():
        out.print(f"  {escape(name)} = {escape(repr(value))}")
    out.print("[bold]records[/]")
    for name, item in details.records.items():
        print_record(name, item)


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
    archive, outside = archive_of(config_path, runs_dir, fresh=True)
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

    config = config_if_any(config_path) if runs_dir is None or config_path else None
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
