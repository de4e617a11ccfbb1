"""The sandbox fleet with a real OpenSSH sshd and a real HAProxy, on loopback only."""

from __future__ import annotations

import getpass
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from click.testing import CliRunner

from bgkit.cli.sandbox import sandbox_group
from bgkit.config import load_config
from bgkit.errors import SandboxError
from bgkit.sandbox import SandboxInfo, sandbox_down, sandbox_status, sandbox_up
from tests.conftest import EXAMPLE_DIR
from tests.integration.sandbox_support import running, sandbox_ports, ssh_run, wait_for

pytestmark = pytest.mark.slow

USER = getpass.getuser()


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A sandbox state folder that is always brought down after the test."""
    folder = tmp_path / "sbx"
    yield folder
    sandbox_down(folder)


@pytest.fixture
def sandbox(state_dir: Path) -> SandboxInfo:
    return sandbox_up(state_dir, **sandbox_ports())


def start_fake_service(info: SandboxInfo, host_index: int = 0) -> int:
    """Start a stand-in service the way deploy does: start-stop-daemon, the pid contract."""
    host = info.hosts[host_index]
    binary = host.root / "releases" / "r1" / "bin" / "fake-service"
    binary.parent.mkdir(parents=True)
    shutil.copy("/bin/sleep", binary)
    (host.root / "current").symlink_to("releases/r1")
    subprocess.run(["start-stop-daemon", "--start", "--background", "--make-pidfile",
                    "--pidfile", str(host.pid_file),
                    "--output", str(host.root / "shared" / "log" / "service.log"),
                    "--exec", str(binary), "--", "300"], check=True)
    pid = int(host.pid_file.read_text())
    # start-stop-daemon writes the pid file before the child has exec'd the program.
    wait_for(lambda: Path(f"/proc/{pid}/exe").readlink() == binary, what="exec")
    return pid


def test_up_accepts_a_key_login_with_host_key_checking_on_blue_and_green(
        sandbox: SandboxInfo, state_dir: Path) -> None:
    port = sandbox.options.ssh_port
    for address in ("127.0.1.2", "127.0.2.1"):
        assert ssh_run(address, port, USER, state_dir, f"echo hello {address}") == (
            f"hello {address}\n")


def test_an_unknown_or_changed_host_key_is_rejected(
        sandbox: SandboxInfo, state_dir: Path, tmp_path: Path) -> None:
    port = sandbox.options.ssh_port
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh_run("127.0.1.1", port, USER, state_dir, "true", known_hosts=empty)
    other = paramiko.Ed25519Key.from_private_key_file(str(state_dir / "ssh" / "id_ed25519"))
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.1.1]:{port} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_run("127.0.1.1", port, USER, state_dir, "true", known_hosts=wrong)


def test_the_written_bgkit_toml_loads_and_describes_this_fleet(
        sandbox: SandboxInfo, state_dir: Path) -> None:
    config = load_config(sandbox.config_file)
    assert sandbox.config_file == state_dir / "bgkit.toml"
    assert [h.address for h in config.pools.blue.hosts] == ["127.0.1.1", "127.0.1.2"]
    assert {h.user for h in config.pools.green.hosts} == {USER}
    assert config.service.port == sandbox.options.app_port
    assert config.lb.haproxy is not None
    assert Path(config.lb.haproxy.map_file).read_text() == "live blue\n"
    assert config.runs_dir == state_dir / "runs"
    ini = (state_dir / "hosts" / "green-2" / "shared" / "config.ini").read_text()
    assert "bind = 127.0.2.2\n" in ini
    assert not re.search(r"^\s*version\s*=", ini, re.MULTILINE)


def test_a_second_up_with_the_same_options_changes_nothing(
        sandbox: SandboxInfo, state_dir: Path) -> None:
    files = {path: path.stat().st_mtime_ns for path in state_dir.rglob("*") if path.is_file()}
    again = sandbox_up(state_dir, **_ports(sandbox))
    assert again.started == ()
    assert [(p.role, p.pid) for p in again.processes] == [
        (p.role, p.pid) for p in sandbox.processes]
    assert all(p.alive for p in again.processes)
    assert {path: path.stat().st_mtime_ns for path in files} == files


def test_a_second_up_reloads_haproxy_when_the_sample_service_changed_its_health_path(
        state_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "service"
    source.mkdir()
    shutil.copy(EXAMPLE_DIR / "CMakeLists.txt", source)
    toml = (EXAMPLE_DIR / "bgkit.toml").read_text()
    (source / "bgkit.toml").write_text(toml)
    ports = sandbox_ports()
    first = sandbox_up(state_dir, source=source, **ports)
    (source / "bgkit.toml").write_text(toml.replace('"/health"', '"/version"'))
    second = sandbox_up(state_dir, source=source, **ports)
    assert second.started == ("haproxy (reloaded with its new config)",)
    pids = {p.role: p.pid for p in first.processes}
    assert {p.role: p.pid for p in second.processes}["haproxy"] != pids["haproxy"]
    assert "uri /version " in (state_dir / "haproxy" / "haproxy.cfg").read_text()
    assert load_config(second.config_file).service.health_path == "/version"


def test_up_with_other_options_while_running_says_to_run_down_first(
        sandbox: SandboxInfo, state_dir: Path) -> None:
    with pytest.raises(SandboxError, match=r"hosts: 2 -> 3.*sandbox down --dir"):
        sandbox_up(state_dir, hosts=3, **_ports(sandbox))


def test_down_stops_sshd_haproxy_and_services_and_keeps_dist_and_runs(
        sandbox: SandboxInfo, state_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    service_pid = start_fake_service(sandbox)
    (state_dir / "dist" / "app.tar.gz").write_text("artifact")
    pids = [p.pid for p in sandbox.processes] + [service_pid]
    assert all(pid is not None and running(pid) for pid in pids)

    stopped = sandbox_down(state_dir)

    assert sorted(p.role for p in stopped) == ["haproxy", "service blue-1", "sshd-1"]
    assert not any(running(pid) for pid in pids if pid is not None)
    assert sorted(p.name for p in (state_dir / "run").iterdir()) == []
    assert (state_dir / "dist" / "app.tar.gz").read_text() == "artifact"
    assert (state_dir / "runs").is_dir() and (state_dir / "ssh" / "id_ed25519").is_file()
    assert outside.read_text() == "untouched"
    assert not any(p.alive for p in sandbox_status(state_dir).processes)
    assert sandbox_down(state_dir) == []


def test_down_never_signals_a_pid_that_is_not_the_sandboxs_program(
        sandbox: SandboxInfo) -> None:
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        sandbox.hosts[1].pid_file.write_text(f"{stranger.pid}\n")
        stopped = sandbox_down(sandbox.state_dir)
        assert "service blue-2" not in [p.role for p in stopped]
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_purge_deletes_the_state_dir_but_never_a_folder_that_is_not_a_sandbox(
        sandbox: SandboxInfo, state_dir: Path, tmp_path: Path) -> None:
    sandbox_down(state_dir, purge=True)
    assert not state_dir.exists()
    other = tmp_path / "precious"
    other.mkdir()
    with pytest.raises(SandboxError, match="not a sandbox directory"):
        sandbox_down(other, purge=True)
    assert other.is_dir()


def test_a_taken_port_is_named_and_nothing_is_left_running(state_dir: Path) -> None:
    ports = sandbox_ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["public_port"]))
        squatter.listen()
        with pytest.raises(SandboxError, match=f"port {ports['public_port']} on 127.0.0.1"):
            sandbox_up(state_dir, **ports)
    assert not any(p.alive for p in sandbox_status(state_dir).processes)


def test_status_lists_processes_and_hosts_with_their_release_and_service(
        sandbox: SandboxInfo, state_dir: Path) -> None:
    service_pid = start_fake_service(sandbox, host_index=2)
    result = CliRunner().invoke(sandbox_group, ["status", "--dir", str(state_dir), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["running"] is True
    assert [(p["role"], p["alive"]) for p in status["processes"]] == [
        ("sshd-1", True), ("haproxy", True)]
    green_1 = status["hosts"][2]
    assert (green_1["name"], green_1["address"], green_1["current_release"],
            green_1["service_pid"], green_1["service_alive"]) == (
        "green-1", "127.0.2.1", "r1", service_pid, True)
    assert status["hosts"][0]["current_release"] is None
    table = CliRunner().invoke(sandbox_group, ["status", "--dir", str(state_dir)])
    assert "green-1" in table.output and "haproxy" in table.output


def test_the_cli_brings_a_fleet_up_and_down(state_dir: Path) -> None:
    ports = sandbox_ports()
    args = ["--app-port", str(ports["app_port"]), "--public-port", str(ports["public_port"]),
            "--ssh-port", str(ports["ssh_port"])]
    up = CliRunner().invoke(sandbox_group, ["up", "--dir", str(state_dir), *args])
    assert up.exit_code == 0, up.output
    assert f"export BGKIT_CONFIG={state_dir / 'bgkit.toml'}" in up.output
    down = CliRunner().invoke(sandbox_group, ["down", "--dir", str(state_dir)])
    assert down.exit_code == 0, down.output
    assert "stopped haproxy" in down.output and "stopped sshd-1" in down.output


def test_fifty_hosts_per_pool_come_up_behind_several_sshd(state_dir: Path) -> None:
    started = time.monotonic()
    info = sandbox_up(state_dir, hosts=50, **sandbox_ports())
    elapsed = time.monotonic() - started
    assert [p.role for p in info.processes] == [f"sshd-{n}" for n in range(1, 8)] + ["haproxy"]
    for address in ("127.0.1.50", "127.0.2.50", "127.0.2.17"):
        assert ssh_run(address, info.options.ssh_port, USER, state_dir, "echo ok") == "ok\n"
    assert len(load_config(info.config_file).pools.green.hosts) == 50
    assert elapsed < 30


def _ports(info: SandboxInfo) -> dict[str, int]:
    return {"app_port": info.options.app_port, "public_port": info.options.public_port,
            "ssh_port": info.options.ssh_port}
