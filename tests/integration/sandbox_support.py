"""Helpers for tests that run a real sandbox fleet: free ports, polling, process checks."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import paramiko
import tomli_w

from bgkit.config import Config, load_config
from bgkit.sandbox import SandboxInfo
from bgkit.sandbox.state import SandboxHost

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on loopback now (bound to port 0, then closed)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


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
