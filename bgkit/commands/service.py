"""Commands that restart, stop and inspect the service on a host, and its systemd unit.

Two managers share one shape:

- ``systemd`` (real servers): a generated unit, controlled with ``sudo -n systemctl``.
- ``sandbox`` (``bgkit sandbox``): Debian's ``start-stop-daemon`` starts the service in
  the background with a pid file in ``<root>/shared/run/service.pid`` and output in
  ``<root>/shared/log/service.log``; stopping is SIGTERM, a wait for the drain, then
  SIGKILL, counting a zombie as stopped (this machine's init reaps late, and
  ``start-stop-daemon --stop`` waits for the reaping).

The service always starts in ``<root>/current`` and runs ``current/<executable>``, so
a restart after a symlink swap runs the new release.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from bgkit.config import Config

__all__ = [
    "SANDBOX_LOG",
    "SANDBOX_PIDFILE",
    "ServiceCommands",
    "expand_args",
    "install_unit",
    "render_unit",
    "service_commands",
    "unit_name",
]

SANDBOX_PIDFILE = "shared/run/service.pid"
# By full path: non-root SSH sessions on Debian have no /sbin in PATH.
STOP_DAEMON = "/sbin/start-stop-daemon"
SANDBOX_LOG = "shared/log/service.log"
SUDOERS_HINT = (
    "the deploy user needs passwordless sudo for exactly: "
    "systemctl daemon-reload, systemctl enable|restart|stop|is-active <unit>, "
    "install -m 0644 <file> /etc/systemd/system/<unit>, journalctl -u <unit>"
)


@dataclass(frozen=True, slots=True)
class ServiceCommands:
    """Shell commands for one host's service; each is a complete command string."""

    restart: str
    stop: str
    is_running: str  # exits 0 when the service process runs
    log_tail: str


def expand_args(args: Sequence[str], *, root: str) -> list[str]:
    """[service].args with {root}, {shared} and {current} filled in for one host."""
    values = {"root": root, "shared": f"{root}/shared", "current": f"{root}/current"}
    return [arg.format(**values) for arg in args]


def unit_name(config: Config) -> str:
    return config.service.systemd.unit or f"{config.app.name}.service"


def service_commands(config: Config, *, root: str) -> ServiceCommands:
    if config.service.manager == "sandbox":
        return _sandbox(config, root=root)
    return _systemd(config)


def _alive(pid: str) -> str:
    """True while ``pid`` runs; a zombie has exited (an init that reaps late leaves them)."""
    return (f'[ -n "{pid}" ] && [ -e /proc/{pid} ] && '
            f"! grep -q '^State:[[:space:]]*Z' /proc/{pid}/status 2>/dev/null")


def _sandbox_stop(pidfile: str, grace_s: int) -> str:
    """SIGTERM, wait up to ``grace_s`` for the drain, then SIGKILL; remove the pid file."""
    quoted = shlex.quote(pidfile)
    ticks = grace_s * 20
    return (f'if [ -f {quoted} ]; then pid=$(cat {quoted}); '
            f'if kill -TERM "$pid" 2>/dev/null; then i=0; '
            f'while {_alive("$pid")} && [ "$i" -lt {ticks} ]; do sleep 0.05; i=$((i+1)); done; '
            f'if {_alive("$pid")}; then kill -KILL "$pid"; fi; fi; rm -f -- {quoted}; fi')


def _sandbox(config: Config, *, root: str) -> ServiceCommands:
    pidfile, log = f"{root}/{SANDBOX_PIDFILE}", f"{root}/{SANDBOX_LOG}"
    grace = math.ceil(config.service.drain_timeout_s) + 1
    stop = _sandbox_stop(pidfile, grace)
    start = shlex.join([
        STOP_DAEMON, "--start", "--quiet", "--background", "--make-pidfile",
        "--pidfile", pidfile, "--chdir", f"{root}/current", "--output", log,
        "--startas", f"{root}/current/{config.service.executable}", "--",
        *expand_args(config.service.args, root=root),
    ])
    folders = shlex.join(["mkdir", "-p", "--", f"{root}/shared/run", f"{root}/shared/log"])
    return ServiceCommands(
        restart=f"{folders} && {stop} && {start}",
        stop=stop,
        is_running=f"pid=$(cat {shlex.quote(pidfile)} 2>/dev/null) && {_alive('$pid')}",
        log_tail=f"tail -n 20 -- {shlex.quote(log)} 2>/dev/null || true",
    )


def _systemd(config: Config) -> ServiceCommands:
    unit = unit_name(config)
    return ServiceCommands(
        restart=shlex.join(["sudo", "-n", "systemctl", "restart", unit]),
        stop=shlex.join(["sudo", "-n", "systemctl", "stop", unit]),
        is_running=shlex.join(["sudo", "-n", "systemctl", "is-active", "--quiet", unit]),
        log_tail=shlex.join(["sudo", "-n", "journalctl", "-u", unit, "-n", "20", "--no-pager"])
        + " 2>/dev/null || true",
    )


def install_unit(config: Config, *, uploaded: str) -> str:
    """Install an uploaded unit file, reload systemd and enable the unit."""
    unit = unit_name(config)
    return " && ".join([
        shlex.join(["sudo", "-n", "install", "-m", "0644", uploaded,
                    f"/etc/systemd/system/{unit}"]),
        shlex.join(["sudo", "-n", "systemctl", "daemon-reload"]),
        shlex.join(["sudo", "-n", "systemctl", "enable", unit]),
    ])


def _unit_quote(arg: str) -> str:
    """Quote one ExecStart argument the way systemd's own parser reads it."""
    if arg and all(c.isalnum() or c in "-_./=:,@+" for c in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    escaped = escaped.replace("$", "$$").replace("\n", "\\n")
    return f'"{escaped}"'


def render_unit(config: Config, *, root: str) -> str:
    """The systemd unit for the service on a host whose deploy root is ``root``."""
    settings = config.service.systemd
    exec_start = " ".join(_unit_quote(a) for a in [
        f"{root}/current/{config.service.executable}",
        *expand_args(config.service.args, root=root)])
    writable = " ".join(_unit_quote(p) for p in (f"{root}/shared", *settings.read_write_paths))
    lines = [
        "[Unit]",
        f"Description={config.app.name.replace('%', '%%')} (deployed by bgkit)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={settings.user}",
        f"Group={settings.group or settings.user}",
        f"WorkingDirectory={(root + '/current').replace('%', '%%')}",
        f"ExecStart={exec_start}",
        f"Restart={settings.restart}",
        "RestartSec=1",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"TimeoutStopSec={math.ceil(config.service.drain_timeout_s) + 5}",
        f"LimitNOFILE={settings.limit_nofile}",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        f"ReadWritePaths={writable}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)
