"""Fakes for fast tests of the switch algorithm, shipped so that users can test theirs.

:class:`FakeLoadBalancer` keeps the load balancer in memory — an applied pool, a staged
one, an application in progress — and plays scripted faults (:class:`Faults`): a switch
refused, a switch that stays staged, a change still being applied past the deadline
(done, error or never), unreadable reads, a hook right after a switch.

:class:`FakeFleet` serves each pool's hosts and the public address from in-process HTTP
servers on loopback (``127.0.91.x`` for blue, ``127.0.92.x`` for green, away from the
sandbox's addresses); the public address answers as the pool the fake load balancer
applied. Every answer's status, version and latency come from a :class:`PoolBehaviour`
that a test changes at any time. Its :class:`FakeLedger` says what the hosts serve
(``fake-<version>-<build>``) and keeps their last-live records::

    with FakeFleet(blue="1.0.0", green="2.0.0") as fleet:
        config = fleet.config(tmp_path)
        fleet.lb.faults.on_switch = lambda pool: fleet.behave(pool, status=500)
        outcome = switch(config, lb=fleet.lb, expected_version="2.0.0", approve=True,
                         ledger=fleet.ledger)
"""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from bgkit.commands.remote import LastLive
from bgkit.config import Config
from bgkit.errors import ApplyPending, LoadBalancerError, SplitUnsupported
from bgkit.lb.base import BackendServer, LbState, PoolName, ServerSessions, SwitchResult
from bgkit.ledger import HostServes, stamp

__all__ = ["FakeFleet", "FakeLedger", "FakeLoadBalancer", "Faults", "PoolBehaviour"]

ApplyOutcome = Literal["done", "error", "never"]
POOL_NETWORKS: dict[PoolName, str] = {"blue": "127.0.91", "green": "127.0.92"}


@dataclass(slots=True)
class Faults:
    """What the fake load balancer does wrong, next time it is asked.

    - ``refuse_switches``: the next N switches raise LoadBalancerError, changing nothing;
    - ``stage_only``: the next N switches stage the change, never apply it, and raise;
    - ``slow_switches``: the next N switches start applying and raise ApplyPending; the
      application ends ``apply_outcome`` after ``apply_reads`` more reads of ``state()``
      (a ``state(wait_s > 0)`` waits it out unless the outcome is ``never``);
    - ``unreadable``: the next N reads (live_pool, state, backend_health) raise;
    - ``on_switch``: called with the pool right after a switch is applied.
    """

    refuse_switches: int = 0
    stage_only: int = 0
    slow_switches: int = 0
    apply_reads: int = 3
    apply_outcome: ApplyOutcome = "done"
    unreadable: int = 0
    on_switch: Callable[[PoolName], None] | None = None
    refuse_splits: int = 0


@dataclass(slots=True)
class _Applying:
    reads_left: int
    outcome: ApplyOutcome


class FakeLoadBalancer:
    """The :class:`bgkit.lb.base.LoadBalancer` primitives, in memory."""

    name: str = "fake"

    def __init__(self, live: PoolName = "blue", *, hosts_per_pool: int = 2,
                 healthy: Callable[[PoolName], bool] | None = None,
                 addresses: dict[PoolName, list[str]] | None = None, port: int = 0) -> None:
        self.applied: PoolName = live
        self.staged: PoolName = live
        self.applying: _Applying | None = None
        self.faults = Faults()
        self.calls: list[str] = []
        self.healthy = healthy or (lambda pool: True)
        self.addresses = addresses or {
            pool: [f"{net}.{i + 1}" for i in range(hosts_per_pool)]
            for pool, net in POOL_NETWORKS.items()}
        self.port = port
        self.lock = threading.Lock()
        self.canary = 0  # percent of requests to canary_pool
        self.canary_pool: PoolName | None = None
        self.cannot_split: str | None = None  # set: split_refusal() says it, split refuses
        # Sessions per (address, port), as open_sessions reports them; None: cannot see.
        self.sessions: ServerSessions | None = {}

    # --- the primitives -----------------------------------------------------------------

    def live_pool(self) -> PoolName:
        with self.lock:
            self._read("live_pool")
            if self.applying or self.staged != self.applied:
                raise LoadBalancerError(f"fake: a change to {self.staged} is staged or being "
                                        "applied; bgkit will not guess")
            return self.applied

    def state(self, *, wait_s: float = 0.0) -> LbState:
        with self.lock:
            self._read("state")
            self._advance(finish=wait_s > 0)
            if self.applying:
                return LbState(live=None, staged=self.staged, pending=1,
                               applying=f"fake apply of {self.staged} in progress")
            if self.staged != self.applied:
                return LbState(live=None, staged=self.staged, pending=1,
                               detail=f"fake: {self.staged} staged, not applied")
            return LbState(live=self.applied, canary=self.canary,
                           canary_pool=self.canary_pool if self.canary else None)

    def split(self, pool: PoolName, percent: int, *, timeout_s: float) -> None:
        with self.lock:
            self.calls.append(f"split {pool} {percent}")
            if self.cannot_split and percent:
                raise SplitUnsupported(self.cannot_split)
            if self.faults.refuse_splits and percent:
                self.faults.refuse_splits -= 1
                raise LoadBalancerError(f"fake: the split of {percent}% to {pool} was refused")
            self.canary, self.canary_pool = percent, (pool if percent else None)

    def split_refusal(self) -> str | None:
        return self.cannot_split

    def serving(self) -> PoolName:
        """The pool one request goes to now: the canary's share, else the live pool."""
        with self.lock:
            if self.canary and self.canary_pool and random.random() * 100 < self.canary:  # noqa: S311 (a share, not a secret)
                return self.canary_pool
            return self.applied

    def discard_staged(self, keep: PoolName) -> LbState:
        with self.lock:
            self.calls.append(f"discard_staged {keep}")
            if self.applying:
                raise LoadBalancerError("fake: an apply is in progress; not undoing")
            self.staged = keep
            if self.staged != self.applied:
                raise LoadBalancerError(f"fake: {keep} is not what is applied")
        return self.state()

    def switch(self, pool: PoolName, *, timeout_s: float) -> SwitchResult:
        started = time.monotonic()
        with self.lock:
            self.calls.append(f"switch {pool}")
            faults = self.faults
            if self.applying or self.staged != self.applied:
                raise LoadBalancerError("fake: a change is staged or being applied already")
            previous = self.applied
            if faults.refuse_switches:
                faults.refuse_switches -= 1
                raise LoadBalancerError(f"fake: the switch to {pool} was refused")
            self.staged = pool
            if faults.stage_only:
                faults.stage_only -= 1
                raise LoadBalancerError(f"fake: {pool} was staged but the apply never started")
            if faults.slow_switches:
                faults.slow_switches -= 1
                self.applying = _Applying(faults.apply_reads, faults.apply_outcome)
                raise ApplyPending(f"fake: the switch to {pool} is still being applied after "
                                   f"{timeout_s:g} s")
            self.applied = pool
        self._switched(pool)
        return SwitchResult(previous=previous, live=pool, applied_s=time.monotonic() - started)

    def backend_health(self) -> list[BackendServer]:
        with self.lock:
            self._read("backend_health")
        servers: list[BackendServer] = []
        pools: tuple[PoolName, ...] = ("blue", "green")
        for pool in pools:
            ok = self.healthy(pool)
            servers.extend(BackendServer(pool=pool, name=f"{pool}-{i + 1}", address=address,
                                         port=self.port, status="UP" if ok else "DOWN",
                                         healthy=ok)
                           for i, address in enumerate(self.addresses[pool]))
        return servers

    def open_sessions(self, pool: PoolName) -> ServerSessions | None:
        with self.lock:
            self._read("open_sessions")
            if self.sessions is None:
                return None
            return {(address, self.port): self.sessions.get((address, self.port), 0)
                    for address in self.addresses[pool]}

    # --- the fake's own machinery --------------------------------------------------------

    def _read(self, what: str) -> None:
        self.calls.append(what)
        if self.faults.unreadable:
            self.faults.unreadable -= 1
            raise LoadBalancerError(f"fake: {what} could not be read")

    def _advance(self, *, finish: bool) -> None:
        task = self.applying
        if task is None:
            return
        if task.outcome != "never":
            task.reads_left = 0 if finish else task.reads_left - 1
        if task.reads_left > 0 or task.outcome == "never":
            return
        self.applying = None
        if task.outcome == "done":
            self.applied = self.staged
            threading.Thread(target=self._switched, args=(self.applied,), daemon=True).start()

    def _switched(self, pool: PoolName) -> None:
        if self.faults.on_switch is not None:
            self.faults.on_switch(pool)


@dataclass(slots=True)
class PoolBehaviour:
    """How a pool's services answer (status, version header, added latency) and which
    build of the version they are (their release is ``fake-<version>-<build>``)."""

    version: str
    status: int = 200
    latency_ms: float = 0.0
    build: str = "0000000"

    @property
    def release(self) -> str:
        return f"fake-{self.version}-{self.build}"


class FakeLedger:
    """The :class:`bgkit.ledger.Ledger` in memory: each pool's hosts serve their
    :class:`PoolBehaviour`'s release; every release a pool served stays kept there."""

    def __init__(self, pools: dict[PoolName, PoolBehaviour], lb: FakeLoadBalancer) -> None:
        self.pools, self.lb = pools, lb
        self.last_live: dict[PoolName, LastLive] = {}
        self.kept: dict[PoolName, dict[str, str]] = {"blue": {}, "green": {}}
        self.unreadable: set[PoolName] = set()  # pools whose hosts cannot be read

    def serving(self, pools: Sequence[PoolName]) -> list[HostServes]:
        found = []
        for pool in pools:
            behaviour = self.pools[pool]
            self.kept[pool][behaviour.release] = behaviour.version
            for index, address in enumerate(self.lb.addresses[pool]):
                label = f"{pool}[{index}] {address}"
                if pool in self.unreadable:
                    found.append(HostServes(pool, address, label, error="fake: unreachable"))
                else:
                    found.append(HostServes(pool, address, label, behaviour.release,
                                            behaviour.version, self.last_live.get(pool)))
        return found

    def went_live(self, pool: PoolName, *, at: datetime) -> list[str]:
        release = self.pools[pool].release
        self.kept[pool][release] = self.pools[pool].version
        record = self.last_live.get(pool)
        if record is None or record.release != release or not record.live:
            self.last_live[pool] = LastLive(release, stamp(at), "")
        return []

    def left_live(self, pool: PoolName, *, at: datetime) -> list[str]:
        record = self.last_live.get(pool) or LastLive("", "", "")
        self.last_live[pool] = LastLive(record.release, record.live_since, stamp(at))
        return []

    def kept_version(self, pool: PoolName, release: str) -> str | None:
        return self.kept[pool].get(release)


def _constant(behaviour: PoolBehaviour) -> Callable[[], tuple[PoolBehaviour, str | None]]:
    return lambda: (behaviour, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    answer: Callable[[], tuple[PoolBehaviour, str | None]]  # and the pool header, if any


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        behaviour, pool = self.server.answer()
        if behaviour.latency_ms:
            time.sleep(behaviour.latency_ms / 1000)
        body = f'{{"version":"{behaviour.version}"}}'.encode()
        self.send_response(behaviour.status)
        self.send_header("X-App-Version", behaviour.version)
        if pool is not None:  # as HAProxy's `http-response set-header X-Bgkit-Pool %b`
            self.send_header("X-Bgkit-Pool", pool)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@dataclass(slots=True)
class FakeFleet:
    """Both pools' hosts and the public address, served in-process on loopback."""

    blue: str = "1.0.0"
    green: str = "2.0.0"
    hosts_per_pool: int = 2
    live: PoolName = "blue"
    pools: dict[PoolName, PoolBehaviour] = field(default_factory=dict)
    lb: FakeLoadBalancer = field(init=False)
    ledger: FakeLedger = field(init=False)
    port: int = 0
    public_port: int = 0
    _servers: list[_Server] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pools = {"blue": PoolBehaviour(self.blue), "green": PoolBehaviour(self.green)}
        self.lb = FakeLoadBalancer(self.live, hosts_per_pool=self.hosts_per_pool,
                                   healthy=lambda pool: self.pools[pool].status == 200)
        self.ledger = FakeLedger(self.pools, self.lb)
        self.ledger.went_live(self.live, at=datetime.now(UTC))  # what was live before

    def behave(self, pool: PoolName, **changes: Any) -> None:
        """Change how ``pool`` answers from now on (status, version, latency_ms, build)."""
        for name, value in changes.items():
            setattr(self.pools[pool], name, value)

    def __enter__(self) -> FakeFleet:
        for _ in range(20):
            try:
                self._start()
                break
            except OSError as error:
                self._stop()
                if error.errno != errno.EADDRINUSE:
                    raise
        else:
            raise OSError(errno.EADDRINUSE, "no common free port for the fake fleet")
        self.lb.port = self.port
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop()

    def _start(self) -> None:
        def answer() -> tuple[PoolBehaviour, str | None]:
            pool = self.lb.serving()
            return self.pools[pool], pool

        public = self._serve("127.0.0.1", 0, answer)
        self.public_port = public.server_address[1]
        self.port = 0
        pools: tuple[PoolName, ...] = ("blue", "green")
        for pool in pools:
            behaviour = self.pools[pool]
            for address in self.lb.addresses[pool]:
                server = self._serve(address, self.port, _constant(behaviour))
                self.port = server.server_address[1]

    def _serve(self, address: str, port: int,
               answer: Callable[[], tuple[PoolBehaviour, str | None]]) -> _Server:
        server = _Server((address, port), _Handler)
        server.answer = answer
        self._servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return server

    def _stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def config(self, folder: Path, *, gates: dict[str, Any] | None = None,
               switch: dict[str, Any] | None = None, lock_ttl_s: float = 5.0) -> Config:
        """A Config pointing at this fleet (lock in ``folder``); fast samples and watch,
        latency gates that only a real fault breaches."""
        def hosts(pool: PoolName) -> list[dict[str, Any]]:
            return [{"address": address, "port": 22, "user": "deploy",
                     "deploy_root": "/srv/fake"} for address in self.lb.addresses[pool]]

        data: dict[str, Any] = {
            "app": {"name": "fake", "version": self.green},
            "service": {"port": self.port, "executable": "bin/fake"},
            "pools": {"blue": {"hosts": hosts("blue")}, "green": {"hosts": hosts("green")}},
            "lb": {"provider": "haproxy", "public_url": f"http://127.0.0.1:{self.public_port}",
                   "haproxy": {"runtime_api": str(folder / "unused.sock"),
                               "map_file": str(folder / "unused.map")}},
            # Latency gates loose: a shared, loaded test machine must not refuse a switch.
            "gates": {"min_samples_per_host": 10, "max_p99_ms": 2000,
                      "min_p95_delta_ms": 1000, **(gates or {})},
            "switch": {"samples_per_host": 10, "sample_rate_per_s": 400, "watch_s": 1.0,
                       "watch_rate_per_s": 100, "lb_poll_s": 0.05, "timeout_s": 1,
                       "apply_grace_s": 2, **(switch or {})},
            "lock": {"path": str(folder / "bgkit.lock"), "ttl_s": lock_ttl_s},
            "path": folder / "bgkit.toml",
        }
        return Config.model_validate(data)
