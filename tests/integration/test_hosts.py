"""The SSH executor: strict host keys, translated errors, bounded fan-out, per-host results."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from bgkit.config import Config
from bgkit.errors import HostError
from bgkit.hosts import Fleet, Host, Session, hosts_of
from tests.integration.sandbox_support import rewrite_config

pytestmark = pytest.mark.slow


def test_commands_run_on_every_host_with_one_result_each(sandbox: Config) -> None:
    hosts = [*hosts_of(sandbox, "blue"), *hosts_of(sandbox, "green")]
    results = Fleet(sandbox).each(hosts, lambda s: s.run("echo $SSH_CONNECTION").stdout)
    assert [r.ok for r in results] == [True] * 4
    for result in results:
        assert result.value is not None
        assert result.value.split()[2] == result.host.address  # the server side of the socket


def test_failures_are_kept_per_host_beside_the_successes(sandbox: Config) -> None:
    hosts = hosts_of(sandbox, "blue")

    def work(session: Session) -> str:
        return session.run("exit 3" if session.host.index == 1 else "echo fine").stdout.strip()

    first, second = Fleet(sandbox).each(hosts, work)
    assert first.ok and first.value == "fine"
    assert not second.ok and second.error is not None and "exit 3" in second.error


def test_an_unknown_host_key_is_refused_with_what_to_do(sandbox: Config, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = rewrite_config(sandbox.path, {"ssh": {"known_hosts": str(empty)}}, name="nokeys.toml")
    (result,) = Fleet(config).each(hosts_of(config, "blue")[:1], lambda s: s.run("true"))
    assert result.error is not None
    assert "not in known_hosts" in result.error and "ssh-keyscan" in result.error


def test_a_changed_host_key_is_refused(sandbox: Config, tmp_path: Path) -> None:
    original = sandbox.known_hosts.read_text().splitlines()
    forged = tmp_path / "known_hosts"
    other_key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    forged.write_text("\n".join(f"{line.split()[0]} ssh-ed25519 {other_key}"
                                for line in original) + "\n")
    config = rewrite_config(sandbox.path, {"ssh": {"known_hosts": str(forged)}}, name="forged.toml")
    (result,) = Fleet(config).each(hosts_of(config, "blue")[:1], lambda s: s.run("true"))
    assert result.error is not None and "does not match known_hosts" in result.error


def test_a_wrong_key_fails_authentication_naming_the_user(sandbox: Config, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = rewrite_config(sandbox.path, {"ssh": {"identity_file": str(key)}}, name="wrong.toml")
    (result,) = Fleet(config).each(hosts_of(config, "blue")[:1], lambda s: s.run("true"))
    assert result.error is not None and "authentication failed" in result.error


def test_a_command_past_its_timeout_is_an_error(sandbox: Config) -> None:
    (result,) = Fleet(sandbox).each(hosts_of(sandbox, "blue")[:1],
                                    lambda s: s.run("sleep 5", timeout_s=1))
    assert result.error is not None and "timed out after 1 s" in result.error


def test_fan_out_never_exceeds_its_bound(sandbox: Config) -> None:
    hosts = [*hosts_of(sandbox, "blue"), *hosts_of(sandbox, "green")]
    lock = threading.Lock()
    running, peak = 0, 0

    def work(session: Session) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        session.run("sleep 0.3")
        with lock:
            running -= 1

    Fleet(sandbox, fanout=2).each(hosts, work)
    assert peak == 2
    started = time.monotonic()
    Fleet(sandbox, fanout=1).each(hosts, work)
    assert peak == 2 and time.monotonic() - started >= 4 * 0.3


def test_a_missing_known_hosts_file_is_refused(sandbox: Config, tmp_path: Path) -> None:
    config = rewrite_config(sandbox.path, {"ssh": {"known_hosts": str(tmp_path / "absent")}},
                            name="absent.toml")
    with pytest.raises(HostError, match="does not exist"):
        Fleet(config)._connect(Host("blue", 0, "127.0.1.1", 22, "x", "/srv"))
