"""The HAProxy provider: reads and switches the live pool through the runtime API.

Routing contract (``bgkit sandbox up`` generates exactly this; copy it on real servers)::

    global
        stats socket /run/haproxy/admin.sock mode 600 level admin   # runtime_api

    frontend app
        bind :80
        # the canary: a share of requests to the idle pool, per the map (three lines)
        http-request set-var(txn.bgkit_canary) str(canary),map(/etc/haproxy/bgkit-live.map,0)
        acl bgkit_canary rand(100),sub(txn.bgkit_canary) lt 0
        use_backend %[str(idle),map(/etc/haproxy/bgkit-live.map,green)] if bgkit_canary
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
- ``switch()``, holding an ``flock`` of ``.<map>.bgkit-guard`` beside the map file:
  writes the new map text to the journal ``.<map>.bgkit-switch``, sets the entry with
  ``set map`` (the runtime change HAProxy applies at once), reads back until HAProxy
  reports it, then renames the journal onto the map file so that a reload keeps the
  switch. The map file therefore only ever holds a pool HAProxy confirmed live. If
  HAProxy refuses, the file is left untouched; if the rename fails, the runtime entry
  is set back. bgkit must run where it can write ``map_file`` and its folder.
- Every read compares the runtime's ``live`` entry with the map file's. If they differ
  and the journal exists, a switch was interrupted before it was confirmed: the runtime entry
  is set back to the file's (the last confirmed pool), the journal removed, and
  ``state()`` says so. If they differ without a journal, someone changed one by hand:
  the read is refused with the reason. Nothing else is left beside the map (a write that
  fails removes its partial file).
- ``split(pool, percent)`` (a canary): sets the map's ``idle`` entry to ``pool``'s
  backend and its ``canary`` entry to ``percent`` (``add map`` for an entry the map
  lacks) on the runtime and in the map file, in the order that leaves the file with the
  smaller share if it is interrupted: a larger share on the runtime first (read back),
  a smaller one (0 ends the split) in the file first. ``state()`` compares the split of
  the runtime and the file and ends one they disagree on;
  the frontend's three canary lines send each request to ``idle`` with probability
  ``percent``/100 (``rand(100)`` below it), every request is routed afresh, keep-alive
  or not. A config without those lines ignores the entries: the canary's measured share
  (0 %) then says so. ``state()`` reports the split.
- ``backend_health()`` reads ``show stat``: one entry per server of both backends,
  healthy when HAProxy says UP (``UP``, ``UP 1/2``...) after at least one check: a
  freshly (re)started HAProxy reports unchecked servers UP with check status ``INI``.
- ``open_sessions(pool)`` reads the same ``show stat``: each server's ``scur``, the
  sessions HAProxy holds on it now.

The runtime API needs ``level admin``. ``runtime_api`` is a unix socket path
(``/run/haproxy/admin.sock``, ``unix@/path``) or a TCP address (``127.0.0.1:9999``,
``ipv4@127.0.0.1:9999``, ``ipv6@[::1]:9999``). One command is sent per connection.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bgkit import flock
from bgkit.commands import haproxy as cmd
from bgkit.config import HaproxySettings
from bgkit.errors import LoadBalancerError, UsageError
from bgkit.lb.base import BackendServer, LbState, PoolName, ServerSessions, SwitchResult

__all__ = ["HaproxyProvider", "RuntimeApi", "RuntimeEndpoint", "runtime_endpoint"]

POLL_INTERVAL_S = 0.02
GUARD_TIMEOUT_S = 10.0
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
        self.journal = map_path.with_name(f".{map_path.name}.bgkit-switch")
        self.guard = map_path.with_name(f".{map_path.name}.bgkit-guard")
        self.backends: dict[PoolName, str] = {"blue": settings.backends.blue,
                                              "green": settings.backends.green}
        self.api = RuntimeApi(runtime_endpoint(settings.runtime_api, base_dir=base_dir),
                              timeout_s=timeout_s)

    # --- the LoadBalancer primitives ------------------------------------------------

    def live_pool(self) -> PoolName:
        """The pool whose backend the map's ``live`` entry names, as HAProxy has it now,
        once it agrees with the map file (repaired after an interrupted switch).

        Raises:
            LoadBalancerError: unreachable, unknown map, no ``live`` entry, a backend that
                is neither pool's, or runtime and file disagreeing for no known reason.
        """
        return self._agreed()[0]

    def state(self, *, wait_s: float = 0.0) -> LbState:
        """HAProxy applies at once and stages nothing: the live pool, any canary split,
        and any repair (of the live entry, or a split the runtime and file disagree on)."""
        pool, repaired = self._agreed()
        percent, canary_pool, ended = self._split_agreed()
        return LbState(live=pool, detail="; ".join(filter(None, (repaired, ended))),
                       canary=percent, canary_pool=canary_pool)

    def split(self, pool: PoolName, percent: int, *, timeout_s: float) -> None:
        """Send ``percent`` of requests to ``pool``'s backend (module docstring).

        The map file never holds a larger share than HAProxy confirmed: a larger share (or
        another pool) is set on the runtime first and written to the file once HAProxy
        reports it; a smaller one (0 ends the split) is written to the file first. So a
        crash between the two leaves the file with the smaller share, and :meth:`state`
        ends a split the runtime and the file disagree on.

        Raises:
            UsageError: ``percent`` outside 0-99.
            LoadBalancerError: HAProxy unreachable or refusing, the map file not writable
                (the runtime is then set back to what the file holds), or not applied in
                time.
        """
        if not 0 <= percent <= 99:
            raise UsageError(f"a canary share is a whole percent from 0 to 99, got {percent}")
        deadline = time.monotonic() + timeout_s
        with self._guarded():
            entries = self._runtime_map()
            now = _split_of(entries.get)
            wanted = {"canary": str(percent)} if percent == 0 else \
                {"idle": self.backends[pool], "canary": str(percent)}
            text = self._map_text()
            new_text = text
            for key, value in wanted.items():
                new_text = cmd.render_map_file(new_text, key, value)
            if percent == 0 or (percent <= now[0] and now[1] == self.backends[pool]):
                self._write_map(new_text, f"the split of {now[0]}% was left as it was")
                self._set_split(entries, wanted, deadline, f"{percent}% to {pool}", timeout_s)
                return
            self._set_split(entries, wanted, deadline, f"{percent}% to {pool}", timeout_s)
            try:
                _replace_file(self.map_file, new_text)
            except OSError as error:
                held = _split_of(partial(cmd.map_file_value, text))
                undo = {"canary": str(held[0])} | ({"idle": held[1]} if held[1] else {})
                with contextlib.suppress(LoadBalancerError):
                    self._set_split(self._runtime_map(), undo, time.monotonic() + timeout_s,
                                    "the map file's split", timeout_s)
                raise LoadBalancerError(
                    f"cannot rewrite the map file {self.map_file} ({error}); the runtime "
                    f"split was set back to what the file holds ({held[0]}%)") from error

    def split_refusal(self) -> None:
        """HAProxy can always split (the frontend's canary lines, module docstring)."""
        return None

    def _set_split(self, entries: dict[str, str], wanted: dict[str, str], deadline: float,
                   what: str, timeout_s: float) -> None:
        """Set the runtime map's ``wanted`` entries, then read back until HAProxy has them."""
        for key, value in wanted.items():
            self._set_entry(key, value, exists=key in entries)
        while True:
            entries = self._runtime_map()
            if all(entries.get(key) == value for key, value in wanted.items()):
                return
            if time.monotonic() >= deadline:
                raise LoadBalancerError(f"HAProxy accepted the canary split of {what} but "
                                        f"does not report it after {timeout_s:g} s")
            time.sleep(POLL_INTERVAL_S)

    def _split_agreed(self) -> tuple[int, PoolName | None, str]:
        """The canary share and its pool (0, None without one), once the runtime and the
        map file agree; if they do not (a split interrupted between the two), the split
        is ended on both (all traffic to the live pool): the third item says so."""
        runtime, now, text, written = self._splits()
        if now == written:
            return now[0], self._pool_or_none(now[1]), ""
        with self._guarded():
            runtime, now, text, written = self._splits()  # settled: a split may have ended
            if now == written:
                return now[0], self._pool_or_none(now[1]), ""
            self._write_map(cmd.render_map_file(text, "canary", "0"),
                            "the split was left as it was")
            self._set_split(runtime, {"canary": "0"}, time.monotonic() + GUARD_TIMEOUT_S,
                            "0%", GUARD_TIMEOUT_S)
        return 0, None, (
            f"HAProxy's runtime sent {now[0]}% of requests to {now[1] or 'no backend'} but "
            f"its map file says {written[0]}% to {written[1] or 'no backend'}: a canary split "
            "was interrupted between the two, so bgkit ended it (all traffic to the live pool)")

    def _splits(self) -> tuple[dict[str, str], tuple[int, str | None], str,
                               tuple[int, str | None]]:
        """The runtime map, its split, the map file's text, and the file's split."""
        runtime, text = self._runtime_map(), self._map_text()
        return runtime, _split_of(runtime.get), text, _split_of(partial(cmd.map_file_value, text))

    def _pool_or_none(self, backend: str | None) -> PoolName | None:
        return next((p for p, name in self.backends.items() if name == backend), None)

    def _map_text(self) -> str:
        try:
            return self.map_file.read_text(encoding="utf-8")
        except OSError as error:
            raise LoadBalancerError(
                f"cannot read the map file {self.map_file} ({error}); bgkit must run where it "
                "can read and write [lb.haproxy].map_file; nothing was changed") from error

    def _write_map(self, text: str, otherwise: str) -> None:
        try:
            _replace_file(self.map_file, text)
        except OSError as error:
            raise LoadBalancerError(
                f"cannot rewrite the map file {self.map_file} ({error}); {otherwise}") from error

    def discard_staged(self, keep: PoolName) -> LbState:
        """Nothing is ever staged on HAProxy: the state as it is."""
        return self.state()

    def switch(self, pool: PoolName, *, timeout_s: float) -> SwitchResult:
        """Route all traffic to ``pool``; return once HAProxy reports it live.

        Raises:
            LoadBalancerError: HAProxy unreachable or refusing, the map file not writable
                (nothing is changed then), or the switch not visible within ``timeout_s``.
        """
        started = time.monotonic()
        with self._guarded():
            previous, _ = self._agreed_locked()
            backend = self.backends[pool]
            self._require_backend(backend)
            if previous == pool:
                return SwitchResult(previous=previous, live=pool,
                                    applied_s=time.monotonic() - started)
            self._write_journal(backend)
            try:
                self._set_live(backend)
            except LoadBalancerError:
                if not self._applied_anyway(pool):  # e.g. a timeout after HAProxy acted
                    self.journal.unlink(missing_ok=True)
                    raise
            try:
                self._wait_until_live(pool, started + timeout_s, timeout_s)
            except LoadBalancerError:
                with contextlib.suppress(LoadBalancerError):
                    self._agreed_locked()  # the runtime back to the file; no journal left
                raise
            self._install_journal(previous)
        return SwitchResult(previous=previous, live=pool, applied_s=time.monotonic() - started)

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

    def open_sessions(self, pool: PoolName) -> ServerSessions:
        """Each server of ``pool``'s backend with its current sessions (``scur``).

        Raises:
            LoadBalancerError: unreachable or unreadable stats.
        """
        backend = self.backends[pool]
        found: ServerSessions = {}
        for row in self._stat_rows():
            if row.proxy == backend and row.is_server:
                server = _server(pool, row)
                scur = row.fields.get("scur", "")
                found[(server.address, server.port)] = int(scur) if scur.isdigit() else 0
        return found

    # --- runtime and map file agree --------------------------------------------------

    def _agreed(self) -> tuple[PoolName, str]:
        """The live pool once runtime and file agree, and what was repaired ("" if nothing).

        The fast path reads both without the guard; any doubt is settled under it (a
        switch in progress holds it for milliseconds).
        """
        runtime, written = self._runtime_backend(), self._file_backend()
        if runtime == written and not self.journal.exists():
            return self._pool_of(runtime), ""
        with self._guarded():
            return self._agreed_locked()

    def _agreed_locked(self) -> tuple[PoolName, str]:
        """Under the guard: compare, then repair towards the map file or refuse.

        The file only ever receives a value after HAProxy confirmed it live, so it is the
        last confirmed state; the journal exists only while a switch is between its
        runtime change and that confirmation. Runtime != file with a journal is therefore
        a switch that was interrupted unconfirmed: the runtime is set back to the file.
        Without a journal, someone changed one of them by hand: refuse, saying so.
        """
        runtime, written = self._runtime_backend(), self._file_backend()
        interrupted = self.journal.exists()
        if runtime == written:
            self.journal.unlink(missing_ok=True)
            return self._pool_of(runtime), ""
        if not interrupted:
            raise LoadBalancerError(
                f"HAProxy sends traffic to backend {runtime!r} but its map file "
                f"{self.map_file} says {written!r}, and no bgkit switch was under way: "
                "someone changed one of them by hand, and a reload would move traffic to "
                f"{written!r}; make them agree (`set map {self.map_file} live <backend>` on "
                "the runtime API, or edit the file), then retry")
        confirmed = self._pool_of(written)
        self._set_live(written)
        self.journal.unlink(missing_ok=True)
        return confirmed, (
            f"HAProxy's runtime said {self._name_of(runtime)} but its map file "
            f"{confirmed}: a switch was interrupted before it was confirmed, so bgkit set "
            f"the runtime back to {confirmed}, the last confirmed pool")

    def _runtime_map(self) -> dict[str, str]:
        answer = self.api.run(cmd.show_map(str(self.map_file)))
        try:
            return cmd.parse_map(answer)
        except ValueError as error:
            raise LoadBalancerError(
                f"HAProxy cannot list the map {self.map_file} ({error}); [lb.haproxy].map_file "
                "must be spelled exactly as in the map() converter of haproxy.cfg") from error

    def _set_entry(self, key: str, value: str, *, exists: bool) -> None:
        command = (cmd.set_map if exists else cmd.add_map)(str(self.map_file), key, value)
        answer = self.api.run(command).strip()
        if answer:
            raise LoadBalancerError(f"HAProxy refused `{command}`: {answer}")

    def _runtime_backend(self) -> str:
        entries = self._runtime_map()
        backend = entries.get("live")
        if backend is None:
            raise LoadBalancerError(
                f"the map {self.map_file} has no `live` entry; it must hold one line "
                f"`live <backend>`, e.g. `live {self.backends['blue']}`")
        return backend

    def _file_backend(self) -> str:
        try:
            text = self.map_file.read_text(encoding="utf-8")
        except OSError as error:
            raise LoadBalancerError(
                f"cannot read the map file {self.map_file} ({error}); bgkit must run where it "
                "can read and write [lb.haproxy].map_file, so that what HAProxy serves and "
                "what a reload would serve can be compared") from error
        backend = cmd.map_file_value(text, "live")
        if backend is None:
            raise LoadBalancerError(
                f"the map file {self.map_file} has no `live` line; it must hold one line "
                f"`live <backend>`, e.g. `live {self.backends['blue']}`")
        return backend

    def _guarded(self) -> AbstractContextManager[None]:
        """An ``flock`` of the guard file beside the map: one switch or repair at a time
        (re-entrant within a thread, as :func:`bgkit.flock.guard` says)."""
        busy = partial(LoadBalancerError,
                       f"another bgkit process has been switching HAProxy for more than "
                       f"{GUARD_TIMEOUT_S:g} s ({self.guard} is locked); retry")

        def unopenable(error: OSError) -> LoadBalancerError:
            return LoadBalancerError(
                f"cannot open {self.guard} ({error}); bgkit must be able to write in the "
                f"folder of [lb.haproxy].map_file ({self.map_file.parent}); nothing was "
                "changed")

        return flock.guard(self.guard, timeout_s=GUARD_TIMEOUT_S, poll_s=POLL_INTERVAL_S,
                           busy=busy, unopenable=unopenable)

    # --- steps ------------------------------------------------------------------------

    def _pool_of(self, backend: str) -> PoolName:
        for pool, name in self.backends.items():
            if name == backend:
                return pool
        raise LoadBalancerError(
            f"the map {self.map_file} says live is backend {backend!r}, which is neither "
            f"blue ({self.backends['blue']!r}) nor green ({self.backends['green']!r}) in "
            "[lb.haproxy].backends; fix the map or the config before switching")

    def _name_of(self, backend: str) -> str:
        return next((pool for pool, name in self.backends.items() if name == backend),
                    f"backend {backend!r}")

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

    def _write_journal(self, backend: str) -> None:
        """The new map text, written whole (same mode and owner) at the journal's fixed name
        beside ``map_file`` before the runtime changes: its presence marks a switch that is
        not confirmed yet, and it becomes the map file once HAProxy confirms."""
        try:
            current = self.map_file.read_text(encoding="utf-8")
            mode = self.map_file.stat()
            text = cmd.render_map_file(current, "live", backend)
            with self.journal.open("w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            self.journal.chmod(mode.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(self.journal, mode.st_uid, mode.st_gid)
        except OSError as error:
            self.journal.unlink(missing_ok=True)
            raise LoadBalancerError(
                f"cannot write beside the map file {self.map_file} ({error}); bgkit must run "
                "where it can read and write [lb.haproxy].map_file so that a reload keeps the "
                "switch; nothing was switched") from error

    def _install_journal(self, previous: PoolName) -> None:
        try:
            self.journal.replace(self.map_file)
            _sync_folder(self.map_file.parent)
        except OSError as error:
            self.journal.unlink(missing_ok=True)
            undo = f"the runtime entry was set back to {previous}"
            try:
                self._set_live(self.backends[previous])
            except LoadBalancerError as undo_error:
                undo = f"setting the runtime entry back to {previous} failed too: {undo_error}"
            raise LoadBalancerError(
                f"cannot replace the map file {self.map_file}: {error}; {undo}") from error

    def _applied_anyway(self, pool: PoolName) -> bool:
        try:
            return self._pool_of(self._runtime_backend()) == pool
        except LoadBalancerError:
            return False

    def _wait_until_live(self, pool: PoolName, deadline: float, timeout_s: float) -> None:
        while True:
            live = self._pool_of(self._runtime_backend())
            if live == pool:
                return
            if time.monotonic() >= deadline:
                raise LoadBalancerError(
                    f"HAProxy accepted the switch to {pool} but still reports {live} after "
                    f"{timeout_s:g} s")
            time.sleep(POLL_INTERVAL_S)


def _replace_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (same mode and owner), synced to disk; on an
    OSError the partial file is removed and ``path`` is as it was."""
    partial = path.with_name(f".{path.name}.bgkit-partial")
    try:
        mode = path.stat()
        with partial.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        partial.chmod(mode.st_mode & 0o7777)
        with contextlib.suppress(PermissionError):
            os.chown(partial, mode.st_uid, mode.st_gid)
        partial.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _split_of(value: Callable[[str], str | None]) -> tuple[int, str | None]:
    """A map's ``canary`` and ``idle`` values (``value(key)``, from the runtime or the
    file) as the split they make: (percent, backend), (0, None) when there is none (no
    share, or no backend to send it to)."""
    canary, idle = value("canary"), value("idle")
    percent = int(canary) if canary is not None and canary.isdigit() else 0
    return (percent, idle) if percent and idle else (0, None)


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power cut (best effort)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


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
