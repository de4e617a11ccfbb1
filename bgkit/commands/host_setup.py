"""The one-time, privileged setup of a real server for ``manager = "systemd"`` (pure).

bgkit's deploy user never writes a unit or a sudoers file: whoever can write the unit
that root runs can run anything as root. An administrator (or configuration management)
installs both once per host, as root, and again whenever ``[service]`` or
``[service.systemd]`` change; a deploy then refuses a host whose installed unit differs
from the one the config renders, and names the command that prints the fix.

- the unit, at ``<unit_dir>/<unit>``: :func:`bgkit.commands.service.render_unit` for
  that host's deploy root. It runs ``<root>/current/...``, so no release changes it;
- ``/etc/sudoers.d/bgkit-<unit stem>`` (mode 0440, checked with ``visudo -cf``): the
  deploy user may run exactly :func:`bgkit.commands.service.privileged_commands` as root
  (restart, stop, is-active of that unit, and a read of its journal), nothing else.

These functions only build text; ``bgkit host setup`` prints or writes it.
"""

from __future__ import annotations

import re
import shlex

from bgkit.commands import service
from bgkit.config import Config

__all__ = ["SUDOERS_DIR", "render_sudoers", "setup_script", "sudoers_name", "sudoers_path"]

SUDOERS_DIR = "/etc/sudoers.d"
_SUDOERS_WORD = re.compile(r"[A-Za-z0-9._/-]+")
_UNIT_END = "BGKIT_UNIT_END"
_SUDOERS_END = "BGKIT_SUDOERS_END"


def sudoers_name(config: Config) -> str:
    """``bgkit-<unit stem>``: sudo skips files in sudoers.d whose name holds a '.'."""
    stem = service.unit_name(config).removesuffix(".service")
    return "bgkit-" + stem.replace(".", "_")


def sudoers_path(config: Config) -> str:
    return f"{SUDOERS_DIR}/{sudoers_name(config)}"


def render_sudoers(config: Config, *, user: str) -> str:
    """The sudoers file that lets ``user`` run exactly the service's privileged commands.

    Raises:
        ValueError: a word holds a character sudoers would read as syntax (bgkit.toml
            allows none such in user or unit names).
    """
    commands = [" ".join(_sudoers_word(word) for word in argv)
                for argv in service.privileged_commands(config).values()]
    unit = service.unit_name(config)
    return "\n".join([
        f"# {sudoers_path(config)}: written by `bgkit host setup`; mode 0440.",
        f"# The deploy user {user} may restart, stop and query {unit} and read its",
        "# journal as root, and nothing else: the unit itself is installed by an administrator.",
        f"{_sudoers_word(user)} ALL=(root) NOPASSWD: " + ", \\\n    ".join(commands),
        "",
    ])


def _sudoers_word(word: str) -> str:
    if not _SUDOERS_WORD.fullmatch(word):
        raise ValueError(f"{word!r} cannot stand in a sudoers file unescaped")
    return word


def setup_script(config: Config, *, root: str, user: str, label: str,
                 sudoers_dir: str = SUDOERS_DIR) -> str:
    """A POSIX shell script that sets up one host; an administrator runs it there as root.

    It checks the service user exists, creates the deploy root for ``user`` if missing,
    installs the unit and the sudoers file (each written beside its place, checked, then
    renamed into it), reloads systemd and enables the unit. Running it again is harmless.
    """
    unit_file = service.unit_path(config)
    sudoers = f"{sudoers_dir}/{sudoers_name(config)}"
    unit_tmp = _beside(unit_file)
    sudoers_tmp = f"{sudoers_dir}/.{sudoers_name(config)}.new"  # sudo skips dot-files
    service_user = config.service.systemd.user
    q = shlex.quote
    return "\n".join([
        "#!/bin/sh",
        f"# bgkit host setup for {label} (from {config.path.name}).",
        "# Run once as root on that host, and again after any change to [service] or",
        "# [service.systemd]: deploys only restart the unit, they never install it.",
        "set -eu",
        "umask 022",
        f"if ! id -u {q(service_user)} >/dev/null 2>&1; then",
        f"  echo {q(f'create the service user {service_user} first (useradd --system)')} >&2",
        "  exit 1",
        "fi",
        f"[ -d {q(root)} ] || install -d -m 0755 -o {q(user)} {q(root)}",
        f"mkdir -p -- {q(unit_file.rsplit('/', 1)[0])}",
        f"cat > {q(unit_tmp)} <<'{_UNIT_END}'",
        _heredoc_body(service.render_unit(config, root=root), _UNIT_END) + _UNIT_END,
        f"chmod 0644 {q(unit_tmp)}",
        f"mv -f -- {q(unit_tmp)} {q(unit_file)}",
        f"cat > {q(sudoers_tmp)} <<'{_SUDOERS_END}'",
        _heredoc_body(render_sudoers(config, user=user), _SUDOERS_END) + _SUDOERS_END,
        f"chmod 0440 {q(sudoers_tmp)}",
        f"visudo -cf {q(sudoers_tmp)} >/dev/null || {{ rm -f -- {q(sudoers_tmp)}; exit 1; }}",
        f"mv -f -- {q(sudoers_tmp)} {q(sudoers)}",
        "systemctl daemon-reload",
        shlex.join(["systemctl", "enable", service.unit_name(config)]),
        "",
    ])


def _beside(path: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}.bgkit-new"


def _heredoc_body(text: str, end: str) -> str:
    if any(line == end for line in text.splitlines()):
        raise ValueError(f"a line of the file is {end!r}, the here-document's end marker")
    return text if text.endswith("\n") else text + "\n"
