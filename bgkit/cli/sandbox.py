"""``bgkit sandbox up | down | status``: parse, call one library function, print.

Errors propagate as ``bgkit.errors`` exceptions; ``bgkit.cli`` maps them to exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from bgkit.cli.render import escape, out
from bgkit.sandbox.fleet import (
    DEFAULT_SOURCE,
    DEFAULT_STATE_DIR,
    sandbox_down,
    sandbox_status,
    sandbox_up,
)
from bgkit.sandbox.results import SandboxStatus
from bgkit.words import PROVIDERS

__all__ = ["sandbox_group"]


dir_option = click.option(
    "--dir", "state_dir", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR, show_default=True,
    help="State directory: everything the sandbox creates lives here.")


@click.group("sandbox")
def sandbox_group() -> None:
    """A local fleet on this machine: sshd hosts on loopback addresses behind HAProxy
    (and, with --lb ovh-iplb or ovh-cloud-lb, the OVH API emulator)."""


@sandbox_group.command("up")
@dir_option
@click.option("--hosts", type=click.IntRange(1, 254), default=2, show_default=True,
              help="Hosts per pool (blue i at 127.0.1.i, green i at 127.0.2.i).")
@click.option("--app-port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port every host serves the app on.")
@click.option("--public-port", type=click.IntRange(1, 65535), default=8000,
              show_default=True, help="HAProxy's public port on 127.0.0.1.")
@click.option("--ssh-port", type=click.IntRange(1, 65535), default=2222, show_default=True,
              help="SSH port on every host address.")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_SOURCE, show_default=True, help="The sample service's sources.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run archive for the written bgkit.toml (default: <dir>/runs).")
@click.option("--lb", type=click.Choice(PROVIDERS),
              default="haproxy", show_default=True,
              help="What bgkit switches through: HAProxy directly, or the OVH API emulator "
                   "in front of it as IP Load Balancing (ovh-iplb) or as a Public Cloud "
                   "Load Balancer (ovh-cloud-lb).")
@click.option("--manager", type=click.Choice(["sandbox", "systemd"]), default="sandbox",
              show_default=True,
              help="How hosts run the service: start-stop-daemon, or each host a "
                   "systemd-nspawn container under a real systemd (root only).")
@click.option("--bastion", is_flag=True,
              help="Reach the hosts only through a bastion sshd on 127.0.9.1 (ProxyJump in "
                   "the written ssh/config; hosts accept the deploy key only from it).")
@click.option("--shared", type=click.Choice(["file", "s3"]), default="file",
              show_default=True,
              help="Where the lock and the run archive live: files in the state directory, or "
                   "a local S3 server (SeaweedFS) that every working directory shares, as "
                   "OVHcloud Object Storage would.")
@click.option("--free-ports", is_flag=True,
              help="Pick app, public and SSH ports that are free on every sandbox address "
                   "(for a second sandbox beside yours, e.g. the tests').")
def up(state_dir: Path, hosts: int, app_port: int, public_port: int, ssh_port: int,
       source: Path, runs_dir: Path | None, lb: str, manager: str, bastion: bool,
       shared: str, free_ports: bool) -> None:
    """Start the fleet (or find it running) and write <dir>/bgkit.toml."""
    if free_ports:
        from bgkit.sandbox.ports import free_ports as pick

        app_port, public_port, ssh_port = pick(3, hosts=hosts)
    info = sandbox_up(state_dir, hosts=hosts, app_port=app_port, public_port=public_port,
                      ssh_port=ssh_port, source=source, runs_dir=runs_dir, lb=lb,
                      manager=manager, bastion=bastion, shared=shared)
    out.print(escape(info.usage()))


@sandbox_group.command("down")
@dir_option
@click.option("--purge", is_flag=True, help="Also delete the state directory.")
def down(state_dir: Path, purge: bool) -> None:
    """Stop every process the sandbox started; keep dist/ and runs/ unless --purge."""
    stopped = sandbox_down(state_dir, purge=purge)
    for process in stopped:
        how = "killed" if process.forced else "stopped"
        out.print(f"{how} {escape(process.role)} (pid {process.pid})")
    if not stopped:
        out.print("nothing was running")
    if purge:
        out.print(f"deleted {escape(str(state_dir))}")


@sandbox_group.command("status")
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def status(state_dir: Path, as_json: bool) -> None:
    """Show the sandbox's processes and hosts."""
    result = sandbox_status(state_dir)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    out.print(_process_table(result))
    out.print(_host_table(result))


def _mark(alive: bool) -> str:
    return "[green]yes[/]" if alive else "[red]no[/]"


def _process_table(result: SandboxStatus) -> Table:
    table = Table(title=f"sandbox {escape(str(result.state_dir))}")
    for column in ("process", "pid", "alive"):
        table.add_column(column)
    for state in result.processes:
        table.add_row(escape(state.role), str(state.pid or "-"), _mark(state.alive))
    return table


def _host_table(result: SandboxStatus) -> Table:
    table = Table(title="hosts")
    for column in ("pool", "host", "address", "deploy root", "current release", "service"):
        table.add_column(column)
    for host in result.hosts:
        service = f"pid {host.service_pid} {_mark(host.service_alive)}" if host.service_pid \
            else "-"
        table.add_row(host.pool, host.name, host.address, escape(str(host.deploy_root)),
                      escape(host.current_release or "-"), service)
    return table
