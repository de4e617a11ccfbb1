"""The HAProxy provider: reads and switches the live pool through the runtime API.

Routing contract (``bgkit sandbox up`` generates exactly this; copy it on real servers)::

    global
        stats socket /run/haproxy/admin.sock mode 600 level admin   # runtime_api

    frontend app
        bind :80
        use_backend %[str(live),map(/etc/haproxy/bgkit-live.map,blue)]

    backend blue
        option httpchk
        http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost
        http-check expect status 200
        server blue-1 10.0.1.1:8080 check
    backend green
        ...

and ``/etc/haproxy/bgkit-live.map`` holds one line, ``live blue``. In bgkit.toml,
``[lb.haproxy]`` names the same socket and the same map path (``map_file`` must be
spelled exactly as in ``map(...)``: it is both HAProxy's name for the map and the file
bgkit rewrites), and ``backends`` maps the pools to the backend names.

- ``live_pool()`` reads the ``live`` entry with ``show map`` and maps the backend name
  back to blue or green.
- ``switch()`` writes the new map file next to the old one, sets the entry with
  ``set map`` (the runtime change HAProxy applies at once), then renames the new file
  into place so that a reload keeps the switch, and reads back until HAProxy reports
  it. If HAProxy refuses, the file is left untouched; if the rename fails, the runtime
  entry is set back. bgkit must therefore run where it can write ``map_file``.
- ``backend_health()`` reads ``show stat``: one entry per server of both backends,
  healthy when HAProxy says UP (``UP``, ``UP 1/2``...) after at least one check: a
  freshly (re)started HAProxy reports unchecked servers UP with check status ``INI``.

The runtime API needs ``level admin``. ``runtime_api`` is a unix socket path
(``/run/haproxy/admin.sock``, ``unix@/path``) or a TCP address (``127.0.0.1:9999``,
``ipv4@127.0.0.1:9999``, ``ipv6@[::1]:9999``). One command is sent per connection.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bgkit.commands import haproxy as cmd
from bgkit.config import HaproxySettings
from bgkit.errors import LoadBalancerError
from bgkit.lb.base import BackendServer, PoolName, SwitchResult

__all__ = ["HaproxyProvider", "RuntimeApi", "RuntimeEndpoint", "runtime_endpoint"]

POLL_INTERVAL_S = 0.02
_TCP = re.compile(r"(?:(ipv4|ipv6)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")


@dataclass(frozen=True, slots=True)
class RuntimeEndpoint:
    """Where the runtime API listens: a unix socket path, or a TCP host and port."""

    family: socket.AddressFamily
    address: str | tuple[str, int]

    def __str__(self) -> str:
        if isinstance(self.address, str):
            return self.address
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def runtime_endpoint(text: str, *, base_dir: Path | None = None) -> RuntimeEndpoint:
    """Parse ``[lb.haproxy].runtime_api``; a relative socket path joins ``base_dir``."""
    match = _TCP.fullmatch(text)
    if match is not None and not text.startswith("unix@"):
        kind, host, port = match.groups()
        host = host.strip("[]")
        family = socket.AF_INET6 if kind == "ipv6" or ":" in host else socket.AF_INET
        return RuntimeEndpoint(family, (host, int(port)))
    path = Path(text.removeprefix("unix@")).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return RuntimeEndpoint(socket.AF_UNIX, str(path))


class RuntimeApi:
    """HAProxy's runtime API at one endpoint; ``run`` sends one command per connection."""

    def __init__(self, endpoint: RuntimeEndpoint, *, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s

    def run(self, command: str) -> str:
        """Send ``command`` and return HAProxy's whole answer.

        Raises:
            LoadBalancerError: the socket cannot be reached, or no answer in time.
        """
        try:
            with socket.socket(self.endpoint.family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(self.endpoint.address)
                sock.sendall(command.encode() + b"\n")
                return _read_all(sock).decode("utf-8", errors="replace")
        except OSError as error:
            raise LoadBalancerError(self._explain(command, error)) from error

    def _explain(self, command: str, error: OSError) -> str:
        where = f"HAProxy's runtime API at {self.endpoint}"
        doing = " ".join(command.split(" ")[:2])
        if isinstance(error, TimeoutError):
            return (f"{where} did not answer `{doing}` within {self.timeout_s:g} s; "
                    "is HAProxy overloaded or stopped?")
        if isinstance(error, PermissionError):
            return (f"cannot open {where}: permission denied; run bgkit as a user allowed "
                    "by the `stats socket` line (its mode/user/group options)")
        if isinstance(error, FileNotFoundError | ConnectionRefusedError):
            return (f"cannot reach {where} ({error.strerror or error}); is HAProxy running, "
                    "and does [lb.haproxy].runtime_api match the `stats socket` line of "
                    "haproxy.cfg?")
        return f"{where} failed during `{doing}`: {error}"


def _read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


class HaproxyProvider:
    """The :class:`bgkit.lb.base.LoadBalancer` primitives over HAProxy's runtime API."""

    name: str = "haproxy"

    def __init__(self, settings: HaproxySettings, *, base_dir: Path | None = None,
                 timeout_s: float = 5.0) -> None:
        map_path = Path(settings.map_file).expanduser()
        if base_dir is not None and not map_path.is_absolute():
            map_path = base_dir / map_path
        try:
            cmd.show_map(str(map_path))
        except ValueError as error:
            raise LoadBalancerError(f"[lb.haproxy].map_file: {error}") from error
        self.settings = settings
        self.map_file = map_path
        self.backends: dict[PoolName, str] = {"blue": settings.backends.blue,
                                              "green": settings.backends.green}
        self.api = RuntimeApi(runtime_endpoint(settings.runtime_api, base_dir=base_dir),
                              timeout_s=timeout_s)

    # --- the LoadBalancer primitives ------------------------------------------------

    def live_pool(self) -> PoolName:
        """The pool whose backend the map's ``live`` entry names, as HAProxy has it now.

        Raises:
            LoadBalancerError: unreachable, unknown map, no ``live`` entry, or a backend
                that is neither pool's.
        """
        answer = self.api.run(cmd.show_map(str(self.map_file)))
        try:
            entries = cmd.parse_map(answer)
        except ValueError as error:
            raise LoadBalancerError(
                f"HAProxy cannot list the map {self.map_file} ({error}); [lb.haproxy].map_file "
                "must be spelled exactly as in the map() converter of haproxy.cfg") from error
        backend = entries.get("live")
        if backend is None:
            raise LoadBalancerError(
                f"the map {self.map_file} has no `live` entry; it must hold one line "
                f"`live <backend>`, e.g. `live {self.backends['blue']}`")
        return self._pool_of(backend)

    def switch(self, pool: PoolName, *, timeout_s: float) -> SwitchResult:
        """Route all traffic to ``pool``; return once HAProxy reports it live.

        Raises:
            LoadBalancerError: HAProxy unreachable or refusing, the map file not writable
                (nothing is changed then), or the switch not visible within ``timeout_s``.
        """
        started = time.monotonic()
        previous = self.live_pool()
        backend = self.backends[pool]
        self._require_backend(backend)
        staged = self._stage_map_file(backend)
        try:
            self._set_live(backend)
        except LoadBalancerError:
            if not self._applied_anyway(pool):  # e.g. a timeout after HAProxy acted
                staged.unlink(missing_ok=True)
                raise
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        self._install_map_file(staged, previous)
        self._wait_until_live(pool, started + timeout_s, timeout_s)
        return SwitchResult(previous=previous, live=pool,
                            applied_s=time.monotonic() - started)

    def backend_health(self) -> list[BackendServer]:
        """Every server of the blue and green backends, in HAProxy's order.

        Raises:
            LoadBalancerError: unreachable, unreadable stats, or a backend HAProxy lacks.
        """
        rows = self._stat_rows()
        servers: list[BackendServer] = []
        for pool, backend in self.backends.items():
            if not any(row.proxy == backend for row in rows):
                raise LoadBalancerError(self._missing_backend(pool, backend))
            servers.extend(_server(pool, row) for row in rows
                           if row.proxy == backend and row.is_server)
        return servers

    # --- steps ------------------------------------------------------------------------

    def _pool_of(self, backend: str) -> PoolName:
        for pool, name in self.backends.items():
            if name == backend:
                return pool
        raise LoadBalancerError(
            f"the map {self.map_file} says live is backend {backend!r}, which is neither "
            f"blue ({self.backends['blue']!r}) nor green ({self.backends['green']!r}) in "
            "[lb.haproxy].backends; fix the map or the config before switching")

    def _stat_rows(self) -> list[cmd.StatRow]:
        answer = self.api.run(cmd.show_stat())
        try:
            return cmd.parse_stat_csv(answer)
        except ValueError as error:
            raise LoadBalancerError(f"HAProxy's `show stat` answer is unreadable: {error}") \
                from error

    def _require_backend(self, backend: str) -> None:
        answer = self.api.run(cmd.show_backend())
        try:
            names = cmd.parse_backend_list(answer)
        except ValueError as error:
            raise LoadBalancerError(f"HAProxy's `show backend` answer is unreadable: {error}") \
                from error
        if backend not in names:
            pool = next(p for p, name in self.backends.items() if name == backend)
            raise LoadBalancerError(self._missing_backend(pool, backend))

    def _missing_backend(self, pool: PoolName, backend: str) -> str:
        return (f"HAProxy has no backend named {backend!r} ([lb.haproxy].backends.{pool}); "
                "name the backends of haproxy.cfg there")

    def _set_live(self, backend: str) -> None:
        command = cmd.set_map(str(self.map_file), "live", backend)
        answer = self.api.run(command).strip()
        if not answer:
            return
        hint = "the map must already hold a `live` line"
        if "permission denied" in answer.lower():
            hint = "the `stats socket` line of haproxy.cfg needs `level admin`"
        raise LoadBalancerError(f"HAProxy refused `{command}`: {answer} ({hint})")

    def _stage_map_file(self, backend: str) -> Path:
        """The new map text in a temporary file beside ``map_file`` (same mode and owner)."""
        try:
            current = self.map_file.read_text(encoding="utf-8")
            mode = self.map_file.stat()
            text = cmd.render_map_file(current, "live", backend)
            handle, name = tempfile.mkstemp(dir=self.map_file.parent,
                                            prefix=f".{self.map_file.name}.", suffix=".tmp")
        except OSError as error:
            raise LoadBalancerError(
                f"cannot prepare the map file {self.map_file} ({error}); bgkit must run where "
                "it can read and write [lb.haproxy].map_file so that a reload keeps the "
                "switch; nothing was switched") from error
        staged = Path(name)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            staged.chmod(mode.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(staged, mode.st_uid, mode.st_gid)
        except OSError as error:
            staged.unlink(missing_ok=True)
            raise LoadBalancerError(f"cannot write beside the map file {self.map_file}: "
                                    f"{error}; nothing was switched") from error
        return staged

    def _install_map_file(self, staged: Path, previous: PoolName) -> None:
        try:
            staged.replace(self.map_file)
        except OSError as error:
            staged.unlink(missing_ok=True)
            undo = f"the runtime entry was set back to {previous}"
            try:
                self._set_live(self.backends[previous])
            except LoadBalancerError as undo_error:
                undo = f"setting the runtime entry back to {previous} failed too: {undo_error}"
            raise LoadBalancerError(
                f"cannot replace the map file {self.map_file}: {error}; {undo}") from error

    def _applied_anyway(self, pool: PoolName) -> bool:
        try:
            return self.live_pool() == pool
        except LoadBalancerError:
            return False

    def _wait_until_live(self, pool: PoolName, deadline: float, timeout_s: float) -> None:
        while True:
            live = self.live_pool()
            if live == pool:
                return
            if time.monotonic() >= deadline:
                raise LoadBalancerError(
                    f"HAProxy accepted the switch to {pool} but still reports {live} after "
                    f"{timeout_s:g} s")
            time.sleep(POLL_INTERVAL_S)


def _server(pool: PoolName, row: cmd.StatRow) -> BackendServer:
    host, _, port = row.address.rpartition(":")
    if not host or not port.isdigit():
        host, port = row.address, "0"
    checked = not row.check_status.lstrip("* ").startswith("INI")
    return BackendServer(pool=pool, name=row.name, address=host.strip("[]"), port=int(port),
                         status=row.status, healthy=row.status.startswith("UP") and checked,
                         detail=_check_detail(row))


def _check_detail(row: cmd.StatRow) -> str:
    """``L4CON Layer4 connection problem: Connection refused``, or "" without checks."""
    status = row.check_status.lstrip("* ").strip()
    parts = [part for part in (status, row.check_description) if part]
    text = " ".join(parts)
    if row.last_check and row.last_check not in text:
        text = f"{text}: {row.last_check}" if text else row.last_check
    return text
