"""OpenSSH's own resolution of a host (``ssh -G``) and a parser of its answer (pure).

bgkit reads its hosts' SSH settings as plain ``ssh`` would: ``ssh -G`` evaluates
``~/.ssh/config`` and ``/etc/ssh/ssh_config`` (or the ``-F`` file), with ``Host``,
``Match`` and ``Include``, and prints the effective HostName, User, Port, IdentityFile
and ProxyJump. Fabric/paramiko then connect with exactly those values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Hop", "SshTarget", "parse_hops", "parse_resolved", "resolve_argv"]

_HOP = re.compile(r"(?:ssh://)?(?:(?P<user>[^@\[\]]+)@)?"
                  r"(?:\[(?P<bracketed>[^\]]+)\]|(?P<host>[^:@\[\]]+))(?::(?P<port>\d+))?")


@dataclass(frozen=True, slots=True)
class Hop:
    """One ProxyJump hop as written: ``[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class SshTarget:
    """What ``ssh -G`` says about a host."""

    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...] = ()
    proxy_jump: tuple[Hop, ...] = ()
    proxy_command: str | None = None


def resolve_argv(address: str, *, port: int | None, user: str | None,
                 config_file: Path | None) -> list[str]:
    """``ssh -G`` for ``address``; ``port`` and ``user`` win over the config, like -p/-l."""
    argv = ["ssh", "-G"]
    if config_file is not None:
        argv += ["-F", str(config_file)]
    if port is not None:
        argv += ["-p", str(port)]
    if user is not None:
        argv += ["-l", user]
    return [*argv, "--", address]


def parse_hops(text: str) -> tuple[Hop, ...]:
    """ProxyJump's value (``none`` or comma-separated hops), first hop first.

    Raises:
        ValueError: a hop is not ``[user@]host[:port]``.
    """
    if text.strip().lower() in ("", "none"):
        return ()
    hops = []
    for part in text.split(","):
        found = _HOP.fullmatch(part.strip())
        if found is None:
            raise ValueError(f"ProxyJump hop {part.strip()!r} is not [user@]host[:port]")
        port = found.group("port")
        hops.append(Hop(host=found.group("bracketed") or found.group("host"),
                        user=found.group("user"), port=int(port) if port else None))
    return tuple(hops)


def parse_resolved(text: str) -> SshTarget:
    """Parse ``ssh -G`` output (one ``key value`` per line, keys in any case).

    Raises:
        ValueError: hostname, user or port is missing, or a ProxyJump hop is malformed.
    """
    single: dict[str, str] = {}
    identities: list[str] = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        key = key.lower()
        if key == "identityfile":
            identities.append(value.strip())
        elif key and key not in single:
            single[key] = value.strip()
    try:
        port = int(single["port"])
        hostname, user = single["hostname"], single["user"]
    except (KeyError, ValueError) as error:
        raise ValueError(f"unexpected `ssh -G` output ({error}): {text[:200]!r}") from error
    command = single.get("proxycommand")
    return SshTarget(hostname=hostname, user=user, port=port,
                     identity_files=tuple(identities),
                     proxy_jump=parse_hops(single.get("proxyjump", "")),
                     proxy_command=None if command in (None, "none") else command)

