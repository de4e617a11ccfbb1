"""Commands that restart, stop and inspect the service on a host, and its systemd unit.

Two managers share one shape:

- ``systemd`` (real servers): a generated unit, installed once by an administrator
  (``bgkit host setup``) and then only restarted, stopped and queried by the deploy user
  through ``sudo -n`` with exactly the commands of :func:`privileged_commands`.
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
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from bgkit.config import Config
from bgkit.release_tree import has_control_character

__all__ = [
    "JOURNALCTL",
    "SANDBOX_LOG",
    "SANDBOX_PIDFILE",
    "SYSTEMCTL",
    "ServiceCommands",
    "expand_args",
    "privileged_commands",
    "render_unit",
    "service_commands",
    "unit_drift",
    "unit_name",
    "unit_path",
]

SANDBOX_PIDFILE = "shared/run/service.pid"
# By full path: non-root SSH sessions on Debian have no /sbin in PATH.
STOP_DAEMON = "/sbin/start-stop-daemon"
SANDBOX_LOG = "shared/log/service.log"
# By full path, as the sudoers file names them (Debian 12 and later: /bin is /usr/bin).
SYSTEMCTL = "/usr/bin/systemctl"
JOURNALCTL = "/usr/bin/journalctl"
_UNIT_BARE = re.compile(r"[A-Za-z0-9/_.,:@+=-]+")


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


def unit_path(config: Config) -> str:
    """Where the installed unit is read from (``[service.systemd].unit_dir``)."""
    return f"{config.service.systemd.unit_dir.rstrip('/')}/{unit_name(config)}"


def privileged_commands(config: Config) -> dict[str, list[str]]:
    """The only commands the deploy user runs as root, by name; sudoers grants exactly these."""
    unit = unit_name(config)
    return {
        "restart": [SYSTEMCTL, "restart", unit],
        "stop": [SYSTEMCTL, "stop", unit],
        "is_running": [SYSTEMCTL, "is-active", "--quiet", unit],
        "log_tail": [JOURNALCTL, "-u", unit, "-n", "20", "--no-pager"],
    }


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
    sudo = {name: shlex.join(["sudo", "-n", *argv])
            for name, argv in privileged_commands(config).items()}
    return ServiceCommands(restart=sudo["restart"], stop=sudo["stop"],
                           is_running=sudo["is_running"],
                           log_tail=sudo["log_tail"] + " 2>/dev/null || true")


def unit_drift(installed: str, rendered: str) -> str | None:
    """What differs between the unit a host has and the one the config renders, or None.

    ``installed`` is "" when the host has no such file.
    """
    if installed == rendered:
        return None
    if not installed:
        return "is not installed"
    have, want = installed.splitlines(), rendered.splitlines()
    for number, (line, expected) in enumerate(zip(have, want, strict=False), start=1):
        if line != expected:
            return (f"differs from the one bgkit.toml renders at line {number}: the host has "
                    f"{line!r}, bgkit.toml renders {expected!r}")
    longer = "more" if len(have) > len(want) else "fewer"
    return f"differs from the one bgkit.toml renders: it has {longer} lines"


def _unit_text(text: str) -> str:
    """A value as systemd reads it literally: specifiers ('%') doubled, controls refused.

    Raises:
        ValueError: ``text`` holds a control character, which no unit line can carry.
    """
    if has_control_character(text):
        raise ValueError(f"{text!r} has a control character: a systemd unit cannot hold it")
    return text.replace("%", "%%")


def _unit_word(word: str, *, argument: bool = False) -> str:
    """One word of a list setting, quoted as systemd unquotes it (systemd.syntax(7)).

    Backslash and double quote are escaped inside double quotes; in a command's
    ``argument`` (not its executable path) ``$`` is doubled too, so that no environment
    variable is expanded (systemd.service(5), "Command lines").
    """
    text = _unit_text(word)
    if argument:
        text = text.replace("$", "$$")
    if _UNIT_BARE.fullmatch(word):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(config: Config, *, root: str) -> str:
    """The systemd unit for the service on a host whose deploy root is ``root``.

    It runs ``<root>/current/<executable>``, so it is the same for every release.

    Raises:
        ValueError: a value holds a control character (bgkit.toml refuses them already).
    """
    settings = config.service.systemd
    exec_start = " ".join([_unit_word(f"{root}/current/{config.service.executable}"), *(
        _unit_word(arg, argument=True) for arg in expand_args(config.service.args, root=root))])
    writable = " ".join(_unit_word(p) for p in (f"{root}/shared", *settings.read_write_paths))
    lines = [
        "[Unit]",
        f"Description={_unit_text(config.app.name)} (deployed by bgkit)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={_unit_text(settings.user)}",
        f"Group={_unit_text(settings.group or settings.user)}",
        f"WorkingDirectory={_unit_text(root + '/current')}",
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
