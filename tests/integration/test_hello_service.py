"""The sample service behaves as a deployable service must: health, versions, drain."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgkit.artifact import build_release
from bgkit.config import load_config
from tests.conftest import EXAMPLE_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample service built by bgkit and unpacked, as a host would have it."""
    base = tmp_path_factory.mktemp("release")
    config_text = (EXAMPLE_DIR / "bgkit.toml").read_text()
    config_text = config_text.replace('source_dir = "."', f'source_dir = "{EXAMPLE_DIR}"')
    config_text = config_text.replace('dist_dir = "../../dist"', f'dist_dir = "{base}/dist"')
    (base / "bgkit.toml").write_text(config_text)
    result = build_release(load_config(base / "bgkit.toml"), version="3.1.4")
    unpacked = base / "release"
    with tarfile.open(result.artifact) as tar:
        tar.extractall(unpacked, filter="data")
    return unpacked


class Service:
    def __init__(self, release: Path, ini: str) -> None:
        config = release.parent / f"config-{time.monotonic_ns()}.ini"
        config.write_text(ini)
        self.process = subprocess.Popen(
            [str(release / "bin" / "hello-c"), f"--config={config}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        self.port = int(line.split(":")[1].split()[0])

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


@pytest.fixture
def start(release_dir: Path) -> Iterator[type[Service]]:
    started: list[Service] = []

    def make(faults: str = "", drain_ms: int = 5000) -> Service:
        ini = (f"[server]\nbind = 127.0.0.1\nport = 0\nversion = 3.1.4\n"
               f"drain_timeout_ms = {drain_ms}\n[faults]\n{faults}")
        service = Service(release_dir, ini)
        started.append(service)
        return service

    yield make  # type: ignore[misc]
    for service in started:
        if service.process.poll() is None:
            service.process.kill()
        service.process.wait()


def test_health_answers_200_with_the_version_header_and_json(start: type[Service]) -> None:
    service = start()
    conn = service.connect()
    conn.request("GET", "/health")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("X-App-Version") == "3.1.4"
    assert response.read() == b'{"status":"ok","version":"3.1.4"}'
    conn.request("GET", "/version")  # same connection: keep-alive
    assert conn.getresponse().read() == b"3.1.4\n"


def test_the_health_fault_knob_changes_the_status(start: type[Service]) -> None:
    service = start("health_status = 503\n")
    conn = service.connect()
    conn.request("GET", "/health")
    assert conn.getresponse().status == 503


def test_a_slow_request_in_flight_at_sigterm_completes_and_the_process_exits_0(
        start: type[Service]) -> None:
    service = start("latency_ms = 1500\n")
    outcome: dict[str, object] = {}

    def slow_request() -> None:
        conn = service.connect()
        conn.request("GET", "/")
        response = conn.getresponse()
        outcome["status"] = response.status
        outcome["body"] = response.read()
        outcome["connection"] = response.getheader("Connection")

    idle = service.connect()  # an idle keep-alive connection must not hold the drain up
    idle.request("GET", "/version")
    idle.getresponse().read()
    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)
    service.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", service.port), timeout=2).close()
    worker.join(timeout=10)
    assert outcome == {"status": 200, "body": b"hello from hello-c 3.1.4\n",
                       "connection": "close"}
    assert service.process.wait(timeout=10) == 0


def test_fail_at_startup_exits_1_with_a_message(release_dir: Path, tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[server]\nport = 0\n[faults]\nfail_at_startup = true\n")
    done = subprocess.run([str(release_dir / "bin" / "hello-c"), f"--config={ini}"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 1
    assert done.stderr.strip()
