"""Service commands for both managers, and the systemd unit checked by systemd itself."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from bgkit.commands import service
from bgkit.config import Config, parse_config
from tests.conftest import example_data, merge


def config_with(**service_changes: object) -> Config:
    return parse_config(merge(example_data(), {"service": service_changes}), path="bgkit.toml")


def test_args_placeholders_are_filled_per_host() -> None:
    assert service.expand_args(["--config={shared}/config.ini", "--root={root}", "{current}"],
                               root="/srv/a") == [
        "--config=/srv/a/shared/config.ini", "--root=/srv/a", "/srv/a/current"]


def test_sandbox_restart_stops_with_the_drain_grace_then_starts_from_current() -> None:
    commands = service.service_commands(config_with(manager="sandbox", drain_timeout_s=2.5),
                                        root="/srv/a")
    alive = ('[ -n "$pid" ] && [ -e /proc/$pid ] && '
             "! grep -q '^State:[[:space:]]*Z' /proc/$pid/status 2>/dev/null")
    assert commands.stop == (
        "if [ -f /srv/a/shared/run/service.pid ]; then pid=$(cat /srv/a/shared/run/service.pid); "
        f'if kill -TERM "$pid" 2>/dev/null; then i=0; while {alive} && [ "$i" -lt 80 ]; '
        f'do sleep 0.05; i=$((i+1)); done; if {alive}; then kill -KILL "$pid"; fi; fi; '
        "rm -f -- /srv/a/shared/run/service.pid; fi")
    assert commands.restart == (
        "mkdir -p -- /srv/a/shared/run /srv/a/shared/log && " + commands.stop + " && "
        "/sbin/start-stop-daemon --start --quiet --background --make-pidfile --pidfile "
        "/srv/a/shared/run/service.pid --chdir /srv/a/current --output "
        "/srv/a/shared/log/service.log --startas /srv/a/current/bin/hello-c -- "
        "--config=/srv/a/shared/config.ini")
    assert commands.is_running == (
        f"pid=$(cat /srv/a/shared/run/service.pid 2>/dev/null) && {alive}")


def test_systemd_commands_use_non_interactive_sudo_with_full_paths() -> None:
    commands = service.service_commands(config_with(), root="/srv/a")
    assert commands.restart == "sudo -n /usr/bin/systemctl restart hello-c.service"
    assert commands.stop == "sudo -n /usr/bin/systemctl stop hello-c.service"
    assert commands.is_running == "sudo -n /usr/bin/systemctl is-active --quiet hello-c.service"
    assert commands.log_tail == ("sudo -n /usr/bin/journalctl -u hello-c.service -n 20 "
                                 "--no-pager 2>/dev/null || true")


def test_the_deploy_user_runs_nothing_as_root_but_the_privileged_commands() -> None:
    commands = service.service_commands(config_with(), root="/srv/a")
    granted = {shlex.join(["sudo", "-n", *argv])
               for argv in service.privileged_commands(config_with()).values()}
    for command in (commands.restart, commands.stop, commands.is_running,
                    commands.log_tail.removesuffix(" 2>/dev/null || true")):
        assert command in granted
    assert not hasattr(service, "install_unit")


def test_hostile_roots_are_quoted_in_sandbox_commands() -> None:
    commands = service.service_commands(config_with(manager="sandbox"), root="/srv/a b;reboot")
    assert "cat '/srv/a b;reboot/shared/run/service.pid'" in commands.stop
    assert "rm -f -- '/srv/a b;reboot/shared/run/service.pid'" in commands.stop


def test_the_unit_runs_current_with_drain_timeout_and_hardening() -> None:
    unit = service.render_unit(config_with(drain_timeout_s=12), root="/srv/hello-c")
    lines = unit.splitlines()
    assert "ExecStart=/srv/hello-c/current/bin/hello-c --config=/srv/hello-c/shared/config.ini" \
        in lines
    assert "WorkingDirectory=/srv/hello-c/current" in lines
    assert "TimeoutStopSec=17" in lines
    assert "KillSignal=SIGTERM" in lines
    assert "Restart=on-failure" in lines
    assert "User=hello" in lines
    assert "NoNewPrivileges=yes" in lines and "ProtectSystem=strict" in lines
    assert "ReadWritePaths=/srv/hello-c/shared" in lines


def test_unit_arguments_with_spaces_quotes_and_percent_are_escaped() -> None:
    unit = service.render_unit(config_with(args=['--name=a "b" 100%']), root="/srv/x")
    assert 'ExecStart=/srv/x/current/bin/hello-c "--name=a \\"b\\" 100%%"' in unit


def test_specifiers_and_variables_in_roots_and_args_are_escaped_for_systemd() -> None:
    unit = service.render_unit(config_with(args=["$HOME", "%n", ";", "a\\"]),
                               root="/srv/%h $x")
    lines = unit.splitlines()
    assert ('ExecStart="/srv/%%h $x/current/bin/hello-c" "$$HOME" "%%n" ";" "a\\\\"'
            in lines)
    assert "WorkingDirectory=/srv/%%h $x/current" in lines
    assert 'ReadWritePaths="/srv/%%h $x/shared"' in lines


@pytest.mark.parametrize("root", ["/srv/x\rExecStartPre=+/bin/id", "/srv/x\ny", "/srv/\x00"])
def test_a_control_character_never_reaches_a_unit_even_past_the_config(root: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        service.render_unit(config_with(), root=root)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("args", [["--config={shared}/config.ini"],
                                  ['--label=with "quotes" and spaces', "--pct=50%"]])
def test_systemd_analyze_verify_accepts_the_rendered_unit(tmp_path: Path,
                                                          args: list[str]) -> None:
    root = tmp_path / "srv"
    binary = root / "current" / "bin" / "hello-c"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (root / "shared").mkdir()
    unit = tmp_path / "hello-c.service"
    unit.write_text(service.render_unit(config_with(args=args), root=str(root)))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "hello-c.service" not in done.stderr, done.stderr


def test_systemd_analyze_verify_can_fail(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze")
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=relative/path\nKillSignal=NOPE\n")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "broken.service" in done.stderr
