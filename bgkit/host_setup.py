"""``bgkit host setup``: what an administrator installs once on each systemd host.

:func:`host_setups` gives, for each selected host of bgkit.toml, the unit, the sudoers
file and the script that installs both (built in :mod:`bgkit.commands.host_setup`);
:func:`write_setups` writes them into a folder for configuration management. Nothing
here connects to a host: the privileged step stays with the administrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bgkit.commands import host_setup as cmd
from bgkit.commands import service
from bgkit.config import Config
from bgkit.errors import UsageError
from bgkit.hosts import Host, hosts_of
from bgkit.lb.base import PoolName

__all__ = ["HostSetup", "host_setups", "setup_hint", "write_setups"]


@dataclass(frozen=True, slots=True)
class HostSetup:
    """One host's setup: each file's text and where it goes on the host."""

    host: Host
    unit_path: str
    unit: str
    sudoers_path: str
    sudoers: str
    script: str


def host_setups(config: Config, *, pool: PoolName | None = None,
                address: str | None = None) -> list[HostSetup]:
    """The setup of every host of ``pool`` (default: both) at ``address`` (default: any).

    Raises:
        UsageError: ``[service].manager`` is not ``systemd``, or no host matches.
    """
    if config.service.manager != "systemd":
        raise UsageError(f'host setup is for [service] manager = "systemd"; this config '
                         f'uses "{config.service.manager}", which needs none')
    pools: list[PoolName] = [pool] if pool else ["blue", "green"]
    hosts = [h for name in pools for h in hosts_of(config, name)
             if address is None or h.address == address]
    if not hosts:
        raise UsageError(f"no host of {'/'.join(pools)} has the address {address}; "
                         f"the hosts are {', '.join(_labels(config))}")
    return [_setup(config, host) for host in hosts]


def _setup(config: Config, host: Host) -> HostSetup:
    return HostSetup(
        host=host,
        unit_path=service.unit_path(config),
        unit=service.render_unit(config, root=host.root),
        sudoers_path=cmd.sudoers_path(config),
        sudoers=cmd.render_sudoers(config, user=host.user),
        script=cmd.setup_script(config, root=host.root, user=host.user, label=host.label),
    )


def _labels(config: Config) -> list[str]:
    return [h.label for name in ("blue", "green") for h in hosts_of(config, name)]


def write_setups(setups: list[HostSetup], out_dir: Path) -> list[Path]:
    """Write each host's ``setup.sh``, unit and sudoers file to ``out_dir/<pool>-<index>/``.

    Returns the folders written, one per host.
    """
    folders = []
    for setup in setups:
        folder = out_dir / f"{setup.host.pool}-{setup.host.index}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "setup.sh").write_text(setup.script)
        (folder / "setup.sh").chmod(0o755)
        (folder / setup.unit_path.rsplit("/", 1)[-1]).write_text(setup.unit)
        (folder / setup.sudoers_path.rsplit("/", 1)[-1]).write_text(setup.sudoers)
        folders.append(folder)
    return folders


def setup_hint(config: Config, host: Host) -> str:
    """The command an administrator runs to set ``host`` up (for error messages)."""
    return (f"an administrator sets the host up once: bgkit host setup --config "
            f"{config.path} --pool {host.pool} --host {host.address} > setup.sh, "
            "then runs setup.sh as root on that host")
