"""The one place that executes commands on hosts, over SSH with Fabric.

``Fleet.each(hosts, work)`` runs ``work(session)`` for every host with bounded parallel
fan-out and returns one :class:`HostResult` per host, failed or not. A :class:`Session`
runs command strings (built and quoted in ``bgkit.commands``) and uploads files, with
timeouts; paramiko and invoke errors become :class:`bgkit.errors.HostError` saying which
host and what to do. Host keys are always checked against the configured known_hosts.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from bgkit.config import Config, HostConfig
from bgkit.errors import HostError

__all__ = ["CommandResult", "Fleet", "Host", "HostResult", "Progress", "Session", "hosts_of"]

T = TypeVar("T")
_REFRESH_S = 0.25  # how often a refreshable progress is redrawn while hosts work


@dataclass(frozen=True, slots=True)
class Host:
    """One server of one pool."""

    pool: str
    index: int
    address: str
    port: int
    user: str
    root: str

    @property
    def label(self) -> str:
        return f"{self.pool}[{self.index}] {self.user}@{self.address}:{self.port}"


def hosts_of(config: Config, pool: str) -> list[Host]:
    configured: Sequence[HostConfig] = config.pools.get(pool).hosts  # type: ignore[arg-type]
    return [Host(pool=pool, index=i, address=h.address, port=h.port, user=h.user,
                 root=h.deploy_root.rstrip("/") or "/") for i, h in enumerate(configured)]


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

        try:
            done = self._connection.run(command, hide=True, warn=True, in_stream=False,
                                        timeout=int(timeout_s or self._timeout))
        except CommandTimedOut as error:
            raise HostError(self.host.label, f"command timed out after {error.timeout} s: "
                            f"{command[:120]}", hint="is the host overloaded?") from error
        except Exception as error:
            raise _translate(self.host, error) from error
        result = CommandResult(command, done.exited, done.stdout, done.stderr)
        if check and not result.ok:
            raise HostError(self.host.label, f"exit {result.exit_code}: {result.tail(5)}")
        return result

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
            connection.close()

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
                connection.close()

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
        import paramiko
        from fabric import Config as FabricConfig
        from fabric import Connection

        known_hosts = self.config.known_hosts
        connect_kwargs: dict[str, Any] = {"banner_timeout": self.config.deploy.connect_timeout_s,
                                          "auth_timeout": self.config.deploy.connect_timeout_s}
        if self.config.identity_file is not None:
            connect_kwargs["key_filename"] = str(self.config.identity_file)
        connection = Connection(
            host.address, user=host.user, port=host.port,
            connect_timeout=int(self.config.deploy.connect_timeout_s),
            connect_kwargs=connect_kwargs, config=FabricConfig(lazy=True),
        )
        client: paramiko.SSHClient = connection.client
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if not known_hosts.is_file():
            raise HostError(host.label, f"known_hosts file {known_hosts} does not exist",
                            hint="set [ssh].known_hosts; bgkit never trusts unknown host keys")
        with _HOST_KEYS_LOCK:
            client.load_host_keys(str(known_hosts))
        try:
            connection.open()
        except Exception as error:
            connection.close()
            raise _translate(host, error) from error
        return connection


_HOST_KEYS_LOCK = threading.Lock()
