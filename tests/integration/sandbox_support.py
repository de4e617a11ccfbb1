"""Helpers for tests that run a real sandbox fleet: free ports, polling, process checks."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paramiko
import tomli_w

from bgkit.config import Config, load_config
from bgkit.sandbox import SandboxInfo
from bgkit.sandbox.state import SandboxHost

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on loopback now (from this test worker's
    ``$BGKIT_PORT_RANGE``, tests/conftest.py)."""
    from bgkit.sandbox.processes import free_port

    found: list[int] = []
    while len(found) < count:
        port = free_port()
        if port not in found:
            found.append(port)
    return found


def sandbox_ports(hosts: int = 2) -> dict[str, int]:
    """App, public and SSH ports free on every address of a sandbox of ``hosts`` hosts."""
    from bgkit.sandbox.ports import free_ports as free_on_every_address

    app_port, public_port, ssh_port = free_on_every_address(3, hosts=hosts)
    return {"app_port": app_port, "public_port": public_port, "ssh_port": ssh_port}


def wait_for(check: Callable[[], T | None], *, timeout_s: float = 10.0,
             what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def running(pid: int) -> bool:
    """The pid exists and is not a zombie (this machine's init may not reap them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def ssh_run(address: str, port: int, user: str, state_dir: Path, command: str,
            known_hosts: Path | None = None) -> str:
    """Run ``command`` over SSH with the sandbox key; host keys strictly checked."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or state_dir / "ssh" / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(address, port=port, username=user,
                       key_filename=str(state_dir / "ssh" / "id_ed25519"),
                       look_for_keys=False, allow_agent=False, timeout=5)
        _, stdout, _ = client.exec_command(command, timeout=10)
        output: str = stdout.read().decode()
        assert stdout.channel.recv_exit_status() == 0
        return output
    finally:
        client.close()


def rewrite_config(path: Path, changes: dict[str, Any], *, name: str) -> Config:
    """A copy of a sandbox bgkit.toml with ``changes`` merged in, loaded."""
    from tests.conftest import merge

    data = merge(tomllib.loads(path.read_text()), changes)
    target = path.with_name(name)
    target.write_text(tomli_w.dumps(data))
    return load_config(target)


def set_fault(root: Path, **faults: object) -> None:
    """Rewrite the [faults] section of a sandbox host's shared config."""
    config = root / "shared" / "config.ini"
    text = config.read_text().split("[faults]")[0]
    lines = [f"{key} = {str(value).lower() if isinstance(value, bool) else value}"
             for key, value in faults.items()]
    config.write_text(text + "[faults]\n" + "\n".join(lines) + "\n")


def add_server(config: Config, backend: str, name: str, address: str, *,
               check: bool = True) -> None:
    """A server added to the sandbox HAProxy's ``backend`` by hand through its runtime API,
    as an operator would (bgkit.toml is not changed); with ``check``, once it is UP."""
    from bgkit.lb import get_provider
    from bgkit.lb.haproxy import HaproxyProvider

    lb = get_provider(config)
    assert isinstance(lb, HaproxyProvider)
    where = f"{backend}/{name}"
    commands = [f"add server {where} {address}:{config.service.port}"
                + (" check" if check else ""),
                *([f"enable health {where}"] if check else []), f"enable server {where}"]
    for command in commands:
        answer = lb.api.run(command).strip()
        assert "New server registered" in answer or not answer, (command, answer)
    if check:
        wait_for(lambda: any(s.name == name and s.healthy for s in lb.backend_health()),
                 what=f"{where} to be UP")


def wait_lb_healthy(config: Config, pool: str, *, timeout_s: float = 10.0) -> None:
    """Wait until the load balancer's own health checks see every server of ``pool`` UP."""
    from bgkit.lb import get_provider

    lb = get_provider(config)

    def all_up() -> bool:
        servers = [s for s in lb.backend_health() if s.pool == pool]
        return bool(servers) and all(s.healthy for s in servers)

    wait_for(all_up, timeout_s=timeout_s, what=f"the load balancer to see {pool} healthy")


StartService = Callable[[SandboxHost, str], "subprocess.Popen[bytes]"]


def build_hello_c(folder: Path) -> Path:
    """The sample service's binary, built with CMake into ``folder`` (version 0.0.1)."""
    from tests.conftest import EXAMPLE_DIR

    subprocess.run(["cmake", "-S", str(EXAMPLE_DIR), "-B", str(folder),
                    "-DCMAKE_BUILD_TYPE=Release", "-DAPP_VERSION=0.0.1"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(folder), "--parallel", "2", "--target", "hello-c"],
                   check=True, capture_output=True)
    return folder / "hello-c"


@contextmanager
def services(binary: Path, info: SandboxInfo) -> Iterator[StartService]:
    """Start hello-c on sandbox hosts' addresses (``start(host, version)``); stop them after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(host: SandboxHost, version: str) -> subprocess.Popen[bytes]:
        ini = host.root / "shared" / "test.ini"
        ini.write_text(f"[server]\nbind = {host.address}\nport = {info.options.app_port}\n"
                       f"version = {version}\ndrain_timeout_ms = 1000\n[faults]\n")
        process = subprocess.Popen([str(binary), f"--config={ini}"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b"listening on " + host.address.encode())
        return process

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=10)


def public_version(info: SandboxInfo) -> str | None:
    """The X-App-Version of one request through the sandbox's public address."""
    conn = http.client.HTTPConnection("127.0.0.1", info.options.public_port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.getheader("X-App-Version")
    finally:
        conn.close()


class Load:
    """Continuous requests through the public address: keep-alive and new connections.

    ``answers`` holds (time, status, version) of every answer, ``failed_at`` the time
    each failed request was sent (an error, or a status other than 200).
    """

    def __init__(self, config: Config, threads: int = 2, *, path: str = "/") -> None:
        self.url = config.lb.public_url.rstrip("/") + path
        self.answers: list[tuple[float, int, str | None]] = []
        self.failures: list[str] = []
        self.failed_at: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._keep_alive) for _ in range(threads)] + \
            [threading.Thread(target=self._new_connections)]

    def _record(self, send: httpx.Client) -> None:
        sent = time.monotonic()
        try:
            response = send.get(self.url)
            self.answers.append((time.monotonic(), response.status_code,
                                 response.headers.get("X-App-Version")))
            if response.status_code != 200:
                self.failures.append(f"status {response.status_code}")
                self.failed_at.append(sent)
        except httpx.HTTPError as error:
            self.failures.append(repr(error))
            self.failed_at.append(sent)

    def _keep_alive(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                self._record(client)

    def _new_connections(self) -> None:
        while not self._stop.is_set():
            with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
                self._record(client)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def versions_after(self, moment: float) -> Counter[str | None]:
        return Counter(version for at, _, version in self.answers if at > moment)

    def failed_after(self, moment: float) -> int:
        return sum(1 for at in self.failed_at if at > moment)


def break_pool(config: Config, pool: str, **faults: object) -> None:
    """Set the sample service's fault knobs on every host of ``pool`` and reload them."""
    for host in config.pools.get(pool).hosts:  # type: ignore[arg-type]
        root = Path(host.deploy_root)
        set_fault(root, **faults)
        os.kill(int((root / "shared/run/service.pid").read_text()), signal.SIGHUP)


def flip(config: Config, pool: str) -> None:
    """Switch the load balancer to ``pool`` directly (no gates, no watch: a test's setup)
    and record it on the hosts as the switch does: the pool left, the pool now live with
    the release it serves (``last-live``), so that rollback and drain see the truth."""
    from datetime import UTC, datetime

    from bgkit.lb import get_provider
    from bgkit.ledger import SshLedger

    lb = get_provider(config)
    left = lb.live_pool()
    lb.switch(pool, timeout_s=10)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    ledger = SshLedger(config)
    if left != pool:
        assert ledger.left_live(left, at=now) == []
    assert ledger.went_live(pool, at=now) == []  # type: ignore[arg-type]


def make_ready(sandbox: Config, releases: dict[str, Any]) -> Config:
    """Blue live on 1.0.0, green idle on 2.0.0, both healthy in the load balancer; each
    pool's hosts record that they went live on 1.0.0 (:func:`flip`).

    Latency gates are loose: on the shared 2-core test machine a busy moment can lift
    a pool's p99 to 500 ms or its p95 a few ms above the other's, and these tests are
    about errors, versions and the load balancer, not about latency.
    """
    from bgkit.deploy import deploy

    config = rewrite_config(sandbox.path, {"switch": {"samples_per_host": 60, "watch_s": 2},
                                           "gates": {"max_p99_ms": 1500,
                                                     "min_p95_delta_ms": 100},
                                           "deploy": {"min_idle_s": 1}},
                            name="switching.toml")
    deploy(config, artifact=releases["1.0.0"].artifact)  # blue is live, so this is green
    wait_lb_healthy(config, "green")
    flip(config, "green")
    deploy(config, artifact=releases["1.0.0"].artifact)  # now blue
    wait_lb_healthy(config, "blue")
    flip(config, "blue")
    deploy(config, artifact=releases["2.0.0"].artifact)  # and the new release on green
    wait_lb_healthy(config, "green")
    return config


def emulator_faults(config: Config, faults: dict[str, object]) -> None:
    """Set the OVH API emulator's faults through its control endpoint (not the OVH API)."""
    import json
    import urllib.request

    settings = config.lb.ovh_iplb or config.lb.ovh_cloud_lb
    assert settings is not None
    root = settings.endpoint.removesuffix("/1.0")
    request = urllib.request.Request(f"{root}/_emulator/faults", method="POST",
                                     data=json.dumps(faults).encode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as answer:
        answer.read()


class AfterSwitch:
    """A real provider; right after it switches to ``pool``, ``then`` runs (at once, or
    ``delay_s`` later in a thread): a release that breaks under real traffic, so that
    only the post-switch watch can catch it."""

    def __init__(self, inner: Any, pool: str, then: Callable[[], None], *,
                 delay_s: float = 0.0, on_split: bool = False) -> None:
        self.inner, self.pool, self.then, self.delay_s = inner, pool, then, delay_s
        self.on_split = on_split  # fire at the first canary split to pool instead
        self.name = inner.name
        self.fired_at: float | None = None

    def live_pool(self) -> Any:
        return self.inner.live_pool()

    def backend_health(self) -> Any:
        return self.inner.backend_health()

    def state(self, *, wait_s: float = 0.0) -> Any:
        return self.inner.state(wait_s=wait_s)

    def discard_staged(self, keep: Any) -> Any:
        return self.inner.discard_staged(keep)

    def open_sessions(self, pool: Any) -> Any:
        return self.inner.open_sessions(pool)

    def switch(self, pool: Any, *, timeout_s: float) -> Any:
        result = self.inner.switch(pool, timeout_s=timeout_s)
        if pool == self.pool and not self.on_split:
            self._arm()
        return result

    def split_refusal(self) -> Any:
        return self.inner.split_refusal()

    def split(self, pool: Any, percent: int, *, timeout_s: float) -> None:
        self.inner.split(pool, percent, timeout_s=timeout_s)
        if pool == self.pool and percent and self.on_split:
            self._arm()

    def _arm(self) -> None:
        if self.fired_at is None:
            self.fired_at = -1.0
            threading.Timer(self.delay_s, self._fire).start()

    def _fire(self) -> None:
        self.fired_at = time.monotonic()
        self.then()
