"""The one place that executes commands on hosts, over SSH with Fabric.

``Fleet.each(hosts, work)`` runs ``work(session)`` for every host with bounded parallel
fan-out and returns one :class:`HostResult` per host, failed or not. A :class:`Session`
runs command strings (built and quoted in ``bgkit.commands``) and uploads files, with
timeouts; paramiko and invoke errors become :class:`bgkit.errors.HostError` saying which
host and what to do. Host keys are always checked against the configured known_hosts.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from bgkit.commands import service, ssh
from bgkit.config import Config, HostConfig
from bgkit.errors import HostError

__all__ = ["CommandResult", "Fleet", "Host", "HostResult", "Progress", "Session", "hosts_of",
           "resolve_ssh"]

T = TypeVar("T")
_REFRESH_S = 0.25  # how often a refreshable progress is redrawn while hosts work


@dataclass(frozen=True, slots=True)
class Host:
    """One server of one pool; ``port`` and ``user`` are None where the SSH config decides."""

    pool: str
    index: int
    address: str
    port: int | None
    user: str | None
    root: str
    name: str = ""

    @property
    def label(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.pool}[{self.index}] {user}{self.address}{port}"

    def values(self, config: Config, *, version: str = "", release: str = "") -> dict[str, str]:
        """Its placeholder values (``[service].args``, ``[[service.files]]``)."""
        return service.placeholder_values(config, root=self.root, address=self.address,
                                          host=self.name or self.address, pool=self.pool,
                                          version=version, release=release)


def hosts_of(config: Config, pool: str) -> list[Host]:
    configured: Sequence[HostConfig] = config.pools.get(pool).hosts  # type: ignore[arg-type]
    return [Host(pool=pool, index=i, address=h.address, port=h.port, user=h.user,
                 root=h.deploy_root.rstrip("/") or "/", name=h.name or h.address)
            for i, h in enumerate(configured)]


def resolve_ssh(config: Config, address: str, *, port: int | None = None,
                user: str | None = None) -> ssh.SshTarget:
    """What OpenSSH's config says about ``address`` (``ssh -G``), as plain ``ssh`` reads it.

    Raises:
        HostError: ssh is not installed, or its config is broken.
    """
    argv = ssh.resolve_argv(address, port=port, user=user, config_file=config.ssh_config_file)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HostError(address, f"cannot run `ssh -G`: {error}",
                        hint="install openssh-client") from error
    if done.returncode != 0:
        raise HostError(address, f"OpenSSH refused its config: {done.stderr.strip()[:300]}",
                        hint="check [ssh].config_file or ~/.ssh/config with `ssh -G HOST`")
    try:
        return ssh.parse_resolved(done.stdout)
    except ValueError as error:
        raise HostError(address, str(error)) from error


def _existing_keys(paths: Sequence[str]) -> list[str]:
    """The identity files that exist (``ssh -G`` lists OpenSSH's defaults either way)."""
    return [str(path) for path in (Path(p).expanduser() for p in paths) if path.is_file()]


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 10) -> str:
        text = (self.stderr.strip() or self.stdout.strip())
        return "\n".join(text.splitlines()[-lines:])


@dataclass(slots=True)
class HostResult(Generic[T]):
    """What happened on one host: its value, or the error that stopped it."""

    host: Host
    value: T | None = None
    error: str | None = None
    steps: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class Progress(Protocol):
    """Hears each host's step, from the fan-out's worker threads. A progress that also
    has ``refresh()`` is redrawn from the calling (main) thread while the hosts work."""

    def update(self, host: Host, step: str) -> None: ...


class _Silent:
    def update(self, host: Host, step: str) -> None:
        return None


class Session:
    """Commands and uploads on one host, through one SSH connection."""

    def __init__(self, host: Host, connection: Any, *, command_timeout_s: float,
                 progress: Progress, result: HostResult[Any]) -> None:
        self.host = host
        self._connection = connection
        self._timeout = command_timeout_s
        self._progress = progress
        self._result = result

    def step(self, name: str) -> None:
        """Say what this host is doing now (shown in the progress display)."""
        self._result.steps.append(name)
        self._progress.update(self.host, name)

    def run(self, command: str, *, check: bool = True,
            timeout_s: float | None = None) -> CommandResult:
        """Run a shell command; with ``check``, a non-zero exit raises HostError."""
        from invoke.exceptions import CommandTimedOut

        timeout = int(timeout_s or self._timeout)
        started = time.monotonic()
        try:
            done = self._connection.run(command, hide=True, warn=True, in_stream=False,
                                        timeout=timeout)
        except CommandTimedOut as error:
            raise self._timed_out(command, error.timeout) from error
        except Exception as error:
            raise _translate(self.host, error) from error
        if done.exited == -1 and time.monotonic() - started >= timeout:
            # invoke closed the channel at the timeout but did not say so: the exit status
            # -1 is SSH's "no status", and the time is the timeout's
            raise self._timed_out(command, timeout)
        result = CommandResult(command, done.exited, done.stdout, done.stderr)
        if check and not result.ok:
            raise HostError(self.host.label, f"exit {result.exit_code}: {result.tail(5)}")
        return result

    def _timed_out(self, command: str, timeout: float) -> HostError:
        return HostError(self.host.label, f"command timed out after {timeout:g} s: "
                         f"{command[:120]}", hint="is the host overloaded?")

    def put(self, local: Path, remote: str) -> None:
        try:
            self._connection.put(str(local), remote=remote)
        except Exception as error:
            raise _translate(self.host, error, action=f"upload to {remote}") from error


def _translate(host: Host, error: BaseException, *, action: str = "connect") -> HostError:
    """A paramiko/invoke/socket error as a HostError that says what to do."""
    import paramiko
    from paramiko.ssh_exception import NoValidConnectionsError

    name = host.label
    if isinstance(error, paramiko.BadHostKeyException):
        return HostError(name, "its host key does not match known_hosts",
                         hint="if the server was rebuilt, verify and update known_hosts")
    if isinstance(error, paramiko.SSHException) and "not found in known_hosts" in str(error):
        return HostError(name, "its host key is not in known_hosts",
                         hint="add it after checking it: ssh-keyscan -p PORT HOST, compare "
                         "the fingerprint, append to [ssh].known_hosts")
    if isinstance(error, paramiko.AuthenticationException):
        return HostError(name, f"SSH authentication failed as {host.user}",
                         hint="check [ssh].identity_file or your SSH agent, and the user")
    if isinstance(error, NoValidConnectionsError | ConnectionRefusedError):
        return HostError(name, "connection refused",
                         hint="is sshd running and listening on that address and port?")
    if isinstance(error, socket.timeout | TimeoutError):
        return HostError(name, f"timed out trying to {action}",
                         hint="check the address, firewalls and [deploy].connect_timeout_s")
    if isinstance(error, OSError):
        return HostError(name, f"could not {action}: {error.strerror or error}")
    return HostError(name, f"could not {action}: {type(error).__name__}: {error}")


class Fleet:
    """SSH access to the hosts of a config, with bounded parallel fan-out.

    Used as a context manager, a Fleet keeps each host's connection open across calls
    to :meth:`each` (one handshake per host for a whole deploy) and closes them at the
    end; otherwise every call connects and disconnects.
    """

    def __init__(self, config: Config, *, progress: Progress | None = None,
                 fanout: int | None = None) -> None:
        self.config = config
        self.fanout = fanout or config.deploy.fanout
        self.progress: Progress = progress or _Silent()
        self._open: dict[Host, Any] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Fleet:
        self._open = {}
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            connections, self._open = list((self._open or {}).values()), None
        for connection in connections:
            _close(connection)

    def each(self, hosts: Sequence[Host], work: Callable[[Session], T]) -> list[HostResult[T]]:
        """Run ``work`` on every host (at most ``fanout`` at once); one result per host."""
        results: list[HostResult[T]] = [HostResult(host=host) for host in hosts]
        if not hosts:
            return results
        refresh = getattr(self.progress, "refresh", None)
        with ThreadPoolExecutor(max_workers=min(self.fanout, len(hosts))) as pool:
            pending = {pool.submit(self._one, result, work) for result in results}
            while pending:
                _, pending = wait(pending, timeout=_REFRESH_S)
                if callable(refresh):
                    refresh()
        return results

    def _one(self, result: HostResult[T], work: Callable[[Session], T]) -> None:
        started = time.monotonic()
        try:
            with self._session(result) as session:
                result.value = work(session)
            self.progress.update(result.host, "done")
        except HostError as error:
            result.error = str(error).removeprefix(f"{result.host.label}: ")
            self.progress.update(result.host, f"failed: {result.error}")
        except Exception as error:  # a bug or a foreign error: still this host's result
            result.error = f"{type(error).__name__}: {error}"
            self.progress.update(result.host, f"failed: {result.error}")
        finally:
            result.duration_s = time.monotonic() - started

    @contextmanager
    def _session(self, result: HostResult[Any]) -> Iterator[Session]:
        host = result.host
        connection = self._cached(host)
        if connection is None:
            self.progress.update(host, "connecting")
            connection = self._connect(host)
        keep = False
        try:
            yield Session(host, connection, command_timeout_s=self.config.deploy.command_timeout_s,
                          progress=self.progress, result=result)
            keep = self._keep(host, connection)
        finally:
            if not keep:
                _close(connection)

    def _cached(self, host: Host) -> Any:
        with self._lock:
            connection = self._open.pop(host, None) if self._open is not None else None
        if connection is not None and connection.is_connected:
            return connection
        return None

    def _keep(self, host: Host, connection: Any) -> bool:
        with self._lock:
            if self._open is None:
                return False
            self._open[host] = connection
            return True

    def _connect(self, host: Host) -> Any:
        target = resolve_ssh(self.config, host.address, port=host.port, user=host.user)
        connection = self._connection(host, target,
                                      gateway=self._gateway(host, target, depth=0))
        try:
            connection.open()
        except Exception as error:
            _close(connection)
            raise _translate(host, error) from error
        return connection

    def _connection(self, host: Host, target: ssh.SshTarget, *, gateway: Any) -> Any:
        """A Fabric connection to ``target`` through ``gateway``, its host key checked
        against known_hosts."""
        import paramiko
        from fabric import Config as FabricConfig
        from fabric import Connection

        timeout = self.config.deploy.connect_timeout_s
        keys = _existing_keys(target.identity_files)
        if self.config.identity_file is not None:
            keys.insert(0, str(self.config.identity_file))
        connect_kwargs: dict[str, Any] = {"banner_timeout": timeout, "auth_timeout": timeout}
        if keys:
            connect_kwargs["key_filename"] = keys
        connection = Connection(
            target.hostname, user=target.user, port=target.port,
            connect_timeout=int(timeout), connect_kwargs=connect_kwargs,
            config=FabricConfig(lazy=True), gateway=gateway)
        client: paramiko.SSHClient = connection.client
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        known_hosts = self.config.known_hosts
        if not known_hosts.is_file():
            raise HostError(host.label, f"known_hosts file {known_hosts} does not exist",
                            hint="set [ssh].known_hosts; bgkit never trusts unknown host keys")
        with _HOST_KEYS_LOCK:
            client.load_host_keys(str(known_hosts))
        return connection

    def _gateway(self, host: Host, target: ssh.SshTarget, *, depth: int) -> Any:
        """The last ProxyJump hop's connection (it reaches through the earlier ones), a
        ProxyCommand string, or False for a direct connection."""
        if target.proxy_jump:
            if depth >= MAX_JUMPS:
                raise HostError(host.label, f"more than {MAX_JUMPS} ProxyJump hops",
                                hint="check ProxyJump in the SSH config for a loop")
            gateway: Any = False
            for index, hop in enumerate(target.proxy_jump):
                resolved = resolve_ssh(self.config, hop.host, port=hop.port, user=hop.user)
                # The first hop is reached as its own config says; each next one through
                # the hop before it.
                through = self._gateway(host, resolved, depth=depth + 1) if index == 0 \
                    else gateway
                gateway = self._connection(host, resolved, gateway=through)
            return gateway
        return target.proxy_command or False


MAX_JUMPS = 8


def _close(connection: Any) -> None:
    """Close a connection and the ProxyJump hops it went through (Fabric leaves them open)."""
    while connection is not None and connection is not False:
        connection.close()
        gateway = getattr(connection, "gateway", None)
        connection = gateway if hasattr(gateway, "close") else None
_HOST_KEYS_LOCK = threading.Lock()
